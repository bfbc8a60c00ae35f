#include "queue/job_rows.h"

#include <map>
#include <stdexcept>

namespace kiln::queue::rows {

using json = nlohmann::json;

JobSpec SpecFromJson(const std::string& spec_text, const std::string& req_text) {
  JobSpec s;
  json j = json::parse(spec_text);
  s.argv = j.value("argv", std::vector<std::string>{});
  s.env = j.value("env", std::map<std::string, std::string>{});
  s.working_dir = j.value("working_dir", "");
  s.timeout_s = j.value("timeout_s", int64_t{0});
  s.input_root = j.value("input_root", "");
  s.outputs = j.value("outputs", std::vector<std::string>{});
  s.image = j.value("image", "");
  s.memory_bytes = j.value("memory_bytes", int64_t{0});
  s.disk_bytes = j.value("disk_bytes", int64_t{0});
  s.pids = j.value("pids", 0);
  s.cpu_millis = j.value("cpu_millis", 0);
  s.no_compile_cache = j.value("no_compile_cache", false);
  s.workspace = j.value("workspace", "");
  s.workspace_name = j.value("workspace_name", "");
  s.excluded_outputs = j.value("excluded_outputs", std::vector<std::string>{});
  s.secret_names = j.value("secret_env", std::vector<std::string>{});
  if (!req_text.empty()) s.requirements = json::parse(req_text).get<std::map<std::string, std::string>>();
  return s;
}

std::string SpecToJson(const JobSpec& s) {
  json j = {{"argv", s.argv}, {"env", s.env}, {"working_dir", s.working_dir}, {"timeout_s", s.timeout_s}};
  if (!s.input_root.empty()) j["input_root"] = s.input_root;
  if (!s.outputs.empty()) j["outputs"] = s.outputs;
  if (!s.image.empty()) j["image"] = s.image;
  if (s.memory_bytes > 0) j["memory_bytes"] = s.memory_bytes;
  if (s.disk_bytes > 0) j["disk_bytes"] = s.disk_bytes;
  if (s.pids > 0) j["pids"] = s.pids;
  if (s.cpu_millis > 0) j["cpu_millis"] = s.cpu_millis;
  if (s.no_compile_cache) j["no_compile_cache"] = true;
  if (!s.workspace.empty()) j["workspace"] = s.workspace;
  if (!s.workspace_name.empty()) j["workspace_name"] = s.workspace_name;
  if (!s.excluded_outputs.empty()) j["excluded_outputs"] = s.excluded_outputs;
  if (!s.secret_names.empty()) j["secret_env"] = s.secret_names;
  return j.dump();
}

std::string RequirementsToJson(const JobSpec& s) { return json(s.requirements).dump(); }

nlohmann::json ResultToJson(const JobResult& r) {
  json j = {{"exit_code", r.exit_code}};
  if (r.term_signal != 0) j["term_signal"] = r.term_signal;
  if (!r.error.empty()) j["error"] = r.error;
  if (r.timed_out) j["timed_out"] = true;
  if (!r.output_root.empty()) j["output_root"] = r.output_root;
  if (!r.limit.empty()) j["limit"] = r.limit;
  if (r.cached_from != 0) j["cached_from"] = r.cached_from;
  if (r.infrastructure) j["infrastructure"] = true;
  return j;
}

JobResult ResultFromJson(const std::string& text) {
  json j = json::parse(text);
  JobResult r;
  r.exit_code = j.value("exit_code", -1);
  r.term_signal = j.value("term_signal", 0);
  r.error = j.value("error", "");
  r.timed_out = j.value("timed_out", false);
  r.output_root = j.value("output_root", "");
  r.limit = j.value("limit", "");
  r.cached_from = j.value("cached_from", int64_t{0});
  r.infrastructure = j.value("infrastructure", false);
  return r;
}

JobStatus StatusOf(const pqxx::field& f) {
  auto s = ParseJobStatus(f.c_str());
  if (!s) throw std::runtime_error(std::string("unknown job status in database: ") + f.c_str());
  return *s;
}

Job RowToJob(const pqxx::row& r) {
  Job j;
  j.id = r[0].as<int64_t>();
  j.project = r[1].as<std::string>();
  j.cluster = r[2].as<std::string>();
  j.priority = r[3].as<int>();
  j.status = StatusOf(r[4]);
  j.attempt = r[5].as<int>();
  j.max_attempts = r[6].as<int>();
  j.worker_id = r[7].as<std::string>();
  j.spec = SpecFromJson(r[8].as<std::string>(), r[9].as<std::string>());
  j.request_id = r[10].as<std::string>();
  j.submitted_ms = r[11].as<int64_t>();
  j.queued_ms = r[12].as<int64_t>();
  j.started_ms = r[13].as<int64_t>();
  j.finished_ms = r[14].as<int64_t>();
  std::string res = r[15].as<std::string>();
  if (!res.empty()) j.result = ResultFromJson(res);
  j.log_size = r[16].as<int64_t>();
  j.cancel_requested = r[17].as<bool>();
  j.waits_for = r[18].as<int64_t>();
  if (std::string removed = r[19].as<std::string>(); !removed.empty()) {
    json x = json::parse(removed);
    LogRemoval lr;
    lr.job_id = x.value("job", int64_t{0});
    lr.removed_ms = x.value("at", int64_t{0});
    lr.reason = x.value("reason", "");
    lr.detail = x.value("detail", "");
    lr.bytes = x.value("bytes", int64_t{0});
    j.log_removed = std::move(lr);
  }
  return j;
}

}  // namespace kiln::queue::rows
