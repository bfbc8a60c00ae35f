#pragma once
// The deployer's view of PostgreSQL (sql/021_cluster_state.sql): its
// provider instances (cluster_instances) and the workers of a cluster as
// the plan needs them. None throws; Unavailable when the database cannot be
// reached, Internal otherwise.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "audit/entry.h"
#include "cluster/plan.h"
#include "common/status.h"

namespace kiln::db {
class Pool;
}

namespace kiln::cluster {

struct InstanceRow {
  std::string id, cluster, provider, config_hash, state, work_dir;
  std::string worker_id;  // the newest worker registered with its work_dir; empty: none yet
  int64_t created_at_ms = 0;
  int64_t register_deadline_ms = 0;
};

class InstanceStore {
 public:
  // Registers its statements with the pool, which must outlive the store.
  explicit InstanceStore(db::Pool& pool);

  // The cluster's instances, oldest first, each with the worker that
  // registered with its work_dir.
  Result<std::vector<InstanceRow>> List(const std::string& cluster);
  // The cluster's workers, by id, for the plan (the database's clock in
  // idle_since_ms: its last job's end, else its registration).
  Result<std::map<std::string, WorkerView>> Workers(const std::string& cluster);
  // The database's clock, unix ms (deadlines are compared with it).
  Result<int64_t> NowMs();

  // Records an instance about to be started (state starting), deadline
  // `register_ms` from now. NotFound if the cluster does not exist.
  Status Insert(const InstanceRow& r, int64_t register_ms);
  Status SetState(const std::string& id, const std::string& state);
  Status Remove(const std::string& id);
  // An audit row of an apply (cluster.apply): the steps carried out.
  Status RecordApply(const std::string& cluster, const std::vector<std::string>& steps, const audit::Who& who);

 private:
  db::Pool& pool_;
};

}  // namespace kiln::cluster
