// kiln submit, status, logs, cancel, list.

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <thread>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/downloads.h"
#include "cli/errors.h"
#include "cli/follow.h"
#include "cli/interrupt.h"
#include "cli/output.h"
#include "cas/walk.h"
#include "cli/trees.h"
#include "common/util.h"

namespace kiln::cli {
namespace {

ErrorContext Ctx(const Globals& g) { return {g.controller, g.timeout}; }

constexpr size_t kMaxExcludedListed = 1000;

// "a b c" of the first `n` paths, "... (N in all)" when there are more.
std::string JoinPaths(const google::protobuf::RepeatedPtrField<std::string>& ps, int n) {
  std::string out;
  for (int i = 0; i < ps.size() && i < n; ++i) out += (i ? " " : "") + ps[i];
  if (ps.size() > n) out += " ... (" + std::to_string(ps.size()) + " in all)";
  return out;
}

void PrintLine(const std::string& s) { std::printf("%s\n", s.c_str()); }

std::string Duration(const v1::Job& j, int64_t now_ms) {
  if (j.started_at_ms() <= 0) return "-";
  if (j.finished_at_ms() >= j.started_at_ms()) return FormatMs(j.finished_at_ms() - j.started_at_ms());
  if (!IsTerminal(j.status())) return FormatMs(std::max<int64_t>(0, now_ms - j.started_at_ms())) + " so far";
  return "-";
}

std::string Attempts(const v1::Job& j) {
  return std::to_string(j.attempt()) + "/" + std::to_string(j.max_attempts());
}

std::string TimeAndAge(int64_t ms, int64_t now_ms) {
  if (ms <= 0) return "-";
  return FormatTime(ms) + " (" + FormatAge(ms, now_ms) + " ago)";
}

// `remote`: RemoteSummary of the job ("" leaves the row out).
void PrintJobSummary(const v1::Job& j, const std::string& remote = "") {
  const int64_t now = NowUnixMs();
  Table t({"id:", std::to_string(j.id())});
  t.AddRow({"status:", JobStatusName(j.status()) + (j.cancel_requested() && !IsTerminal(j.status())
                                                        ? " (cancel requested)" : "")});
  if (j.status() == v1::QUEUED && j.waits_for_job() != 0) {
    t.AddRow({"waiting:", "for job " + std::to_string(j.waits_for_job()) +
                              ", the same build in flight (in-flight de-duplication); it takes its result"});
  }
  if (j.status() == v1::QUEUED && !j.unsatisfiable().empty()) {
    t.AddRow({"waiting:", j.unsatisfiable()});
  }
  t.AddRow({"project:", j.project()});
  if (!j.cluster().empty()) t.AddRow({"cluster:", j.cluster()});
  t.AddRow({"attempt:", Attempts(j)});
  t.AddRow({"worker:", j.worker_id().empty() ? "-" : j.worker_id()});
  t.AddRow({"priority:", std::to_string(j.priority())});
  t.AddRow({"command:", CommandLine(j.spec())});
  if (!j.spec().working_dir().empty()) t.AddRow({"workdir:", j.spec().working_dir()});
  if (!j.spec().requirements().empty()) t.AddRow({"requires:", JoinMap(j.spec().requirements())});
  if (j.spec().secret_env_names_size() > 0) {
    std::string names;
    for (const auto& n : j.spec().secret_env_names()) names += (names.empty() ? "" : " ") + n;
    t.AddRow({"secret env:", names + " (values never shown; masked as *** in the log)"});
  }
  auto digest = [](const v1::Digest& d) { return "sha256:" + d.hash() + "/" + std::to_string(d.size()); };
  if (!j.spec().image().empty()) t.AddRow({"image:", j.spec().image()});
  if (j.spec().has_input_root()) t.AddRow({"input:", digest(j.spec().input_root())});
  if (j.spec().outputs_size() > 0) {
    std::string outs;
    for (const auto& o : j.spec().outputs()) outs += (outs.empty() ? "" : " ") + o;
    t.AddRow({"outputs:", outs});
  }
  if (j.spec().excluded_outputs_size() > 0) {
    t.AddRow({"left out:", JoinPaths(j.spec().excluded_outputs(), 10) +
                               " (declared outputs kiln downloaded, unchanged: not inputs)"});
  }
  t.AddRow({"submitted:", TimeAndAge(j.submitted_at_ms() > 0 ? j.submitted_at_ms() : j.queued_at_ms(), now)});
  t.AddRow({"started:", TimeAndAge(j.started_at_ms(), now)});
  t.AddRow({"finished:", TimeAndAge(j.finished_at_ms(), now)});
  t.AddRow({"duration:", Duration(j, now)});
  if (j.has_result()) {
    const auto& r = j.result();
    if (r.exit_code() >= 0) t.AddRow({"exit code:", std::to_string(r.exit_code())});
    if (r.term_signal() > 0) t.AddRow({"signal:", std::to_string(r.term_signal())});
    if (r.timed_out()) t.AddRow({"timed out:", "yes (after " + FormatMs(j.spec().timeout_s() * 1000) + ")"});
    if (!r.limit().empty()) t.AddRow({"limit hit:", r.limit()});
    if (!r.error().empty()) t.AddRow({"error:", r.error()});
    if (r.has_output_root()) t.AddRow({"output tree:", digest(r.output_root()) + " (kiln outputs " + std::to_string(j.id()) + ")"});
  }
  if (IsTerminal(j.status())) t.AddRow({"outcome:", DescribeOutcome(j)});
  if (!remote.empty()) t.AddRow({"remote:", remote});
  if (j.has_log_removed()) t.AddRow({"log:", DescribeLogRemoved(j, now)});
  else t.AddRow({"log:", std::to_string(j.log_size()) + " bytes (attempt " + std::to_string(j.attempt()) + ")"});
  t.Print(stdout);
}

// --secret-env NAME (from this process's environment) and --secret-file
// NAME=PATH. A value never goes on the command line, where ps shows it.
Status SecretEnv(const SubmitArgs& a, google::protobuf::Map<std::string, std::string>* out) {
  for (const auto& name : a.secret_env) {
    if (name.find('=') != std::string::npos) {
      return InvalidArgument("--secret-env takes a NAME whose value is read from your environment, not NAME=VALUE "
                             "(a value on the command line shows in ps); for a file: --secret-file NAME=PATH");
    }
    const char* v = std::getenv(name.c_str());
    if (v == nullptr) return InvalidArgument("--secret-env " + name + ": " + name + " is not set in your environment");
    (*out)[name] = v;
  }
  auto files = ParseKeyValues(a.secret_file, "--secret-file");
  if (!files.ok()) return files.status();
  for (const auto& [name, path] : *files) {
    if (out->count(name)) return InvalidArgument("secret env " + name + " is given twice");
    auto data = ReadWholeFile(path);
    if (!data.ok()) return Status(data.status().code(), "--secret-file " + name + ": " + data.status().message());
    std::string v = std::move(*data);
    if (!v.empty() && v.back() == '\n') v.pop_back();
    if (!v.empty() && v.back() == '\r') v.pop_back();
    (*out)[name] = std::move(v);
  }
  return Status::Ok();
}

}  // namespace

int RunSubmit(Client& c, const Globals& g, const SubmitArgs& a) {
  if (a.command.empty()) return UsageError("no command given: kiln submit [OPTIONS] -- CMD ARGS...");
  auto env = ParseKeyValues(a.env, "--env");
  if (!env.ok()) return UsageError(env.status().message());
  auto req_kv = ParseKeyValues(a.require, "--require");
  if (!req_kv.ok()) return UsageError(req_kv.status().message());

  v1::SubmitRequest req;
  if (Status s = SecretEnv(a, req.mutable_secret_env()); !s.ok()) return UsageError(s.message());
  req.set_project(a.project);
  req.set_cluster(a.cluster);
  if (a.priority) req.set_priority(*a.priority);
  req.set_max_attempts(a.max_attempts);
  req.set_no_cache(a.no_cache);
  if (a.no_compile_cache) req.mutable_spec()->set_no_compile_cache(true);
  req.mutable_spec()->set_workspace(a.workspace);
  std::string ws_name = a.workspace_name;
  if (ws_name.empty() && !a.no_input && a.workspace != "fresh") ws_name = cas::GitBranch(a.input);
  req.mutable_spec()->set_workspace_name(ws_name);
  // The idempotency key makes retrying Submit safe: a retry gets the same job.
  req.set_request_id(a.request_id.empty() ? RandomHex(16) : a.request_id);
  auto* spec = req.mutable_spec();
  for (const auto& arg : a.command) spec->add_argv(arg);
  for (const auto& [k, v] : *env) (*spec->mutable_env())[k] = v;
  for (const auto& [k, v] : *req_kv) (*spec->mutable_requirements())[k] = v;
  spec->set_working_dir(a.workdir);
  spec->set_timeout_s(a.timeout_s);
  spec->set_image(a.image);
  if (!a.memory.empty()) {
    auto m = ParseBytes(a.memory);
    if (!m.ok()) return UsageError("--memory: " + m.status().message());
    spec->mutable_resources()->set_memory_bytes(*m);
  }
  if (!a.disk.empty()) {
    auto d = ParseBytes(a.disk);
    if (!d.ok()) return UsageError("--disk: " + d.status().message());
    spec->mutable_resources()->set_disk_bytes(*d);
  }
  if (a.pids > 0) spec->mutable_resources()->set_pids(a.pids);
  if (a.cpus > 0) spec->mutable_resources()->set_cpu_millis(static_cast<int>(a.cpus * 1000));
  for (const auto& o : a.outputs) spec->add_outputs(CleanRelativePath(o));
  if (!a.no_input) {
    SendOptions so;
    so.dir = a.input;
    so.include = a.include;
    so.exclude = a.exclude;
    so.use_git = !a.no_gitignore;
    so.hash_cache = !a.no_hash_cache;
    so.outputs.assign(spec->outputs().begin(), spec->outputs().end());
    so.outputs_dir = a.outputs_dir;
    auto sent = SendTree(c, so);
    if (!sent.ok()) return ReportError(sent.status(), Ctx(g));
    *spec->mutable_input_root() = sent->root;
    // For kiln why and status only; the controller takes at most 1000.
    for (size_t i = 0; i < sent->left_out.size() && i < kMaxExcludedListed; ++i)
      spec->add_excluded_outputs(sent->left_out[i]);
  }

  auto resp = c.Submit(req);
  if (!resp.ok()) return ReportError(resp.status(), Ctx(g));
  const v1::Job& job = resp->job();
  const int64_t id = job.id();
  const std::string name = "job " + std::to_string(id);

  if (a.detach) {
    if (g.json) PrintLine(ToJson(job));
    else PrintLine(std::to_string(id));
    return kExitOk;
  }

  if (resp->existing()) {
    std::fprintf(stderr, "kiln: %s already submitted with request id %s (project %s)\n", name.c_str(),
                 req.request_id().c_str(), job.project().c_str());
  } else {
    std::fprintf(stderr, "kiln: %s queued (project %s)\n", name.c_str(), job.project().c_str());
  }

  FollowOptions fo;
  fo.job_id = id;
  fo.status_lines = true;
  fo.retry_first_connect = true;
  if (auto now = c.GetJob(id); now.ok()) {
    if (now->waits_for_job() != 0) {
      std::fprintf(stderr, "kiln: %s waits for job %lld, the same build already in flight; it takes its result\n",
                   name.c_str(), static_cast<long long>(now->waits_for_job()));
    }
    if (!now->unsatisfiable().empty()) {
      Warn(name + " cannot start yet: " + now->unsatisfiable() + "; it stays queued (Ctrl-C cancels it)");
      fo.known_unsatisfiable = now->unsatisfiable();
    }
  }

  // First Ctrl-C cancels the job and keeps following; the second exits 130.
  InterruptGuard guard([&c, id, name] {
    // After the terminal's "^C", start on a fresh line.
    std::fprintf(stderr, "%skiln: cancelling %s (Ctrl-C again to stop waiting)\n", isatty(STDERR_FILENO) ? "\n" : "",
                 name.c_str());
    auto r = c.CancelJob(id, "cancelled from kiln submit (Ctrl-C)");
    if (!r.ok()) Warn("could not cancel " + name + ": " + r.status().message());
  });

  auto final_job = FollowJob(c, fo);
  if (!final_job.ok()) {
    int code = ReportError(final_job.status(), Ctx(g));
    std::fprintf(stderr, "kiln: %s continues without this client; see kiln status %lld\n", name.c_str(),
                 static_cast<long long>(id));
    return code;
  }
  std::fprintf(stderr, "kiln: %s %s\n", name.c_str(), DescribeOutcome(*final_job).c_str());
  if (final_job->status() == v1::SUCCEEDED && final_job->result().has_output_root()) {
    std::string dest = !a.outputs_dir.empty() ? a.outputs_dir : a.no_input ? "." : a.input;
    if (Status s = DownloadOutputs(c, final_job->result().output_root(), dest); !s.ok()) {
      ReportError(s, Ctx(g));
      std::fprintf(stderr, "kiln: fetch them again with: kiln outputs %lld --dest %s\n", static_cast<long long>(id),
                   dest.c_str());
      return ExitCodeFor(s) == kExitOk ? kExitRemote : ExitCodeFor(s);
    }
  }
  return JobExitCode(*final_job);
}

int RunOutputs(Client& c, const Globals& g, const OutputsArgs& a) {
  auto id = ParseJobId(a.job_id);
  if (!id.ok()) return UsageError(id.status().message());
  auto job = c.GetJob(*id);
  if (!job.ok()) return ReportError(job.status(), Ctx(g));
  if (!job->result().has_output_root()) {
    std::string why = job->spec().outputs_size() == 0 ? "it declared none (kiln submit --output PATH)"
                      : !IsTerminal(job->status()) ? "it has not finished yet"
                                                   : "it ended " + JobStatusName(job->status()) + " without them";
    return ReportError(NotFound("job " + a.job_id + " has no outputs: " + why), Ctx(g));
  }
  if (Status s = DownloadOutputs(c, job->result().output_root(), a.dest); !s.ok()) return ReportError(s, Ctx(g));
  return kExitOk;
}

int RunStatus(Client& c, const Globals& g, const std::string& job_id) {
  auto id = ParseJobId(job_id);
  if (!id.ok()) return UsageError(id.status().message());
  auto job = c.GetJob(*id);
  if (!job.ok()) return ReportError(job.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJson(*job));
    return kExitOk;
  }
  // The remote compiles are recorded with the job's final report. The
  // job's state is shown whatever happens to that second call.
  std::string remote;
  if (IsTerminal(job->status())) {
    auto ex = c.ExplainJob(*id, 1);
    remote = ex.ok() ? RemoteSummary(*ex) : "unknown: kiln why " + job_id + " failed: " + ex.status().message();
  }
  PrintJobSummary(*job, remote);
  return kExitOk;
}

namespace {
void PrintActionComparison(const v1::Explanation& e);
}  // namespace

int RunWhy(Client& c, const Globals& g, const WhyArgs& a) {
  auto id = ParseJobId(a.job_id);
  if (!id.ok()) return UsageError(id.status().message());
  auto ex = c.ExplainJob(*id, a.max_paths);
  if (!ex.ok()) return ReportError(ex.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJson(*ex));
    return kExitOk;
  }
  PrintLine(ex->verdict() + ".");
  PrintActionComparison(*ex);
  if (const auto& left = ex->job().spec().excluded_outputs(); !left.empty()) {
    PrintLine("left out of the input tree: " + JoinPaths(left, a.max_paths) +
              " (declared outputs that kiln downloaded there, unchanged since: not inputs)");
  }
  PrintCompileSummary(*ex, a.max_paths);
  return kExitOk;
}

namespace {

void PrintActionComparison(const v1::Explanation& e) {
  const v1::Explanation* ex = &e;
  if (!ex->has_compared()) return;
  const v1::Job& p = ex->compared();
  std::string when = p.finished_at_ms() > 0 ? ", " + FormatAge(p.finished_at_ms(), NowUnixMs()) + " ago" : "";
  PrintLine("compared with job " + std::to_string(p.id()) + " (" + JobStatusName(p.status()) + when +
            "), the nearest earlier job of project " + p.project() + " with the same command:");
  if (ex->same_action()) PrintLine("  same image, command, environment, working directory, inputs and outputs");
  for (const auto& sc : ex->spec_changes()) {
    if (sc.added()) PrintLine("  " + sc.field() + ": added, \"" + sc.after() + "\"");
    else if (sc.removed()) PrintLine("  " + sc.field() + ": removed (was \"" + sc.before() + "\")");
    else PrintLine("  " + sc.field() + ": \"" + sc.before() + "\" -> \"" + sc.after() + "\"");
  }
  if (!ex->paths_unavailable().empty()) {
    PrintLine("  input tree: changed, but the trees cannot be compared: " + ex->paths_unavailable());
  } else if (ex->path_changes_size() > 0) {
    int added = 0, removed = 0, modified = 0;
    for (const auto& pc : ex->path_changes()) {
      if (pc.kind() == v1::PathChange::ADDED) ++added;
      else if (pc.kind() == v1::PathChange::REMOVED) ++removed;
      else ++modified;
    }
    PrintLine("  input tree: " + std::to_string(modified) + " modified, " + std::to_string(added) + " added, " +
              std::to_string(removed) + " removed" + (ex->paths_truncated() ? " (first " + std::to_string(ex->path_changes_size()) + " changes; --max-paths shows more)" : ""));
    // Digests cut to 12 hex digits to keep a line readable (--json has them whole).
    auto shorten = [](std::string s) {
      size_t at = s.find("sha256:");
      if (at != std::string::npos && s.size() >= at + 7 + 64) s.replace(at + 7 + 12, 52, "..");
      return s;
    };
    // Paths one side left out as downloaded outputs (kiln submit --output).
    std::set<std::string> left_now(ex->job().spec().excluded_outputs().begin(),
                                   ex->job().spec().excluded_outputs().end());
    std::set<std::string> left_then(p.spec().excluded_outputs().begin(), p.spec().excluded_outputs().end());
    // Whether `left` holds the path of the change or a path below it (a
    // directory added or removed is one change).
    auto holds = [](const std::set<std::string>& left, const std::string& path) {
      if (left.count(path)) return true;
      auto it = left.lower_bound(path + "/");
      return it != left.end() && it->rfind(path + "/", 0) == 0;
    };
    auto note = [&](const v1::PathChange& pc) -> std::string {
      if (pc.kind() == v1::PathChange::REMOVED && holds(left_now, pc.path()))
        return "left out: a declared output kiln downloaded, unchanged";
      if (pc.kind() != v1::PathChange::REMOVED && holds(left_then, pc.path()) && !holds(left_now, pc.path()))
        return "an input again: changed since kiln downloaded it (left out of job " + std::to_string(p.id()) + ")";
      return "";
    };
    bool notes = false;
    for (const auto& pc : ex->path_changes()) notes = notes || !note(pc).empty();
    std::vector<std::string> header{"", "PATH", "BEFORE", "AFTER"};
    if (notes) header.push_back("NOTE");
    Table t(header);
    for (const auto& pc : ex->path_changes()) {
      const char* kind = pc.kind() == v1::PathChange::ADDED ? "added" : pc.kind() == v1::PathChange::REMOVED ? "removed" : "modified";
      std::vector<std::string> row{std::string("    ") + kind, pc.path(), pc.before().empty() ? "-" : shorten(pc.before()),
                                   pc.after().empty() ? "-" : shorten(pc.after())};
      if (notes) row.push_back(note(pc));
      t.AddRow(row);
    }
    t.Print(stdout);
  } else if (ex->job().spec().input_root().hash() == p.spec().input_root().hash()) {
    PrintLine("  input tree: the same");
  }
}

}  // namespace

int RunLogs(Client& c, const Globals& g, const LogsArgs& a) {
  auto id = ParseJobId(a.job_id);
  if (!id.ok()) return UsageError(id.status().message());
  FollowOptions fo;
  fo.job_id = *id;
  fo.attempt = a.attempt;
  fo.follow = a.follow;
  auto r = FollowJob(c, fo);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  // Removed by the log quotas: nothing (or not all) was printed; say why.
  if (r->has_log_removed()) return ReportError(NotFound(DescribeLogRemoved(*r)), Ctx(g));
  return kExitOk;
}

int RunCancel(Client& c, const Globals& g, const CancelArgs& a) {
  auto id = ParseJobId(a.job_id);
  if (!id.ok()) return UsageError(id.status().message());
  const std::string name = "job " + std::to_string(*id);
  auto job = c.CancelJob(*id, a.reason);
  if (!job.ok()) return ReportError(job.status(), Ctx(g));

  if (!a.no_wait) {
    // The worker stops the build; wait until it reported.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (!IsTerminal(job->status())) {
      if (std::chrono::steady_clock::now() >= deadline) {
        if (g.json) PrintLine(ToJson(*job));
        std::fprintf(stderr,
                     "kiln: error: %s is still %s 30 s after the cancel request; it stops when its worker acts "
                     "on it (check with: kiln status %lld)\n",
                     name.c_str(), JobStatusName(job->status()).c_str(), static_cast<long long>(*id));
        return kExitUnreachable;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      auto next = c.GetJob(*id);
      if (!next.ok()) return ReportError(next.status(), Ctx(g));
      job = std::move(next);
    }
  }

  if (g.json) PrintLine(ToJson(*job));
  if (a.no_wait && !IsTerminal(job->status())) {
    if (!g.json) PrintLine("cancel requested for " + name);
    return kExitOk;
  }
  if (!g.json) PrintLine(name + " " + DescribeOutcome(*job));
  if (job->status() == v1::CANCELLED) return kExitOk;
  // It ended on its own before the cancel took effect.
  if (!g.json) std::fprintf(stderr, "kiln: error: %s ended before it could be cancelled\n", name.c_str());
  return kExitRemote;
}

int RunList(Client& c, const Globals& g, const ListArgs& a) {
  v1::ListJobsRequest req;
  req.set_project(a.project);
  req.set_limit(a.limit);
  for (const auto& s : a.statuses) {
    auto st = ParseJobStatus(s);
    if (!st.ok()) return UsageError(st.status().message());
    req.add_status(*st);
  }
  auto resp = c.ListJobs(req);
  if (!resp.ok()) return ReportError(resp.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJsonArray(resp->jobs()));
    return kExitOk;
  }
  const int64_t now = NowUnixMs();
  Table t({"ID", "STATUS", "PROJECT", "ATTEMPT", "WORKER", "AGE", "COMMAND"});
  for (const auto& j : resp->jobs()) {
    int64_t since = j.submitted_at_ms() > 0 ? j.submitted_at_ms() : j.queued_at_ms();
    t.AddRow({std::to_string(j.id()), JobStatusName(j.status()), j.project(), Attempts(j),
              j.worker_id().empty() ? "-" : j.worker_id(), FormatAge(since, now),
              Truncate(CommandLine(j.spec()), 40)});
  }
  t.Print(stdout);
  return kExitOk;
}

}  // namespace kiln::cli
