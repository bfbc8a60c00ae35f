#pragma once
// The build queue and cluster state in PostgreSQL. Every operation is one
// short statement or transaction on a pooled connection; none throws.
// Failures: Unavailable when the database cannot be reached, NotFound for
// unknown names or ids, InvalidArgument for bad input, Internal otherwise.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "queue/types.h"

namespace kiln::db {
class Pool;
}

namespace kiln::queue {

// The SQL text of the claim and of the fenced update, as prepared; for
// benchmarks that run the same statements through pgbench.
const char* ClaimSql();
const char* ApplyUpdatesSql();

class Queue {
 public:
  // Connects lazily: pool_size connections at most.
  static Result<std::unique_ptr<Queue>> Create(const std::string& database_url, size_t pool_size);
  ~Queue();

  // ---- jobs (clients) ----

  // Inserts a queued job (waking dispatchers). With a request id, a repeat of
  // an identical submit returns the first job with existing=true; the same id
  // with a different job is AlreadyExists.
  Result<SubmitOutcome> Submit(const NewJob& job);
  Result<Job> Get(int64_t job_id);
  // The nearest earlier job of the same project with the same argv; nullopt
  // if there is none.
  Result<std::optional<Job>> PreviousWithCommand(int64_t job_id);
  Result<std::vector<Job>> List(const ListFilter& filter);
  // Queued: cancelled at once. Setup/running: cancel_requested is set and the
  // holding worker is told (via NOTIFY kiln_cancel). Ended: FailedPrecondition.
  Result<Job> Cancel(int64_t job_id, const std::string& reason);
  // Up to max_bytes of an attempt's log from offset (attempt 0: current),
  // contiguous. With skip_gaps (for an ended job, whose missing chunks will
  // never come), data may start after offset: see LogSlice::offset.
  Result<LogSlice> ReadLog(int64_t job_id, int attempt, int64_t offset, int64_t max_bytes, bool skip_gaps = false);
  // Why a queued job cannot be taken by any registered worker, or "" if some can.
  Result<std::string> Unsatisfiable(int64_t job_id);

  // ---- dispatch (controllers) ----

  // NOTIFY kiln_jobs, without waiting for it to be durable: wakes the other
  // controllers' dispatchers after submits (a lost one is covered by polling).
  Status NotifyJobs();

  // Claims up to n queued jobs for a connected worker of this session, in
  // one statement: SKIP LOCKED, priority then age, only projects mapped to
  // the worker's cluster, only jobs whose requirements the worker's
  // properties contain. Claimed jobs are in setup with attempt + 1.
  // A job of a warm workspace waits up to `workspace_grace` after it was
  // queued for a connected worker that holds the workspace (the default is
  // the controller's configuration, config::ControllerConfig).
  Result<std::vector<Claimed>> Claim(const std::string& worker_id, const std::string& session, int n,
                                     std::chrono::milliseconds workspace_grace);
  // Applies log chunks then updates, in one transaction, each fenced by
  // (job, attempt, worker). Several updates of one job in the batch are
  // collapsed to the last. Outcomes come back for every update.
  Result<std::vector<UpdateOutcome>> Apply(const std::vector<Update>& updates, const std::vector<LogAppend>& logs);

  // ---- workers ----

  // Upserts the worker row as connected with a fresh lease; NotFound if the
  // cluster does not exist.
  Status RegisterWorker(const WorkerRegistration& w, std::chrono::milliseconds lease);
  // Extends the worker's lease (one UPDATE); NotFound if the session is stale.
  Status Heartbeat(const std::string& worker_id, const std::string& session, std::chrono::milliseconds lease,
                   bool draining);
  // The worker's stream of this session dropped: requeue its jobs now and
  // mark it disconnected. A no-op if the worker registered again since.
  Result<RequeueOutcome> DropWorker(const std::string& worker_id, const std::string& session, const std::string& why);
  // Requeues jobs of workers whose lease expired, marks those workers lost.
  Result<RequeueOutcome> Reap();

  // Drops action cache entries not used for max_age (their outputs then go
  // with the CAS collection); returns how many.
  Result<int64_t> ExpireActionCache(std::chrono::milliseconds max_age);
  // Reconciles a reconnecting worker's running jobs with the database:
  // returns the refs the worker must stop (not its own any more, or with a
  // pending cancel) and requeues the worker's jobs it no longer reports.
  Result<std::vector<JobRef>> Adopt(const std::string& worker_id, const std::vector<JobRef>& running);
  Result<std::vector<WorkerRow>> ListWorkers(bool include_gone);

  // ---- warm workspaces ----

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
  // workers hold it. NotFound if none does.
  Result<int> RemoveWorkspace(const std::string& project, const std::string& name);

  // ---- projects and clusters ----
  Result<std::vector<ProjectRow>> ListProjects();
  Result<ProjectRow> GetProject(const std::string& name);
  // config_json must already be validated (config::ParseProjectConfig).
  Result<ProjectRow> CreateProject(const std::string& name, const std::string& config_json);
  Result<ProjectRow> SetProjectConfig(const std::string& name, const std::string& config_json);
  // Changes whenever any project row changes (max updated_at and count).
  Result<std::string> ProjectsVersion();
  Result<std::vector<ClusterRow>> ListClusters();
  Result<ClusterRow> CreateCluster(const std::string& name);
  Result<ClusterRow> MapProject(const std::string& cluster, const std::string& project, bool unmap);

 private:
  explicit Queue(std::unique_ptr<db::Pool> pool);
  std::unique_ptr<db::Pool> pool_;
};

}  // namespace kiln::queue
