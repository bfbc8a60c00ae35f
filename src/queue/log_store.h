#pragma once
// Log quotas on the stored logs (job_logs): counting what each ended job
// stores and removing the logs of ended jobs past their project's retention
// or over a byte cap, oldest first. Never the log of a job that has not
// ended. Reading logs is the JobStore's. None of it throws; failures are
// Unavailable (database away) or Internal.

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::db {
class Pool;
}

namespace kiln::queue {

// One project's rules, as the controller resolved them (the project's
// settings, else the farm's defaults). The texts are what a job whose log
// went for that rule says, e.g. "older than project web's log_retention of 30d".
struct ProjectLogQuota {
  std::string project;
  int64_t retention_ms = 0;  // 0: kept for ever
  std::string retention_why;
  int64_t max_bytes = 0;     // 0: no cap of the project's own
  std::string max_bytes_why;
};

struct LogPrunePlan {
  std::vector<ProjectLogQuota> projects;
  int64_t total_max_bytes = 0;  // every project's ended jobs together; 0: no cap
  std::string total_why;
  // One transaction removes at most this many jobs' logs, and stops adding
  // jobs once it reached batch_bytes (so one large log is one batch).
  int batch_jobs = 500;
  int64_t batch_bytes = int64_t{64} << 20;
};

struct LogPruneOutcome {
  struct Removed {
    int64_t jobs = 0;
    int64_t bytes = 0;
  };
  int64_t counted = 0;   // ended jobs whose stored log bytes were counted
  Removed retention;     // past their project's retention
  Removed project_cap;   // their project over its cap
  Removed total_cap;     // the farm over its total cap
  bool busy = false;     // another controller was pruning: this pass stopped early
};

// The SQL of one of the pass's statements ("log_count", "log_past_retention",
// "log_over_project_cap", "log_over_total_cap"), for plan tests; "" for any
// other name.
std::string LogPruneSql(const std::string& name);

class LogStore {
 public:
  // Registers its statements with the pool, which must outlive the store.
  explicit LogStore(db::Pool& pool);

  // One pruning pass: counts the log bytes of jobs that ended since the
  // last pass, then removes, in bounded transactions, (1) the logs of ended
  // jobs past their project's retention, (2) while a project is over its
  // cap, its oldest ended jobs' logs, (3) while the farm is over its total
  // cap, the oldest ended jobs' logs of any project. Each removal marks the
  // job (log_removed_*) and deletes its chunks of every attempt in one
  // transaction. Passes of several controllers are serialized by an
  // advisory lock taken by each transaction: a pass that finds it held ends
  // (busy), leaving the rest to the holder. Stops between transactions once
  // `stop` is set. Returns what it did, or the database's error (what was
  // committed before it stays done).
  Result<LogPruneOutcome> Prune(const LogPrunePlan& plan, const std::atomic<bool>& stop);

 private:
  db::Pool& pool_;
};

}  // namespace kiln::queue
