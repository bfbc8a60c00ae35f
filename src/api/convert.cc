#include "api/convert.h"

#include "common/text.h"

namespace kiln::api {

v1::JobStatus ToProto(queue::JobStatus s) {
  switch (s) {
    case queue::JobStatus::kQueued: return v1::QUEUED;
    case queue::JobStatus::kSetup: return v1::SETUP;
    case queue::JobStatus::kRunning: return v1::RUNNING;
    case queue::JobStatus::kSucceeded: return v1::SUCCEEDED;
    case queue::JobStatus::kFailed: return v1::FAILED;
    case queue::JobStatus::kCancelled: return v1::CANCELLED;
    case queue::JobStatus::kLost: return v1::LOST;
  }
  return v1::JOB_STATUS_UNSPECIFIED;
}

std::optional<queue::JobStatus> FromProto(v1::JobStatus s) {
  switch (s) {
    case v1::QUEUED: return queue::JobStatus::kQueued;
    case v1::SETUP: return queue::JobStatus::kSetup;
    case v1::RUNNING: return queue::JobStatus::kRunning;
    case v1::SUCCEEDED: return queue::JobStatus::kSucceeded;
    case v1::FAILED: return queue::JobStatus::kFailed;
    case v1::CANCELLED: return queue::JobStatus::kCancelled;
    case v1::LOST: return queue::JobStatus::kLost;
    default: return std::nullopt;
  }
}

const char* StatusName(v1::JobStatus s) {
  auto q = FromProto(s);
  return q ? queue::ToString(*q) : "unknown";
}

std::string DigestKey(const v1::Digest& d) { return d.hash() + "/" + std::to_string(d.size()); }

v1::Digest ToProto(const cas::Digest& d) {
  v1::Digest out;
  out.set_hash(d.hash);
  out.set_size(d.size);
  return out;
}

void DigestToProto(const std::string& key, v1::Digest* out) {
  auto d = cas::ParseDigest(key);  // keys are written by kiln: well formed
  if (d.ok()) *out = ToProto(*d);
  else out->set_hash(key);
}

cas::Digest FromProto(const v1::Digest& d) { return cas::Digest{d.hash(), d.size()}; }

void ToProto(const cas::Directory& in, v1::Directory* out) {
  for (const auto& e : in.entries) {
    auto* o = out->add_entries();
    o->set_name(e.name);
    switch (e.kind) {
      case cas::Kind::kFile: o->set_kind(v1::ENTRY_FILE); break;
      case cas::Kind::kDir: o->set_kind(v1::ENTRY_DIRECTORY); break;
      case cas::Kind::kSymlink: o->set_kind(v1::ENTRY_SYMLINK); break;
    }
    if (e.kind != cas::Kind::kSymlink) *o->mutable_digest() = ToProto(e.digest);
    o->set_executable(e.executable);
    o->set_target(e.target);
  }
}

Result<cas::Directory> FromProto(const v1::Directory& in, const std::string& where) {
  cas::Directory d;
  d.entries.reserve(static_cast<size_t>(in.entries_size()));
  for (const auto& e : in.entries()) {
    cas::Entry o;
    o.name = e.name();
    switch (e.kind()) {
      case v1::ENTRY_FILE: o.kind = cas::Kind::kFile; break;
      case v1::ENTRY_DIRECTORY: o.kind = cas::Kind::kDir; break;
      case v1::ENTRY_SYMLINK: o.kind = cas::Kind::kSymlink; break;
      default:
        return InvalidArgument("in tree node " + where + ": entry '" + Printable(e.name(), 200) +
                               "' has no valid kind (file, directory or symlink)");
    }
    if (e.has_digest()) o.digest = FromProto(e.digest());
    o.executable = e.executable();
    o.target = e.target();
    d.entries.push_back(std::move(o));
  }
  return d;
}

void ToProto(const queue::JobSpec& in, v1::JobSpec* out) {
  for (const auto& a : in.argv) out->add_argv(a);
  for (const auto& [k, v] : in.env) (*out->mutable_env())[k] = v;
  out->set_working_dir(in.working_dir);
  out->set_timeout_s(in.timeout_s);
  for (const auto& [k, v] : in.requirements) (*out->mutable_requirements())[k] = v;
  if (!in.input_root.empty()) DigestToProto(in.input_root, out->mutable_input_root());
  for (const auto& o : in.outputs) out->add_outputs(o);
  out->set_image(in.image);
  if (in.memory_bytes > 0 || in.pids > 0 || in.cpu_millis > 0 || in.disk_bytes > 0) {
    out->mutable_resources()->set_memory_bytes(in.memory_bytes);
    out->mutable_resources()->set_disk_bytes(in.disk_bytes);
    out->mutable_resources()->set_pids(in.pids);
    out->mutable_resources()->set_cpu_millis(in.cpu_millis);
  }
  out->set_no_compile_cache(in.no_compile_cache);
  out->set_workspace(in.workspace);
  out->set_workspace_name(in.workspace_name);
  for (const auto& p : in.excluded_outputs) out->add_excluded_outputs(p);
  for (const auto& n : in.secret_names) out->add_secret_env_names(n);
}

queue::JobSpec FromProto(const v1::JobSpec& in) {
  queue::JobSpec s;
  s.argv.assign(in.argv().begin(), in.argv().end());
  for (const auto& [k, v] : in.env()) s.env[k] = v;
  s.working_dir = in.working_dir();
  s.timeout_s = in.timeout_s();
  for (const auto& [k, v] : in.requirements()) s.requirements[k] = v;
  if (in.has_input_root()) s.input_root = DigestKey(in.input_root());
  s.outputs.assign(in.outputs().begin(), in.outputs().end());
  s.image = in.image();
  s.memory_bytes = in.resources().memory_bytes();
  s.disk_bytes = in.resources().disk_bytes();
  s.pids = in.resources().pids();
  s.cpu_millis = in.resources().cpu_millis();
  s.no_compile_cache = in.no_compile_cache();
  s.workspace = in.workspace();
  s.workspace_name = in.workspace_name();
  s.excluded_outputs.assign(in.excluded_outputs().begin(), in.excluded_outputs().end());
  s.secret_names.assign(in.secret_env_names().begin(), in.secret_env_names().end());
  return s;
}

void ToProto(const queue::JobResult& in, v1::JobResult* out) {
  out->set_exit_code(in.exit_code);
  out->set_term_signal(in.term_signal);
  out->set_error(in.error);
  out->set_timed_out(in.timed_out);
  if (!in.output_root.empty()) DigestToProto(in.output_root, out->mutable_output_root());
  out->set_limit(in.limit);
  out->set_cached_from_job(in.cached_from);
  out->set_infrastructure(in.infrastructure);
}

queue::JobTimings FromProto(const v1::JobTimings& in, int64_t log_bytes) {
  queue::JobTimings t;
  t.received_ms = in.received_ms();
  t.inputs_ms = in.inputs_ms();
  t.image_ms = in.image_ms();
  t.ended_ms = in.ended_ms();
  t.input_bytes = in.input_bytes();
  t.output_bytes = in.output_bytes();
  t.log_bytes = log_bytes;
  return t;
}

queue::JobResult FromProto(const v1::JobResult& in) {
  queue::JobResult r;
  r.exit_code = in.exit_code();
  r.term_signal = in.term_signal();
  r.error = in.error();
  r.timed_out = in.timed_out();
  if (in.has_output_root()) r.output_root = DigestKey(in.output_root());
  r.limit = in.limit();
  r.infrastructure = in.infrastructure();
  // (cached_from_job is the controller's to set, never a worker's.)
  return r;
}

void ToProto(const queue::Job& in, v1::Job* out) {
  out->set_id(in.id);
  out->set_project(in.project);
  out->set_cluster(in.cluster);
  out->set_priority(in.priority);
  out->set_status(ToProto(in.status));
  out->set_attempt(in.attempt);
  out->set_max_attempts(in.max_attempts);
  out->set_worker_id(in.worker_id);
  ToProto(in.spec, out->mutable_spec());
  out->set_request_id(in.request_id);
  out->set_submitted_at_ms(in.submitted_ms);
  out->set_queued_at_ms(in.queued_ms);
  out->set_started_at_ms(in.started_ms);
  out->set_finished_at_ms(in.finished_ms);
  if (in.result) ToProto(*in.result, out->mutable_result());
  out->set_log_size(in.log_size);
  out->set_cancel_requested(in.cancel_requested);
  if (in.status == queue::JobStatus::kQueued) out->set_waits_for_job(in.waits_for);
  if (in.log_removed) {
    auto* lr = out->mutable_log_removed();
    lr->set_job_id(in.log_removed->job_id);
    lr->set_removed_at_ms(in.log_removed->removed_ms);
    lr->set_reason(in.log_removed->reason);
    lr->set_detail(in.log_removed->detail);
    lr->set_bytes(in.log_removed->bytes);
  }
}

void ToProto(const queue::WorkerRow& in, v1::WorkerInfo* out) {
  out->set_id(in.id);
  out->set_hostname(in.hostname);
  out->set_cluster(in.cluster);
  for (const auto& [k, v] : in.properties) {
    if (k == "arch") out->set_arch(v);
    else if (k != "os") (*out->mutable_labels())[k] = v;
  }
  out->set_slots(in.slots);
  out->set_running(in.running);
  out->set_state(in.state);
  out->set_last_heartbeat_ms(in.last_heartbeat_ms);
  out->set_version(in.version);
  out->set_health(in.health);
  out->set_health_reason(in.health_reason);
  out->set_health_since_ms(in.health_since_ms);
}

void ToProto(const queue::ProjectRow& in, v1::Project* out) {
  out->set_name(in.name);
  out->set_config_json(in.config_json);
  out->set_updated_at_ms(in.updated_at_ms);
  for (const auto& c : in.clusters) out->add_clusters(c);
  // As controller::CacheScope names it for the project's jobs.
  out->set_cache_scope(in.shared_scope.empty() ? "project:" + in.name : "shared:" + in.shared_scope);
}

void ToProto(const queue::CacheScopeRow& in, v1::CacheScope* out) {
  out->set_name(in.name);
  for (const auto& p : in.projects) out->add_projects(p);
  out->set_created_by(in.created_by);
  out->set_created_at_ms(in.created_at_ms);
  out->set_updated_at_ms(in.updated_at_ms);
}

void ToProto(const queue::ClusterRow& in, v1::Cluster* out) {
  out->set_name(in.name);
  for (const auto& p : in.projects) out->add_projects(p);
  out->set_workers(in.workers);
}

grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), s.message());
}

Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return Status::Ok();
  int code = static_cast<int>(s.error_code());
  if (code < 0 || code > static_cast<int>(Code::kUnauthenticated)) {
    return {Code::kUnknown, s.error_message()};
  }
  std::string msg = s.error_message();
  if (msg.empty()) msg = CodeName(static_cast<Code>(code));
  return {static_cast<Code>(code), std::move(msg)};
}

}  // namespace kiln::api
