#pragma once
// The compile cache's worker side: per job, a unix socket that the sandbox
// binds at /kiln/run/cc.sock, where kiln-cc asks for cached objects and
// stores new ones. Lookups and stores go to the controller on behalf of the
// job (its id and attempt fence them; the controller picks the scope);
// objects pass through the local CAS cache. Everything kiln-cc sends is
// untrusted: it is checked, and a bad request gets an error and changes
// nothing.

#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/mask.h"
#include "common/status.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::cas {
class CasClient;
}

namespace kiln::worker {

class LocalCas;

struct CompileCacheJob {
  int64_t job_id = 0;
  int attempt = 0;
  std::string project;
  std::string image;          // "sha256:<hex>"
  std::string dir;            // on the host: the socket's directory, bound into the container
  int64_t max_object_bytes = int64_t{256} << 20;
  int64_t max_job_bytes = int64_t{8} << 30;  // objects one job may store in all
  // The job's secret env: masked as *** in what the cache keeps of its
  // compiles (their output, arguments, environment and reasons).
  std::map<std::string, std::string> secrets;
  // Whether kiln-cc may send a miss to the farm (ExecuteAction) and, if
  // not, why (said in kiln why).
  bool remote = false;
  std::string why_not_remote;
  // Writes a line into the job's log (thread-safe): the first remote
  // compile that ran says so there ("kiln: remote compiles started ..."),
  // for kiln submit and kiln logs -f. Null: nothing is written.
  std::function<void(const std::string&)> note;
  int farm_slots = 0;  // action slots of the other workers of its cluster, at assignment
};

// Masks `secrets` in the text the controller keeps of a compile: its
// stdout and stderr, arguments, environment, working directory and the
// events' reasons. Keys, digests, dependency paths are left as they are.
void MaskCompileStore(const SecretMask& secrets, v1::StoreCompileRequest* req);
void MaskCompileRecord(const SecretMask& secrets, v1::RecordCompilesRequest* req);

// The worker's memory of recent lookups, shared by its jobs: scope and
// direct key -> the controller's answer (only answers with manifests),
// least recently used out past a byte cap. A fast path for hits only: a
// miss is always asked of the controller again. Thread-safe.
class LookupMemory {
 public:
  explicit LookupMemory(int64_t max_bytes) : max_bytes_(max_bytes) {}
  std::shared_ptr<const v1::LookupCompileResponse> Get(const std::string& scope, const std::string& key);
  void Put(const std::string& scope, const std::string& key, const v1::LookupCompileResponse& resp);
  void Forget(const std::string& scope, const std::string& key);

 private:
  struct Item {
    std::shared_ptr<const v1::LookupCompileResponse> resp;
    int64_t bytes = 0;
    std::list<std::string>::iterator use;  // its place in uses_
  };
  static std::string KeyOf(const std::string& scope, const std::string& key);
  void Drop(std::unordered_map<std::string, Item>::iterator it);
  int64_t max_bytes_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Item> items_;
  std::list<std::string> uses_;  // keys, most recently used first
  int64_t total_ = 0;
};

// The worker's memory of the compiler identities kiln-cc worked out (the
// digest of the binary and its -v output, the built-in include
// directories), shared by the jobs of one project in one image: only the
// first of them runs each compiler to ask. kiln-cc's word is untrusted, so
// it is never shared across projects (a project's builds trust each other
// already: they fill one compile cache). Thread-safe.
class IdentityMemory {
 public:
  struct Identity {
    std::string stat;  // the compiler file's stat as kiln-cc saw it (serialized): a new file asks again
    std::string identity;
    std::vector<std::string> builtin;
  };
  std::optional<Identity> Get(const std::string& key) const;
  void Put(const std::string& key, Identity id);
  // project, image, compiler path and language as one key.
  static std::string KeyOf(const std::string& project, const std::string& image, const std::string& compiler,
                           int language);

 private:
  static constexpr size_t kMax = 4096;  // a bound: past it the memory starts over
  mutable std::mutex mu_;
  std::unordered_map<std::string, Identity> items_;
};

struct CompileCacheServices {
  v1::WorkerService::StubInterface* stub = nullptr;  // the controller
  cas::CasClient* cas = nullptr;
  LocalCas* local = nullptr;
  LookupMemory* memory = nullptr;        // optional
  IdentityMemory* identities = nullptr;  // optional
};

class CompileCacheServer {
 public:
  // Listens on job.dir/cc.sock (created, mode 0666). FailedPrecondition if
  // the socket cannot be made (e.g. its path is too long).
  static Result<std::unique_ptr<CompileCacheServer>> Start(const CompileCacheJob& job, CompileCacheServices services);
  ~CompileCacheServer();
  CompileCacheServer(const CompileCacheServer&) = delete;
  CompileCacheServer& operator=(const CompileCacheServer&) = delete;

  // Closes the socket, lets open connections read what their peers sent
  // (cut after 5 s), waits for their threads and removes job.dir. Call it
  // once the job's container is gone.
  void Stop();
  // What kiln-cc reported so far: statistics, events, the entries it used.
  v1::RecordCompilesRequest Record() const;

  static constexpr const char* kSocketName = "cc.sock";
  static constexpr int kMaxConnections = 64;

 private:
  struct Impl;
  explicit CompileCacheServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::worker
