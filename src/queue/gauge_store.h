#pragma once
// The farm's state as gauges for metrics: queued jobs per project and
// cluster, connected workers and their slots per cluster. Read by the
// farm's leader only (db/leader.h), a few statements every few seconds.

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::db {
class Pool;
}

namespace kiln::queue {

struct QueueDepth {
  std::string project;
  std::string cluster;  // "(any)": not pinned to a cluster (no cluster name has parentheses)
  int64_t jobs = 0;
};

struct ClusterSlots {
  std::string cluster;
  int64_t workers = 0;  // connected (draining ones not)
  int64_t slots = 0;    // of connected workers
  int64_t busy = 0;     // jobs in setup or running on the cluster's workers
  int64_t unhealthy = 0;  // connected or draining workers the health checker marked unhealthy
};

struct FarmGauges {
  std::vector<QueueDepth> queued;      // pairs with queued jobs, and (project, "(any)", 0) for projects without
  std::vector<ClusterSlots> clusters;  // every cluster
};

class GaugeStore {
 public:
  // Registers its statements with the pool, which must outlive the store.
  explicit GaugeStore(db::Pool& pool);
  // One read-only transaction; Unavailable when the database is away.
  Result<FarmGauges> Read();

 private:
  db::Pool& pool_;
};

}  // namespace kiln::queue
