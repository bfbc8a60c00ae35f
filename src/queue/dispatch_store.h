#pragma once
// Dispatch and leases: claiming queued jobs for connected workers, applying
// the workers' fenced reports, and putting the jobs of workers that went
// away back in line. One statement or transaction per call; none throws.
// Failures: Unavailable when the database cannot be reached, InvalidArgument
// when it refused the data, Internal otherwise.

#include <chrono>
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

class DispatchStore {
 public:
  // Registers its statements with the pool, which must outlive the store.
  // With record_timings, a final report's phase timings (Update::timings)
  // are stored in job_timings by the statement that applies it.
  explicit DispatchStore(db::Pool& pool, bool record_timings = true);

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
  // `completed` (if given) gets the queued jobs the reports completed: those
  // that waited for an identical job that succeeded.
  Result<std::vector<UpdateOutcome>> Apply(const std::vector<Update>& updates, const std::vector<LogAppend>& logs,
                                           std::vector<EndedJob>* completed = nullptr);

  // The worker's stream of this session dropped: requeue its jobs now and
  // mark it disconnected. A no-op if the worker registered again since.
  Result<RequeueOutcome> DropWorker(const std::string& worker_id, const std::string& session, const std::string& why);
  // Requeues jobs of workers whose lease expired, marks those workers lost;
  // leaves the workers in `skip` alone (their dropped streams are being
  // handled: DropWorker after the reconnect grace).
  Result<RequeueOutcome> Reap(const std::vector<std::string>& skip = {});
  // Reconciles a reconnecting worker's running jobs with the database:
  // returns the refs the worker must stop (not its own any more, or with a
  // pending cancel) and requeues the worker's jobs it no longer reports.
  // `ended` (if given) gets the jobs this ended (lost or cancelled);
  // `lost_jobs` (if given) how many jobs the worker held and no longer
  // reports (a restart lost them: counted once against the worker).
  Result<std::vector<JobRef>> Adopt(const std::string& worker_id, const std::vector<JobRef>& running,
                                    std::vector<EndedJob>* ended = nullptr, int* lost_jobs = nullptr);

 private:
  db::Pool& pool_;
  bool record_timings_;
};

}  // namespace kiln::queue
