#pragma once
// Workers and their warm workspaces: registration, heartbeats (one UPDATE
// per worker), the fleet as `kiln workers` lists it, and which worker holds
// which workspace. One statement or transaction per call; none throws.
// Failures: Unavailable when the database cannot be reached, NotFound for
// unknown clusters, workers or workspaces, Internal otherwise.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "audit/entry.h"
#include "common/status.h"
#include "queue/types.h"

namespace kiln::db {
class Pool;
}

namespace kiln::queue {

// What a heartbeat records of the health checker's (sql/020): every field
// empty leaves the health columns as they are.
struct HealthRecord {
  std::string report_json;      // the worker's last report ('' : none came)
  std::string health;           // 'healthy' or 'unhealthy' when it changes, else ''
  std::string reason;           // the reason with a change (or reason_changed)
  bool reason_changed = false;  // still unhealthy, for another reason
};

// A worker's recent infrastructure failures as recorded (sql/023).
struct InfraFailures {
  std::vector<int64_t> at_ms;  // oldest first
  std::string last;            // what the newest was
  int64_t now_ms = 0;          // the database's clock
};

class WorkerStore {
 public:
  // Registers its statements with the pool, which must outlive the store.
  explicit WorkerStore(db::Pool& pool);

  // Upserts the worker row as connected with a fresh lease and returns its
  // health as recorded (healthy for a new worker: health outlives a
  // reconnect); NotFound if the cluster does not exist.
  Result<std::string> Register(const WorkerRegistration& w, std::chrono::milliseconds lease);
  // Extends the worker's lease and records its health (one UPDATE); NotFound
  // if the session is stale.
  Status Heartbeat(const std::string& worker_id, const std::string& session, std::chrono::milliseconds lease,
                   bool draining, const HealthRecord& health = {});
  Result<std::vector<WorkerRow>> List(bool include_gone);
  // One infrastructure failure of a job on the worker, now (kept with the
  // worker: the health checker of any controller counts it).
  Status NoteInfraFailure(const std::string& worker_id, const std::string& what);
  // The worker's recorded infrastructure failures (at registration).
  Result<InfraFailures> InfraFailuresOf(const std::string& worker_id);

  // What a worker reports it holds (present) or no longer holds. Returns
  // true if the workspace was removed meanwhile (the worker must drop it).
  Result<bool> ReportWorkspace(const std::string& worker_id, const WorkspaceRow& w, bool present);
  // At registration: the worker's rows become exactly `held`; returns those
  // removed meanwhile (kiln workspace rm while it was away).
  Result<std::vector<WorkspaceRow>> ReplaceWorkspaces(const std::string& worker_id,
                                                      const std::vector<WorkspaceRow>& held);
  Result<std::vector<WorkspaceRow>> ListWorkspaces(const std::string& project);
  // Marks a workspace removed on every worker and tells their controllers
  // (NOTIFY kiln_workspace "<worker> <project> <name>"); returns how many
  // workers hold it, recorded in the audit trail as `who`'s
  // (workspace.remove). NotFound if none does.
  Result<int> RemoveWorkspace(const std::string& project, const std::string& name, const audit::Who& who);

 private:
  db::Pool& pool_;
};

}  // namespace kiln::queue
