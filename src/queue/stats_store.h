#pragma once
// The farm's history (sql/016_job_history.sql, sql/017_samples.sql): the
// periodic samples of its state, their day partitions, and what kiln stats
// answers, read from the views an operator's dashboards read too. Job phase
// timings are written by DispatchStore::Apply with the final report. One
// statement or transaction per call; none throws. Failures: Unavailable when
// the database cannot be reached, Internal otherwise.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::db {
class Pool;
}

namespace kiln::queue {

// What a sample holds beside what the database knows: the CAS directory's
// size at its last collection (negative: not collected yet).
struct SampleExtras {
  int64_t cas_blobs = -1;
  int64_t cas_bytes = -1;
};

// A window of kiln stats: the jobs that ended in the last `window` (and the
// samples taken then), of one project or (empty) all.
struct StatsQuery {
  std::string project;
  std::chrono::seconds window{86400};
  int top = 5;  // slowest and most-missed units
};

struct ClusterUse {
  std::string cluster;
  int64_t samples = 0;
  double slots_avg = 0, busy_avg = 0;
  std::optional<double> utilisation;  // busy over total slots; none without slots
};

struct UnitTime {
  std::string source, output, project;
  int64_t compile_ms = 0;
};

struct UnitMisses {
  std::string source;
  int64_t misses = 0;
  std::string last_reason;
};

struct StatsReport {
  int64_t from_ms = 0, to_ms = 0;
  int64_t jobs = 0, succeeded = 0, failed = 0, cancelled = 0, lost = 0, cached = 0;
  int64_t cacheable = 0;  // jobs with an action digest: the action cache's lookups
  // Percentiles (percentile_disc: an observed value) in ms; none without jobs.
  std::optional<int64_t> wait_p50_ms, wait_p95_ms, wait_p99_ms, run_p50_ms, run_p95_ms;
  int64_t waits = 0, runs = 0;  // how many jobs the percentiles are of
  int64_t cc_units = 0, cc_hits = 0, cc_misses = 0, cc_failed = 0;
  int64_t action_saved_ms = 0, compile_saved_ms = 0;
  std::vector<ClusterUse> clusters;
  std::vector<UnitTime> slowest;
  std::vector<UnitMisses> most_missed;
};

class StatsStore {
 public:
  // Registers its statements with the pool, which must outlive the store.
  explicit StatsStore(db::Pool& pool);

  // Writes one sample of the farm's state for the `interval` bucket now falls
  // in, with synchronous_commit off, unless another controller holds the
  // sampler's advisory lock or wrote this bucket already. Returns the rows
  // written (0 then). FailedPrecondition when no partition holds today
  // (Maintain makes them).
  Result<int64_t> Sample(std::chrono::milliseconds interval, const SampleExtras& extras);

  // Makes the day partitions from today to `days_ahead` after, and drops
  // those that ended `retention` ago or earlier (zero: none), under the
  // sampler's lock. Returns "created NAME" / "dropped NAME" lines; nothing
  // when another controller holds the lock.
  Result<std::vector<std::string>> Maintain(int days_ahead, std::chrono::milliseconds retention);

  // What kiln stats shows for a window.
  Result<StatsReport> Read(const StatsQuery& q);

 private:
  db::Pool& pool_;
};

}  // namespace kiln::queue
