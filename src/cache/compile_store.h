#pragma once
// The compile cache's tables in PostgreSQL (sql/005_compile_cache.sql):
// results by result key, manifests by direct key, and what each job's run
// did. Entries are read and written on behalf of a job while one attempt of
// it runs, in that job's scope; nothing else can name a scope. None throws.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cc/record.h"
#include "common/status.h"

namespace kiln::db {
class Pool;
}

namespace kiln::cache {

// A lookup's answer in the job's scope.
struct CompileLookup {
  std::string scope;
  std::vector<cc::CompileManifest> manifests;  // newest first
  std::vector<cc::KeyParts> previous;          // the latest compiles of the source (no manifests only)
};

struct CompileCounts {
  int64_t units = 0, hits = 0, hits_preprocessed = 0, misses = 0, fallbacks = 0, failed = 0;
  int64_t saved_ms = 0, compile_ms = 0, bytes_served = 0, bytes_stored = 0;
  int64_t remote = 0, remote_ms = 0;  // misses compiled on other workers, and their time
};

struct CompileEvent {
  std::string source, output, outcome, reason, detail;
  std::string remote_worker;  // where it compiled, when not on the job's worker
  int64_t remote_ms = 0, remote_run_ms = 0;  // as the job waited for it; its own run there
};

// An attempt of a job and the worker it runs on: the compile cache serves
// and takes results only for the worker that holds that attempt.
struct RunningJob {
  std::string worker_id;
  int64_t job_id = 0;
  int attempt = 0;
};

struct JobCompileStats {
  int64_t job_id = 0;
  int attempt = 0;
  CompileCounts counts;
  std::vector<CompileEvent> events;
  std::vector<std::string> hit_keys;
  std::vector<int64_t> hit_manifests;
};

struct CompileStatsReport {
  int64_t jobs = 0;
  CompileCounts counts;
  struct Reason {
    std::string outcome, reason;
    int64_t count = 0;
  };
  std::vector<Reason> reasons;  // most frequent first
  int64_t results = 0, manifests = 0, object_bytes = 0;
};

struct ImpactedUnit {
  std::string source, output;
  int64_t manifests = 0;
  int64_t last_used_ms = 0;
};

struct JobCompiles {
  bool recorded = false;
  CompileCounts counts;
  std::vector<CompileEvent> events;
  bool truncated = false;
};

// The SQL text of Impact's statement, as prepared (a test checks its plan).
const char* ImpactSql();

class CompileCacheStore {
 public:
  static constexpr int kMaxManifestsPerKey = 16;
  static constexpr size_t kMaxEventsPerJob = 10000;

  explicit CompileCacheStore(std::string db_url, size_t pool_size = 4);
  ~CompileCacheStore();

  // Manifests under `key` in the job's scope; without any, the latest
  // compiles of `source` (those of the same output first).
  // FailedPrecondition when that attempt of the job is not running on that worker.
  Result<CompileLookup> Lookup(const RunningJob& run, const std::string& key, const std::string& source,
                               const std::string& output);
  Result<std::optional<cc::CompileResult>> LookupResult(const RunningJob& run, const std::string& key);
  // Stores the entry's result (unless it exists: the first writer wins; with
  // manifest_only it must exist, else NotFound) and a manifest for it,
  // keeping the newest kMaxManifestsPerKey per key, in the job's scope.
  // Returns whether the result row was new. FailedPrecondition when that
  // attempt of the job is not running; InvalidArgument when a text is not
  // valid UTF-8.
  Result<bool> Store(const RunningJob& run, const cc::CompileEntry& e);
  // Stores a job's statistics and events (replacing an earlier attempt's)
  // and records the uses of the entries it hit.
  // Only the worker that ran that attempt may.
  Status Record(const std::string& worker_id, const JobCompileStats& r);

  Result<CompileStatsReport> Stats(const std::string& project, const std::string& scope, int64_t since_ms);
  // Translation units in `scope` whose manifests name `path`.
  Result<std::vector<ImpactedUnit>> Impact(const std::string& scope, const std::string& path, int limit);
  Result<JobCompiles> ForJob(int64_t job_id, size_t max_events);
  // Drops results unused for max_age (their manifests go with them).
  Result<int64_t> Expire(std::chrono::milliseconds max_age);

 private:
  std::unique_ptr<db::Pool> pool_;
};

}  // namespace kiln::cache
