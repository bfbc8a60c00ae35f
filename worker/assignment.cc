#include "worker/assignment.h"

#include "api/convert.h"

namespace kiln::worker {

Assignment FromProto(const v1::Assign& a) {
  Assignment out;
  out.job_id = a.job_id();
  out.attempt = a.attempt();
  out.project = a.project();
  out.spec = api::FromProto(a.spec());
  if (a.spec().has_input_root()) out.input_root = api::FromProto(a.spec().input_root());
  out.secret_env.insert(a.secret_env().begin(), a.secret_env().end());
  out.parallelism = a.parallelism();
  return out;
}

v1::JobUpdate RunningUpdate(const Assignment& a, int64_t started_ms) {
  v1::JobUpdate u;
  u.set_job_id(a.job_id);
  u.set_attempt(a.attempt);
  u.set_status(v1::RUNNING);
  u.set_started_at_ms(started_ms);
  return u;
}

v1::JobUpdate FinalUpdate(const Assignment& a, const RunOutcome& out, int64_t log_size) {
  v1::JobUpdate u;
  u.set_job_id(a.job_id);
  u.set_attempt(a.attempt);
  u.set_status(api::ToProto(out.status));
  api::ToProto(out.result, u.mutable_result());
  u.set_started_at_ms(out.started_ms);
  u.set_finished_at_ms(out.finished_ms);
  u.set_log_size(log_size);
  return u;
}

v1::JobUpdate HandBackUpdate(int64_t job_id, int attempt, const std::string& why) {
  v1::JobUpdate u;
  u.set_job_id(job_id);
  u.set_attempt(attempt);
  u.set_status(v1::QUEUED);
  u.mutable_result()->set_exit_code(-1);
  u.mutable_result()->set_error(why);
  return u;
}

}  // namespace kiln::worker
