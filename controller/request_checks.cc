#include "controller/request_checks.h"

#include <utility>

#include "api/convert.h"
#include "cas/digest.h"
#include "cas/tree.h"
#include "cc/deps.h"
#include "common/text.h"
#include "controller/workspace_name.h"

namespace kiln::controller {
namespace {

constexpr int64_t kMaxUnixMs = int64_t{1} << 45;      // year 3084: beyond that a time is garbage
constexpr int64_t kMaxLogOffset = int64_t{1} << 50;   // 1 PiB of log
constexpr int64_t kMaxPhaseMs = int64_t{400} * 86'400'000;  // no job phase lasts longer
constexpr size_t kMaxLogChunk = 4u << 20;
constexpr size_t kMaxOutput = 1 << 20;       // stdout + stderr of one compile
constexpr size_t kMaxDepfile = 16 << 20;
constexpr size_t kMaxArgs = 100'000;

}  // namespace

// Every string of a registration reaches SQL and the log line of the
// connection: none may hold a control character (common/text.h).
Status ValidateRegister(const v1::WorkerRegister& r) {
  if (r.worker_id().empty() || r.worker_id().size() > 128) return InvalidArgument("worker_id must be 1-128 bytes");
  KILN_RETURN_IF_ERROR(CheckText(r.worker_id(), "worker_id"));
  KILN_RETURN_IF_ERROR(CheckText(r.hostname(), "hostname", 255));
  KILN_RETURN_IF_ERROR(CheckText(r.work_dir(), "work_dir", 4096));
  if (r.slots() < 0 || r.slots() > 4096) return InvalidArgument("slots must be between 0 and 4096");
  if (r.arch().empty()) return InvalidArgument("arch is required");
  KILN_RETURN_IF_ERROR(CheckText(r.arch(), "arch", 64));
  KILN_RETURN_IF_ERROR(CheckText(r.os(), "os", 64));
  KILN_RETURN_IF_ERROR(CheckText(r.version(), "version", 128));
  if (r.cluster().empty()) return InvalidArgument("cluster is required");
  KILN_RETURN_IF_ERROR(CheckName("cluster", r.cluster()));
  if (r.labels_size() > 64) return InvalidArgument("at most 64 labels");
  for (const auto& [k, v] : r.labels()) {
    if (k.empty() || k == "arch" || k == "os") return InvalidArgument("invalid label name \"" + Printable(k) + "\"");
    KILN_RETURN_IF_ERROR(CheckText(k, "label name", 128));
    KILN_RETURN_IF_ERROR(CheckText(v, "label " + k, 1024));
  }
  return Status::Ok();
}

// A result is stored as JSON (jsonb refuses a NUL, and one refused report
// would fail the applier's whole batch, other workers' reports with it).
Status ValidateResult(const v1::JobResult& r) {
  if (r.error().find('\0') != std::string::npos) return InvalidArgument("error contains a NUL byte");
  KILN_RETURN_IF_ERROR(CheckText(r.limit(), "limit", 64));
  if (r.has_output_root()) KILN_RETURN_IF_ERROR(cas::CheckDigest(api::FromProto(r.output_root()), "output_root"));
  return Status::Ok();
}

Status ValidateUpdate(const v1::JobUpdate& u) {
  auto st = api::FromProto(u.status());
  if (!st || *st == queue::JobStatus::kSetup || *st == queue::JobStatus::kLost)
    return InvalidArgument("invalid job status " + std::to_string(static_cast<int>(u.status())));
  if (u.started_at_ms() < 0 || u.started_at_ms() > kMaxUnixMs || u.finished_at_ms() < 0 ||
      u.finished_at_ms() > kMaxUnixMs)
    return InvalidArgument("impossible times");
  if (u.has_result()) KILN_RETURN_IF_ERROR(ValidateResult(u.result()));
  return Status::Ok();
}

Status ValidateTimings(const v1::JobUpdate& u) {
  if (!u.has_timings()) return Status::Ok();
  if (u.status() != v1::SUCCEEDED && u.status() != v1::FAILED && u.status() != v1::CANCELLED)
    return InvalidArgument("timings come only with a final report");
  const v1::JobTimings& t = u.timings();
  for (int64_t b : {t.input_bytes(), t.output_bytes(), u.log_size()})
    if (b < 0 || b > kMaxLogOffset) return InvalidArgument("timings: a byte count is negative or over 1 PiB");
  // The phases in the order they happen; a phase that did not happen is 0.
  const std::pair<const char*, int64_t> phases[] = {
      {"received_ms", t.received_ms()}, {"inputs_ms", t.inputs_ms()},         {"image_ms", t.image_ms()},
      {"started_at_ms", u.started_at_ms()}, {"ended_ms", t.ended_ms()}, {"finished_at_ms", u.finished_at_ms()}};
  const char* last_name = nullptr;
  int64_t last = 0;
  for (const auto& [name, ms] : phases) {
    if (ms < 0 || ms > kMaxUnixMs) return InvalidArgument(std::string("timings: impossible ") + name);
    if (ms == 0) continue;
    if (ms < last)
      return InvalidArgument(std::string("timings: ") + name + " (" + std::to_string(ms) + ") is before " +
                             last_name + " (" + std::to_string(last) + ")");
    if (last > 0 && ms - last > kMaxPhaseMs)
      return InvalidArgument(std::string("timings: ") + name + " is more than 400 days after " + last_name);
    last = ms;
    last_name = name;
  }
  if (u.finished_at_ms() == 0) return InvalidArgument("timings: a final report needs finished_at_ms");
  return Status::Ok();
}

Status ValidateLogChunk(const v1::LogChunk& l) {
  if (l.offset() < 0 || l.offset() > kMaxLogOffset) return InvalidArgument("log offset out of range");
  if (l.data().size() > kMaxLogChunk) return InvalidArgument("log chunk larger than 4 MiB");
  return Status::Ok();
}

bool ValidWorkspace(const v1::WorkspaceReport& ws) {
  return CheckName("project", ws.project()).ok() && !ws.name().empty() && CheckWorkspaceName(ws.name()).ok() &&
         ws.bytes() >= 0 && (!ws.has_root() || cas::CheckDigest(api::FromProto(ws.root()), "root").ok());
}

Status CheckJobRef(int64_t job_id, int attempt) {
  if (job_id <= 0 || attempt <= 0) return InvalidArgument("job_id and attempt must be positive");
  return Status::Ok();
}

Status CheckCompileKey(const std::string& k, const std::string& what) {
  if (!cas::IsHash(k)) return InvalidArgument(what + " must be 64 lowercase hex digits");
  return Status::Ok();
}

Status CheckCompileText(const std::string& s, size_t max, const std::string& what) {
  if (s.size() > max) return InvalidArgument(what + " is longer than " + std::to_string(max) + " bytes");
  if (s.find('\0') != std::string::npos) return InvalidArgument(what + " contains a NUL byte");
  if (!cas::ValidUtf8(s)) return InvalidArgument(what + " is not valid UTF-8");
  return Status::Ok();
}

Status CheckStoreCompile(const cc::CompileEntry& e) {
  const cc::CompileResult& r = e.result;
  KILN_RETURN_IF_ERROR(CheckCompileKey(e.key, "key"));
  KILN_RETURN_IF_ERROR(CheckCompileKey(r.key, "result key"));
  KILN_RETURN_IF_ERROR(cc::CheckManifestEntries(e.deps));
  KILN_RETURN_IF_ERROR(CheckCompileText(e.parts.source, kMaxCompilePath, "source"));
  KILN_RETURN_IF_ERROR(CheckCompileText(e.parts.output, kMaxCompilePath, "output"));
  if (r.stdout.size() + r.stderr.size() > kMaxOutput) return InvalidArgument("more than 1 MiB of compiler output");
  if (r.depfile.size() > kMaxDepfile) return InvalidArgument("a dependency file over 16 MiB");
  if (!e.manifest_only) KILN_RETURN_IF_ERROR(cas::CheckDigest(r.object, "object"));
  if (e.parts.args.size() > kMaxArgs) return InvalidArgument("too many compiler arguments");
  return Status::Ok();
}

Status ValidateAction(const v1::Action& a) {
  constexpr int kMaxInputs = 100'000;
  if (a.inputs_size() > kMaxInputs || a.dirs_size() > kMaxInputs || a.outputs_size() > 1000 || a.argv_size() > 100'000)
    return InvalidArgument("an action has too many inputs, directories, outputs or arguments");
  if (a.argv_size() == 0 || a.argv(0).empty() || a.argv(0)[0] != '/')
    return InvalidArgument("an action's argv[0] must be an absolute path in its image");
  if (a.image().rfind("sha256:", 0) != 0) return InvalidArgument("an action names its image by digest (sha256:...)");
  if (!a.cwd().empty()) KILN_RETURN_IF_ERROR(cas::CheckRelativePath(a.cwd(), "action working directory"));
  for (const auto& in : a.inputs()) {
    KILN_RETURN_IF_ERROR(cas::CheckRelativePath(in.path(), "action input"));
    if (!in.has_digest() || !cas::IsHash(in.digest().hash()) || in.digest().size() < 0)
      return InvalidArgument("action input " + in.path() + " has no valid digest");
  }
  for (const auto& d : a.dirs()) KILN_RETURN_IF_ERROR(cas::CheckRelativePath(d, "action directory"));
  for (const auto& o : a.outputs()) KILN_RETURN_IF_ERROR(cas::CheckRelativePath(o, "action output"));
  for (const auto& [k, v] : a.env())
    if (k.empty() || k.find('=') != std::string::npos || k.find('\0') != std::string::npos ||
        v.find('\0') != std::string::npos)
      return InvalidArgument("an action's environment has a bad variable name or value");
  for (const auto& arg : a.argv())
    if (arg.find('\0') != std::string::npos) return InvalidArgument("an action's argument has a NUL byte");
  if (a.timeout_ms() < 0) return InvalidArgument("an action's timeout cannot be negative");
  return Status::Ok();
}


}  // namespace kiln::controller
