#pragma once
// The deployer's view of PostgreSQL (sql/021_cluster_state.sql): its
// provider instances (cluster_instances) and the workers of a cluster as
// the plan needs them. None throws; Unavailable when the database cannot be
// reached, Internal otherwise.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "audit/entry.h"
#include "cluster/plan.h"
#include "cluster/scaler.h"
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

// An autoscaler's decision as cluster_decisions keeps it (sql/022).
struct DecisionRow {
  int64_t id = 0;
  int64_t at_ms = 0;  // set by the store
  std::string controller;
  Signals seen;
  int previous = 0, desired = 0;
  std::string action;  // scale_up, scale_down, hold, reconcile
  std::string reason;
  std::vector<std::string> steps;
  std::string error;
};

// What a new leader goes on from: the last decision's desired count and
// when the count last changed (0: never).
struct LastDecision {
  int desired = 0;
  int64_t last_change_ms = 0;
};

class InstanceStore {
 public:
  // Registers its statements with the pool, which must outlive the store.
  explicit InstanceStore(db::Pool& pool);
  ~InstanceStore();

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
  // Held from plan to apply (Deployer::Serialize): one apply at a time in
  // the whole farm, whichever controller serves it (a session advisory
  // lock, key "kiln", 2, on a connection of its own with TCP keepalives,
  // kept until the holder is released; a controller that dies releases it
  // with its session). Waits while another holds it, up to 60 s (then
  // Unavailable). The connection stays open between applies; one holder
  // at a time in this process (a second waits for the first).
  class ApplyLock {
   public:
    virtual ~ApplyLock() = default;
    // OK while the lock is still this session's: a connection that broke
    // (the database restarted, a network cut the server noticed) lost it,
    // and another controller may apply now. Checked before each step.
    virtual Status Held() = 0;
  };
  Result<std::unique_ptr<ApplyLock>> HoldApplyLock();

  // What the autoscaler sees of a cluster's queue and workers (queued and
  // running jobs, the oldest wait, slots of connected healthy workers; not
  // the actions, which wait in a controller's memory, nor the serving
  // instances, which are the plan's). A queued job is counted by one
  // managed cluster only, the first created of those whose live workers
  // (with none, whose labels) meet its requirements, and not while it
  // waits for an identical job's result.
  Result<Signals> Seen(const std::string& cluster);
  // Its id (for FinishDecision).
  Result<int64_t> RecordDecision(const std::string& cluster, const DecisionRow& d);
  // The steps carried out for a decision recorded before they were, and
  // the first that failed ("" if none).
  Status FinishDecision(int64_t id, const std::vector<std::string>& steps, const std::string& error);
  // Nothing when the cluster has no decision yet.
  Result<std::optional<LastDecision>> Last(const std::string& cluster);
  // The newest `limit` decisions, newest first.
  Result<std::vector<DecisionRow>> Decisions(const std::string& cluster, int limit);

  // Decisions older than `retention` (each cluster's newest stays: it holds
  // the desired count). How many went.
  Result<int64_t> PruneDecisions(std::chrono::milliseconds retention);

  // An audit row of an apply (cluster.apply): the steps carried out.
  Status RecordApply(const std::string& cluster, const std::vector<std::string>& steps, const audit::Who& who);

 private:
  db::Pool& pool_;
  struct LockConn;  // the apply lock's connection, one holder at a time
  std::unique_ptr<LockConn> lock_;
};

}  // namespace kiln::cluster
