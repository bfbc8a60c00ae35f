#pragma once
// Which content a caller may see (sql/011_cas_scopes.sql): a token sees
// the scopes of its projects (their cache scopes), an admin token
// everything. A worker sees what it was assigned: the input trees of the
// jobs it holds, the compile objects of those jobs' cache scopes, its own
// uploads and the images. Uploads join the uploader's scopes; a job's
// outputs join its scope when its result is reported.

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cas/scope_store.h"
#include "common/status.h"

namespace kiln::cas {
class TreeStore;
}

namespace kiln::controller {

struct Caller;
class ProjectCache;

class ContentScopes {
 public:
  ContentScopes(cas::ScopeStore& store, ProjectCache& projects, cas::TreeStore& trees)
      : store_(store), projects_(projects), trees_(trees) {}

  // Where the caller's verified uploads go (none for an admin token, which
  // sees everything anyway).
  Result<std::vector<std::string>> UploadTo(const Caller& c);
  // Of `hashes`, those the caller sees.
  Result<std::unordered_set<std::string>> Seen(const Caller& c, const std::vector<std::string>& hashes);
  // Of `hashes`, those worker `worker_id` sees through `job` (one it holds,
  // as WorkerJobs listed it: no query for the job list), its own uploads,
  // the images and what is lent to it.
  Result<std::unordered_set<std::string>> SeenThroughJob(const std::string& worker_id,
                                                         const cas::ScopeStore::HeldJob& job,
                                                         const std::vector<std::string>& hashes);
  // Of `hashes`, those the caller does not see (cheaper than Seen when it
  // sees most: FindMissing on a resubmit).
  Result<std::unordered_set<std::string>> Unseen(const Caller& c, const std::vector<std::string>& hashes);
  // A job's reported output tree joins the job's scope: every node and file
  // of it that the worker sees (Seen), so a worker cannot pass off as output
  // content it was never given or uploaded. Only while that attempt runs on
  // that worker (else FailedPrecondition).
  Status RecordOutputs(const Caller& worker, int64_t job_id, int attempt, const std::string& output_root);
  // A compile object the worker stored for its job joins the job's scopes
  // (FailedPrecondition unless that attempt runs on the worker and the
  // worker sees the object).
  Status RecordObject(const Caller& worker, int64_t job_id, int attempt, const std::string& hash);
  // The scopes of a project's content: "project:<name>", and its shared
  // cache scope when it has one.
  Result<std::vector<std::string>> ProjectScopes(const std::string& project);

  cas::ScopeStore& store() { return store_; }

  // Content lent to a worker beyond the above: the inputs of the remote
  // actions it runs (ActionBroker::LentTo), asked of `lender` first.
  using Lender = std::function<void(const std::string& worker_id, const std::vector<std::string>& hashes,
                                    std::unordered_set<std::string>& out)>;
  void SetLender(Lender lender) { lender_ = std::move(lender); }

 private:
  using HashSet = std::unordered_set<std::string>;
  // Every stored node of the tree `root` ("<hex>/<size>") and the files they name.
  Result<HashSet> Hashes(const std::string& root);
  // The jobs the worker holds, when that attempt of job `job_id` is one of
  // them (its scopes into `scopes`); FailedPrecondition otherwise.
  Result<std::vector<cas::ScopeStore::HeldJob>> JobsRunning(const Caller& worker, int64_t job_id, int attempt,
                                                            std::vector<std::string>& scopes);
  // Hashes() of an input tree, with its root (the empty tree's node need
  // not be stored); trees are content: what is computed once holds for
  // good (a few recent ones kept).
  Result<std::shared_ptr<const HashSet>> TreeHashes(const std::string& root);
  // Of `hashes`, those worker `worker_id` sees through the jobs it holds
  // (`jobs`: input trees, compile objects of their scopes), its own uploads
  // and the images, added to `out`.
  Status SeenThrough(const std::string& worker_id, const std::vector<cas::ScopeStore::HeldJob>& jobs,
                     const std::vector<std::string>& hashes, HashSet& out);

  cas::ScopeStore& store_;
  ProjectCache& projects_;
  cas::TreeStore& trees_;
  Lender lender_;

  std::mutex mu_;  // guards the tree cache
  std::list<std::pair<std::string, std::shared_ptr<const HashSet>>> lru_;  // most recent first
  std::unordered_map<std::string, decltype(lru_)::iterator> by_root_;
  size_t cached_hashes_ = 0;
};

}  // namespace kiln::controller
