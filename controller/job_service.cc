// JobService: the client-facing API of jobs. Handlers never throw;
// every failure is a grpc::Status with a message saying what to do.

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <set>

#include "controller/job_service.h"

#include "api/convert.h"
#include "auth/secrets.h"
#include "cache/action.h"
#include "cas/image_store.h"
#include "cas/store.h"
#include "cas/tree_store.h"
#include "common/text.h"
#include "controller/cas.h"
#include "controller/compile_service.h"
#include "controller/guard.h"
#include "controller/scopes.h"
#include "cas/scope_store.h"
#include "controller/project_cache.h"
#include "controller/signal.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "controller/submit_policy.h"
#include "controller/workspace_name.h"
#include "queue/job_store.h"

namespace kiln::controller {

namespace {

constexpr size_t kMaxArgs = 4096;
constexpr size_t kMaxSpecBytes = 1 << 20;
constexpr int64_t kMaxTimeoutS = 7 * 24 * 3600;
constexpr size_t kMaxRequestId = 200;
constexpr size_t kMaxLabelName = 128;    // requirements are matched against workers' labels
constexpr size_t kMaxLabelValue = 1024;
constexpr size_t kMaxCancelReason = 1000;
constexpr size_t kMaxSecrets = 100;
constexpr size_t kMinSecretBytes = 4;  // shorter values cannot be masked without masking common text
constexpr size_t kMaxSecretBytes = 64 << 10;

// An environment variable's name and value, named in messages as `kind`
// ("environment variable", "secret env variable") and `short_kind`; its
// value never appears in one.
Status CheckEnvVar(const std::string& k, const std::string& v, const std::string& kind,
                   const std::string& short_kind) {
  if (k.empty() || k.find('=') != std::string::npos || HasControl(k)) {
    return InvalidArgument("invalid " + kind + " name \"" + Printable(k, 80) +
                           "\": not empty, no '=', NUL or other control character");
  }
  if (v.find('\0') != std::string::npos) return InvalidArgument(short_kind + " " + k + " contains a NUL byte");
  return Status::Ok();
}

// The names and values of the secret env; nothing of a value is ever put
// in a message.
Status ValidateSecrets(const v1::SubmitRequest& r) {
  if (r.secret_env_size() > static_cast<int>(kMaxSecrets)) return InvalidArgument("too many secret env variables (at most 100)");
  for (const auto& [k, v] : r.secret_env()) {
    KILN_RETURN_IF_ERROR(CheckEnvVar(k, v, "secret env variable", "secret env"));
    if (r.spec().env().count(k)) {
      return InvalidArgument("environment variable " + k + " is given both as env and as secret env; give it once");
    }
    if (v.size() < kMinSecretBytes) {
      return InvalidArgument("secret env " + k + " is shorter than 4 bytes: so short a value cannot be masked in "
                             "the log without masking ordinary text");
    }
    if (v.size() > kMaxSecretBytes) return InvalidArgument("secret env " + k + " is larger than 64 KiB");
  }
  return Status::Ok();
}

Status ValidateSubmit(const v1::SubmitRequest& r) {
  const auto& s = r.spec();
  if (s.argv_size() == 0) return InvalidArgument("empty command: give the command to run after --");
  if (static_cast<size_t>(s.argv_size()) > kMaxArgs) return InvalidArgument("too many arguments (at most 4096)");
  if (s.ByteSizeLong() > kMaxSpecBytes) return InvalidArgument("job spec too large (at most 1 MiB of argv and env)");
  if (s.argv(0).empty()) return InvalidArgument("empty command name");
  for (const auto& a : s.argv()) {
    if (a.find('\0') != std::string::npos) return InvalidArgument("an argument contains a NUL byte");
  }
  for (const auto& [k, v] : s.env()) KILN_RETURN_IF_ERROR(CheckEnvVar(k, v, "environment variable", "environment variable"));
  for (const auto& [k, v] : s.requirements()) {
    if (k.empty()) return InvalidArgument("empty requirement name");
    KILN_RETURN_IF_ERROR(CheckText(k, "requirement name", kMaxLabelName));
    KILN_RETURN_IF_ERROR(CheckText(v, "requirement " + k, kMaxLabelValue));
  }
  if (s.timeout_s() < 0 || s.timeout_s() > kMaxTimeoutS) {
    return InvalidArgument("timeout_s must be between 0 (project default) and 604800 (7 days)");
  }
  const auto& res = s.resources();
  if (res.memory_bytes() < 0 || res.pids() < 0 || res.cpu_millis() < 0 || res.disk_bytes() < 0)
    return InvalidArgument("resources must not be negative (0: the worker's cap)");
  if (res.memory_bytes() > 0 && res.memory_bytes() < (4 << 20))
    return InvalidArgument("memory limit below 4 MiB: a build cannot start in that");
  if (res.disk_bytes() > 0 && res.disk_bytes() < (16 << 20))
    return InvalidArgument("disk limit below 16 MiB: the checkout's file system needs more (kiln submit --disk)");
  if (res.pids() > 0 && res.pids() < 8) return InvalidArgument("pids limit below 8: a build cannot run in that");
  const auto& wd = s.working_dir();
  if (wd.find('\0') != std::string::npos)
    return InvalidArgument("working_dir \"" + Printable(wd) + "\" contains a NUL byte");
  if (!wd.empty() && (wd[0] == '/' || wd == ".." || wd.rfind("../", 0) == 0 || wd.find("/../") != std::string::npos ||
                      (wd.size() >= 3 && wd.compare(wd.size() - 3, 3, "/..") == 0))) {
    return InvalidArgument("working_dir \"" + Printable(wd) + "\" must be a relative path inside the job directory");
  }
  if (r.has_priority() && (r.priority() < -1000 || r.priority() > 1000)) {
    return InvalidArgument("priority must be between -1000 and 1000");
  }
  if (r.max_attempts() < 0 || r.max_attempts() > 100) return InvalidArgument("max_attempts must be between 1 and 100");
  KILN_RETURN_IF_ERROR(CheckText(r.request_id(), "request_id", kMaxRequestId));
  if (!r.project().empty()) KILN_RETURN_IF_ERROR(CheckName("project", r.project()));
  if (!r.cluster().empty()) KILN_RETURN_IF_ERROR(CheckName("cluster", r.cluster()));
  if (!s.image().empty()) KILN_RETURN_IF_ERROR(cas::oci::ParseImageRef(s.image()).status());
  if (!s.workspace().empty() && s.workspace() != "fresh" && s.workspace() != "persistent")
    return InvalidArgument("workspace must be \"fresh\" or \"persistent\", not \"" + Printable(s.workspace(), 40) +
                           "\"");
  if (Status st = CheckWorkspaceName(s.workspace_name()); !st.ok()) return st;
  if (s.has_input_root()) {
    if (auto st = cas::CheckDigest(api::FromProto(s.input_root()), "input_root"); !st.ok()) return st;
  }
  if (s.outputs_size() > 1000) return InvalidArgument("too many declared outputs (at most 1000)");
  std::set<std::string> outs;
  for (const auto& o : s.outputs()) {
    if (auto st = cas::CheckRelativePath(o, "output"); !st.ok()) return st;
    if (!outs.insert(o).second) return InvalidArgument("output '" + o + "' is declared twice");
  }
  if (s.excluded_outputs_size() > 1000) return InvalidArgument("too many excluded outputs listed (at most 1000)");
  for (const auto& p : s.excluded_outputs()) {
    if (auto st = cas::CheckRelativePath(p, "excluded output"); !st.ok()) return st;
  }
  for (const auto& o : outs) {
    // "a" and "a/b" would capture the same files twice.
    auto next = outs.upper_bound(o);
    if (next != outs.end() && next->rfind(o + "/", 0) == 0)
      return InvalidArgument("output '" + *next + "' lies inside output '" + o + "'; declare only one of them");
  }
  return Status::Ok();
}

class JobServiceImpl final : public v1::JobService::Service {
 public:
  explicit JobServiceImpl(const JobServiceDeps& d) : d_(d) {}

  grpc::Status Submit(grpc::ServerContext* ctx, const v1::SubmitRequest* req, v1::SubmitResponse* resp) override {
    std::string project = req->project().empty() ? "default" : req->project();
    auto who = d_.guard.Require(ctx, auth::Role::kSubmit, project);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (Status s = ValidateSubmit(*req); !s.ok()) return api::ToGrpc(s);
    if (Status s = ValidateSecrets(*req); !s.ok()) return api::ToGrpc(s);
    if (req->secret_env_size() > 0 && d_.secrets == nullptr) {
      return api::ToGrpc(FailedPrecondition(
          "this controller has no secrets key, so it cannot keep secret env: an operator creates one with "
          "kiln-controller certs init (tls_dir/secrets.key, the same file on every controller)"));
    }
    auto pc = d_.projects.Get(project);
    if (!pc.ok()) return api::ToGrpc(pc.status());
    if (req->spec().has_input_root()) {
      // The tree's content must be the caller's (in one of its scopes):
      // naming another project's digests does not make them readable. What
      // is not yet in the project's scopes joins them; an admin may submit
      // anything the farm holds.
      auto target = d_.scopes.ProjectScopes(project);
      if (!target.ok()) return api::ToGrpc(target.status());
      // A tree found wholly in the project's scopes lately needs no second
      // look (its content never changes; removals are remembered).
      const cas::Digest root = api::FromProto(req->spec().input_root());
      const std::string root_key = root.Key();
      const bool known = d_.scopes.store().TreeKnown(*target, root_key);
      std::vector<std::string> joining;  // in the caller's scopes, not yet in the project's
      SeenFn seen = known ? SeenFn() : [&](const std::vector<std::string>& h) -> Result<std::unordered_set<std::string>> {
        auto in_target = d_.scopes.store().Members(*target, h);
        if (!in_target.ok()) return in_target;
        std::vector<std::string> rest;
        for (const auto& x : h)
          if (!in_target->count(x)) rest.push_back(x);
        if (rest.empty()) return in_target;
        auto elsewhere = d_.scopes.Seen(*who, rest);  // an admin sees everything
        if (!elsewhere.ok()) return elsewhere;
        for (const auto& x : *elsewhere) {
          in_target->insert(x);
          joining.push_back(x);
        }
        return in_target;
      };
      Status s = CheckTree(d_.trees, d_.blobs, root, d_.max_tree_files,
                           "input tree", nullptr, seen);
      if (!s.ok()) return api::ToGrpc(s);
      if (!known) {
        if (Status st = d_.scopes.store().Add(*target, joining); !st.ok()) return api::ToGrpc(st);
        d_.scopes.store().RememberTree(*target, root_key);
      }
    }
    SubmitAsk ask;
    ask.project = project;
    ask.cluster = req->cluster();
    if (req->has_priority()) ask.priority = req->priority();
    ask.max_attempts = req->max_attempts();
    ask.request_id = req->request_id();
    ask.spec = api::FromProto(req->spec());
    ask.spec.secret_names.clear();  // the names are the secret env's, whatever a client put here
    for (const auto& [k, v] : req->secret_env()) ask.spec.secret_names.push_back(k);
    std::sort(ask.spec.secret_names.begin(), ask.spec.secret_names.end());
    ask.no_cache = req->no_cache();
    // The image: an unknown one fails here, never on a worker.
    std::string image = ImageAsked(ask, *pc);
    if (!image.empty()) {
      auto h = cas::oci::ParseImageRef(image);
      if (!h.ok()) return api::ToGrpc(h.status());
      auto row = d_.images.Get(*h);
      if (!row.ok()) return api::ToGrpc(row.status());
      image = "sha256:" + *h;
    }
    queue::NewJob job = PlanSubmit(ask, *pc, image);
    if (req->secret_env_size() > 0) {
      auto sealed = d_.secrets->Seal({req->secret_env().begin(), req->secret_env().end()});
      if (!sealed.ok()) return api::ToGrpc(sealed.status());
      job.sealed_secrets = std::move(*sealed);
    }
    auto out = d_.jobs.Submit(job, who->Audit(*ctx));
    if (!out.ok()) return api::ToGrpc(out.status());
    api::ToProto(out->job, resp->mutable_job());
    resp->set_existing(out->existing);
    if (!out->existing) {
      spdlog::debug("submitted job_id={} project={} priority={}", out->job.id, project, job.priority);
      CountSubmit(job, out->job);
      d_.dispatch_wake.Notify();
      d_.remote_wake.Notify();
    }
    return grpc::Status::OK;
  }

  // A submit, and its action cache lookup (a cacheable job asked without
  // --no-cache): a hit has ended already.
  void CountSubmit(const queue::NewJob& asked, const queue::Job& job) {
    d_.metrics.submitted.With({{"project", job.project}}).Inc();
    if (asked.action_digest.empty() || asked.no_cache) return;
    if (job.result && job.result->cached_from != 0) {
      d_.metrics.action_cache_hits.Inc();
      d_.metrics.finished.With({{"project", job.project}, {"outcome", "cached"}}).Inc();
    } else {
      d_.metrics.action_cache_misses.Inc();
    }
  }

  grpc::Status GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req, v1::Job* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kRead);
    if (!who.ok()) return api::ToGrpc(who.status());
    return api::ToGrpc(Fill(*who, req->job_id(), resp));
  }

  grpc::Status CancelJob(grpc::ServerContext* ctx, const v1::CancelJobRequest* req, v1::Job* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kSubmit);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (Status s = CheckText(req->reason(), "reason", kMaxCancelReason); !s.ok()) return api::ToGrpc(s);
    if (Status s = JobAllowed(*who, auth::Role::kSubmit, req->job_id()); !s.ok()) return api::ToGrpc(s);
    bool ended = false;
    auto j = d_.jobs.Cancel(req->job_id(), req->reason(), who->Audit(*ctx), &ended);
    if (!j.ok()) return api::ToGrpc(j.status());
    if (ended) CountEnded(d_.metrics, {{j->id, j->project, queue::JobStatus::kCancelled}});
    spdlog::info("cancel requested job_id={} status={} by={}", j->id, queue::ToString(j->status), who->Name());
    d_.job_events.Notify();
    api::ToProto(*j, resp);
    return grpc::Status::OK;
  }

  grpc::Status ListJobs(grpc::ServerContext* ctx, const v1::ListJobsRequest* req, v1::ListJobsResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kRead, req->project());
    if (!who.ok()) return api::ToGrpc(who.status());
    if (!req->project().empty()) {
      if (Status s = CheckName("project", req->project()); !s.ok()) return api::ToGrpc(s);
    }
    queue::ListFilter f;
    f.project = req->project();
    f.limit = req->limit();
    f.before_id = req->before_id();
    if (f.limit < 0) return grpc::Status(grpc::INVALID_ARGUMENT, "limit must not be negative");
    for (int st : req->status()) {
      auto q = api::FromProto(static_cast<v1::JobStatus>(st));
      if (!q) return grpc::Status(grpc::INVALID_ARGUMENT, "unknown job status " + std::to_string(st));
      f.statuses.push_back(*q);
    }
    // Without a project: every project the token covers, newest first.
    std::vector<std::string> projects{f.project};
    if (f.project.empty() && !who->IsAdmin()) projects = who->projects;
    std::vector<queue::Job> all;
    for (const auto& p : projects) {
      f.project = p;
      auto jobs = d_.jobs.List(f);
      if (!jobs.ok()) return api::ToGrpc(jobs.status());
      all.insert(all.end(), jobs->begin(), jobs->end());
    }
    if (projects.size() > 1) {
      std::sort(all.begin(), all.end(), [](const queue::Job& a, const queue::Job& b) { return a.id > b.id; });
      if (f.limit > 0 && all.size() > static_cast<size_t>(f.limit)) all.resize(static_cast<size_t>(f.limit));
    }
    for (const auto& j : all) api::ToProto(j, resp->add_jobs());
    return grpc::Status::OK;
  }

  grpc::Status ExplainJob(grpc::ServerContext* ctx, const v1::ExplainJobRequest* req, v1::Explanation* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kRead);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (req->max_paths() < 0 || req->max_paths() > 10000)
      return grpc::Status(grpc::INVALID_ARGUMENT, "max_paths must be 0..10000");
    size_t max_paths = req->max_paths() > 0 ? static_cast<size_t>(req->max_paths()) : 200;
    auto job = d_.jobs.Get(req->job_id());
    if (!job.ok()) return api::ToGrpc(job.status());
    if (Status s = who->May(auth::Role::kRead, job->project); !s.ok()) return api::ToGrpc(Denied(s, job->id));
    api::ToProto(*job, resp->mutable_job());
    auto prev = d_.jobs.PreviousWithCommand(job->id);
    if (!prev.ok()) return api::ToGrpc(prev.status());
    const bool cacheable = cache::Cacheable(job->spec);
    const bool cached = job->result && job->result->cached_from != 0;
    resp->set_cacheable(cacheable);
    resp->set_cached(cached);
    bool same = false;
    if (*prev) {
      api::ToProto(**prev, resp->mutable_compared());
      same = cache::Cacheable((*prev)->spec) && cacheable &&
             cache::ActionDigest((*prev)->spec) == cache::ActionDigest(job->spec);
      resp->set_same_action(same);
      DiffSpecs((*prev)->spec, job->spec, resp);
      const std::string& a = (*prev)->spec.input_root;
      const std::string& b = job->spec.input_root;
      if (a != b) {
        // No input tree: an empty directory.
        const std::string empty = cas::DigestOf(cas::Directory{}).Key();
        auto da = cas::ParseDigest(a.empty() ? empty : a);
        auto db = cas::ParseDigest(b.empty() ? empty : b);
        if (da.ok() && db.ok()) {
          auto d = d_.trees.Diff(*da, *db, max_paths);
          if (!d.ok()) {
            resp->set_paths_unavailable(d.status().message());
            d = cas::TreeStore::TreeDiff{};
          }
          for (const auto& ch : d->changes) {
            auto* pc = resp->add_path_changes();
            pc->set_kind(ch.kind == cas::Change::kAdded     ? v1::PathChange::ADDED
                         : ch.kind == cas::Change::kRemoved ? v1::PathChange::REMOVED
                                                            : v1::PathChange::MODIFIED);
            pc->set_path(ch.path);
            if (ch.before) pc->set_before(DescribeEntry(*ch.before));
            if (ch.after) pc->set_after(DescribeEntry(*ch.after));
          }
          resp->set_paths_truncated(d->truncated);
        }
      }
    }
    resp->set_verdict(Verdict(*job, prev->has_value() ? &**prev : nullptr, cacheable, cached, same));
    // A job served from the action cache compiled nothing itself: its
    // producer's record is the one that tells.
    int64_t ran = cached ? job->result->cached_from : job->id;
    if (Status s = ExplainCompiles(d_.compiles, ran, max_paths, resp); !s.ok()) return api::ToGrpc(s);
    return grpc::Status::OK;
  }

  // State first, then log data from the offset; with follow, more of both
  // until the job ended and its log was sent.
  grpc::Status WatchJob(grpc::ServerContext* ctx, const v1::WatchJobRequest* req,
                        grpc::ServerWriter<v1::JobEvent>* w) override {
    constexpr int64_t kChunk = 64 << 10;
    auto who = d_.guard.Require(ctx, auth::Role::kRead);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (req->offset() < 0) return grpc::Status(grpc::INVALID_ARGUMENT, "offset must not be negative");
    int attempt = req->attempt();
    int64_t offset = req->offset();
    std::string last_state;
    while (true) {
      uint64_t gen = d_.job_events.generation();
      v1::JobEvent ev;
      Status s = Fill(*who, req->job_id(), ev.mutable_state());
      if (!s.ok()) return api::ToGrpc(s);
      const v1::Job& job = ev.state();
      if (req->attempt() == 0 && attempt != 0 && job.attempt() != attempt) {
        offset = 0;  // a new attempt: its log starts afresh
      }
      if (req->attempt() == 0 && job.attempt() > 0) attempt = job.attempt();
      v1::Job keyed = job;
      keyed.set_log_size(0);  // log growth is sent as log data, not as a state change
      std::string key = keyed.SerializeAsString();
      if (key != last_state) {
        if (!w->Write(ev)) return grpc::Status(grpc::CANCELLED, "client went away");
        last_state = key;
      }
      bool ended = job.status() >= v1::SUCCEEDED;
      bool current = attempt == job.attempt();
      // Read until caught up with what is stored. A job served from the
      // action cache never ran (attempt 0): its log is the copy stored at 0.
      while (attempt > 0 || (ended && job.attempt() == 0)) {
        // A job that ended will not fill a gap left by a lost chunk: skip it.
        bool final_log = ended || !current;
        auto slice = d_.jobs.ReadLog(req->job_id(), attempt, offset, kChunk, final_log);
        if (!slice.ok()) return api::ToGrpc(slice.status());
        if (slice->data.empty()) break;
        v1::JobEvent le;
        auto* l = le.mutable_log();
        l->set_attempt(attempt);
        l->set_offset(slice->offset);
        offset = slice->offset + static_cast<int64_t>(slice->data.size());
        l->set_data(std::move(slice->data));
        if (!w->Write(le)) return grpc::Status(grpc::CANCELLED, "client went away");
      }
      // A removed log (log quotas: ended jobs only) will not come back.
      if (!req->follow() || (ended && (!current || offset >= job.log_size() || job.has_log_removed())))
        return grpc::Status::OK;
      if (!current) return grpc::Status::OK;  // an old attempt is complete
      if (d_.stopping) return grpc::Status(grpc::UNAVAILABLE, "controller is shutting down; reconnect to resume");
      if (ctx->IsCancelled()) return grpc::Status(grpc::CANCELLED, "client went away");
      // Local changes wake us at once; changes made through other
      // controllers are seen by this poll.
      d_.job_events.Wait(gen, std::chrono::milliseconds(250));
    }
  }

 private:
  static std::string DescribeEntry(const cas::Entry& e) {
    switch (e.kind) {
      case cas::Kind::kDir: return "directory " + e.digest.ToString();
      case cas::Kind::kSymlink: return "symlink -> " + e.target;
      case cas::Kind::kFile: break;
    }
    return (e.executable ? "executable file " : "file ") + e.digest.ToString();
  }

  // The action fields (other than argv, equal by choice of the compared job
  // and the input tree, diffed by path) that differ.
  static void DiffSpecs(const queue::JobSpec& a, const queue::JobSpec& b, v1::Explanation* resp) {
    auto change = [&](const std::string& field, const std::string* before, const std::string* after) {
      auto* c = resp->add_spec_changes();
      c->set_field(field);
      if (before) c->set_before(*before);
      if (after) c->set_after(*after);
      c->set_added(before == nullptr);
      c->set_removed(after == nullptr);
    };
    auto maps = [&](const std::string& what, const std::map<std::string, std::string>& x,
                    const std::map<std::string, std::string>& y) {
      for (const auto& [k, v] : x) {
        auto it = y.find(k);
        if (it == y.end()) change(what + " " + k, &v, nullptr);
        else if (it->second != v) change(what + " " + k, &v, &it->second);
      }
      for (const auto& [k, v] : y)
        if (!x.count(k)) change(what + " " + k, nullptr, &v);
    };
    auto none = [](const std::string& s) { return s.empty() ? std::string("(none)") : s; };
    if (a.image != b.image) {
      std::string x = none(a.image), y = none(b.image);
      change("image", &x, &y);
    }
    maps("env", a.env, b.env);
    // Secret env: names only (the values are never kept past the job).
    std::map<std::string, std::string> sa, sb;
    for (const auto& n : a.secret_names) sa[n] = "(secret)";
    for (const auto& n : b.secret_names) sb[n] = "(secret)";
    maps("secret env", sa, sb);
    if (a.working_dir != b.working_dir) {
      std::string x = "/src/" + a.working_dir, y = "/src/" + b.working_dir;
      change("working_dir", &x, &y);
    }
    std::set<std::string> oa(a.outputs.begin(), a.outputs.end()), ob(b.outputs.begin(), b.outputs.end());
    if (oa != ob) {
      auto join = [](const std::set<std::string>& s) {
        std::string out;
        for (const auto& o : s) out += (out.empty() ? "" : " ") + o;
        return out.empty() ? std::string("(none)") : out;
      };
      std::string x = join(oa), y = join(ob);
      change("outputs", &x, &y);
    }
    maps("requirement", a.requirements, b.requirements);
  }

  static std::string Verdict(const queue::Job& j, const queue::Job* prev, bool cacheable, bool cached, bool same) {
    std::string id = "job " + std::to_string(j.id);
    if (cached) {
      return id + " was served from the action cache: it is identical to job " +
             std::to_string(j.result->cached_from) + ", whose result it took without running";
    }
    if (!cacheable && !j.spec.secret_names.empty()) {
      std::string names;
      for (const auto& n : j.spec.secret_names) names += (names.empty() ? "" : ", ") + n;
      return id + " is not cacheable: it has secret env (" + names +
             "), and a result that may depend on a secret is never shared";
    }
    if (!cacheable && j.spec.workspace == "persistent") {
      return id + " is not cacheable: it ran in warm workspace " + j.spec.workspace_name +
             ", so its result depends on what earlier builds left there (kiln submit --workspace fresh is cacheable)";
    }
    if (!cacheable) {
      return id + " is not cacheable: it names no image, so its result depends on the worker's host "
                  "(run it in an image: kiln submit --image, or the project's image setting)";
    }
    if (j.status == queue::JobStatus::kQueued && j.waits_for != 0) {
      return id + " waits for job " + std::to_string(j.waits_for) +
             ", identical and in flight; it will take its result";
    }
    if (!queue::IsTerminal(j.status)) return id + " has not finished; no cached result matched its action";
    if (prev == nullptr) {
      return id + " ran: no earlier job of project " + j.project + " had the same command, so nothing to reuse";
    }
    std::string other = "job " + std::to_string(prev->id);
    if (!same) return id + " ran: its action differs from " + other + "'s (the nearest earlier job with this command) as listed";
    if (prev->status != queue::JobStatus::kSucceeded) {
      return id + " ran: " + other + " is identical but ended " + queue::ToString(prev->status) +
             " (only successes are cached)";
    }
    if (prev->finished_ms > j.submitted_ms) {
      return id + " ran: " + other + " is identical but was still in flight when it was submitted; it was "
                  "submitted with --no-cache, in the same instant, or with a higher priority or another cluster";
    }
    return id + " ran although " + other + " is identical and had succeeded: it was submitted with --no-cache, "
                "or that result was not recorded or was dropped (unused for action_cache_max_age, or deleted), "
                "or the project's cache scope changed (kiln cache scopes list)";
  }

  // "job 7 belongs to project B; ..." rather than the bare scope message.
  static Status Denied(const Status& s, int64_t id) {
    return PermissionDenied("job " + std::to_string(id) + " is not in this token's projects: " + s.message());
  }

  Status JobAllowed(const Caller& who, auth::Role role, int64_t id) {
    auto j = d_.jobs.Get(id);
    if (!j.ok()) return j.status();
    if (Status s = who.May(role, j->project); !s.ok()) return Denied(s, id);
    return Status::Ok();
  }

  Status Fill(const Caller& who, int64_t id, v1::Job* out) {
    auto j = d_.jobs.Get(id);
    if (!j.ok()) return j.status();
    if (Status s = who.May(auth::Role::kRead, j->project); !s.ok()) return Denied(s, id);
    api::ToProto(*j, out);
    if (j->status == queue::JobStatus::kQueued) {
      auto why = d_.jobs.Unsatisfiable(id);
      if (why.ok()) out->set_unsatisfiable(*why);
    }
    return Status::Ok();
  }

  JobServiceDeps d_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeJobService(const JobServiceDeps& deps) {
  return std::make_unique<JobServiceImpl>(deps);
}

}  // namespace kiln::controller
