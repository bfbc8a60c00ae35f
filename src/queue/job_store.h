#pragma once
// Jobs as clients see them: submit, read, list, cancel, logs. One short
// statement or transaction per call on a shared pool; none throws.
// Failures: Unavailable when the database cannot be reached, NotFound for
// unknown ids or names, InvalidArgument for bad input, Internal otherwise.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "audit/entry.h"
#include "common/status.h"
#include "queue/types.h"

namespace kiln::db {
class Pool;
}

namespace kiln::queue {

class JobStore {
 public:
  // Registers its statements with the pool, which must outlive the store.
  explicit JobStore(db::Pool& pool);

  // Inserts a queued job (the caller wakes dispatchers). With a request id
  // (unique per project: another project's same id is another job, and
  // tells nothing of it), a repeat of an identical submit to the same
  // project returns the first job with existing=true; the same id with a
  // different job is AlreadyExists. With
  // an action digest, a cache hit is inserted already succeeded and an
  // identical job in flight becomes the one this one waits for. A job
  // inserted is recorded in the audit trail as submitted by `who`, in the
  // same statement (its request id, image, cluster, priority, the first KiB
  // of its command and its environment variables' names, never their
  // values); a repeat that returns an existing job records nothing.
  Result<SubmitOutcome> Submit(const NewJob& job, const audit::Who& who);
  Result<Job> Get(int64_t job_id);
  // The nearest earlier job of the same project with the same argv; nullopt
  // if there is none.
  Result<std::optional<Job>> PreviousWithCommand(int64_t job_id);
  Result<std::vector<Job>> List(const ListFilter& filter);
  // Queued: cancelled at once. Setup/running: cancel_requested is set and the
  // holding worker is told (via NOTIFY kiln_cancel). Ended: FailedPrecondition.
  // A request taken is recorded in the audit trail as `who`'s (its reason
  // and the status the job had), in the same transaction.
  // `ended_now` (if given): whether this cancel ended the job (it was
  // queued); a job that runs ends with its worker's report.
  Result<Job> Cancel(int64_t job_id, const std::string& reason, const audit::Who& who, bool* ended_now = nullptr);
  // Up to max_bytes of an attempt's log from offset (attempt 0: current),
  // contiguous. With skip_gaps (for an ended job, whose missing chunks will
  // never come), data may start after offset: see LogSlice::offset.
  Result<LogSlice> ReadLog(int64_t job_id, int attempt, int64_t offset, int64_t max_bytes, bool skip_gaps = false);
  // Why a queued job cannot be taken by any registered worker, or "" if some can.
  Result<std::string> Unsatisfiable(int64_t job_id);

 private:
  db::Pool& pool_;
};

}  // namespace kiln::queue
