#include "worker/job_run.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>

#include "api/compile_convert.h"
#include "cas/client.h"
#include "cas/walk.h"
#include "common/mask.h"
#include "common/util.h"
#include "worker/cc_wrapper.h"
#include "worker/checkout.h"
#include "worker/compile_cache.h"
#include "worker/images.h"
#include "worker/local_cas.h"
#include "worker/sandbox.h"
#include "worker/workspaces.h"

namespace kiln::worker {

namespace fs = std::filesystem;

namespace {

using LogFn = std::function<void(const std::string&)>;

int64_t MsSince(std::chrono::steady_clock::time_point began) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count();
}

// Observes the time since `began` as one of a job's phases.
void ObservePhase(const JobEnv& env, const char* phase, std::chrono::steady_clock::time_point began) {
  env.metrics.phase.With({{"phase", phase}})
      .Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
}

// Makes the job's own checkout at `base` (worker/checkout.h), its disk
// capped at `disk_cap`: the input tree in base/lower, while its disk is
// made and mounted beside it, then the overlay. Returns the directory the
// build runs in, and adds the bytes fetched from CAS to *fetched.
// Unavailable: CAS could not be reached (the job goes back in line);
// anything else fails the job.
Result<std::string> PrepareCheckout(const JobEnv& env, const Assignment& a, const std::string& base,
                                    int64_t disk_cap, int64_t* fetched) {
  const auto place = env.checkouts->overlay().ok() ? LocalCas::Place::kLink : LocalCas::Place::kCopy;
  return env.checkouts->Make(base, disk_cap, [&](const std::string& tree) -> Status {
    if (!a.input_root) return Status::Ok();
    const cas::Digest root = *a.input_root;
    if (Status s = cas::CheckDigest(root, "input_root"); !s.ok()) return s;
    auto began = std::chrono::steady_clock::now();
    auto rep = env.local_cas->Materialize(*env.cas, root, tree, place);
    if (!rep.ok()) return rep.status();
    *fetched += rep->fetched_bytes;
    ObservePhase(env, "fetch_inputs", began);
    env.metrics.cas_hits.Inc(static_cast<double>(rep->files - rep->fetched_files));
    env.metrics.cas_misses.Inc(static_cast<double>(rep->fetched_files));
    spdlog::info("job_id={} attempt={}: input tree {} ready: {} files ({} bytes), fetched {} ({} bytes) in {} ms",
                 a.job_id, a.attempt, root.ToString(), rep->files, rep->bytes, rep->fetched_files,
                 rep->fetched_bytes, MsSince(began));
    return Status::Ok();
  });
}

// Brings the job's warm workspace to its input tree (or an empty one), its
// disk capped at `disk_cap`.
Status SyncWorkspace(const JobEnv& env, const Assignment& a, int64_t disk_cap, const LogFn& log) {
  const cas::Digest root = a.input_root ? *a.input_root : cas::DigestOf(cas::Directory{});
  if (Status s = cas::CheckDigest(root, "input_root"); !s.ok()) return s;
  auto began = std::chrono::steady_clock::now();
  auto rep = env.workspaces->Sync(a.project, a.spec.workspace_name, *env.cas, *env.local_cas, root, disk_cap);
  if (!rep.ok()) return rep.status();
  ObservePhase(env, "workspace_sync", began);
  auto ms = MsSince(began);
  std::string what = rep->fresh ? "new: the tree was written in full"
                                : std::to_string(rep->changed) + " changed, " + std::to_string(rep->added) +
                                      " added, " + std::to_string(rep->removed) + " removed, " +
                                      std::to_string(rep->unchanged) + " untouched";
  log("kiln: warm workspace " + a.spec.workspace_name + " on worker " + env.worker_id + " (" + what + ", in " +
      std::to_string(ms) + " ms)\n");
  return Status::Ok();
}

// Runs the job: in a container when it names an image (never bare), else
// as a plain process where this worker allows that. Notes when its image was
// ready in `timings`.
RunOutcome RunIn(const JobEnv& env, const Assignment& a, const RunRequest& req,
                 const std::function<void(int64_t)>& started, const LogFn& log, const std::shared_ptr<JobState>& js,
                 v1::JobTimings* timings) {
  const config::WorkerConfig& cfg = *env.cfg;
  auto refuse = [&](queue::JobStatus st, const std::string& why) {
    RunOutcome out;
    out.status = st;
    out.result.error = why;
    out.started_ms = out.finished_ms = NowUnixMs();
    log("kiln: " + why + "\n");
    return out;
  };
  const std::string& image = a.spec.image;
  if (image.empty()) {
    if (!cfg.allow_plain_jobs)
      return refuse(queue::JobStatus::kFailed, "worker " + env.worker_id + " runs only jobs with an image "
                                               "(kiln submit --image, or the project's image); "
                                               "allow_plain_jobs is off");
    auto began = std::chrono::steady_clock::now();
    RunOutcome out = RunJob(req, started, log, js->cancel, js->hand_back, &js->pgid);
    ObservePhase(env, "run", began);
    return out;
  }
  if (!env.sandbox)
    return refuse(queue::JobStatus::kFailed, "worker " + env.worker_id + " cannot run containers (" +
                                                 env.no_sandbox_why + "); the job needs image " + image);
  auto unpack_began = std::chrono::steady_clock::now();
  auto rootfs = env.images->Acquire(*env.cas, *env.image_stub, image);
  if (rootfs.ok()) ObservePhase(env, "image_unpack", unpack_began);
  if (!rootfs.ok()) {
    bool transient = rootfs.status().code() == Code::kUnavailable;
    bool infra = InfrastructureError(rootfs.status());
    RunOutcome out = refuse(transient ? queue::JobStatus::kQueued : queue::JobStatus::kFailed,
                            std::string(infra ? "infrastructure: " : "") + "cannot prepare image " + image +
                                " on worker " + env.worker_id + ": " + rootfs.status().message());
    out.result.infrastructure = infra;
    return out;
  }
  timings->set_image_ms(NowUnixMs());
  RunRequest run = req;
  std::unique_ptr<CompileCacheServer> cc;
  if (env.cc != nullptr && !a.spec.no_compile_cache) {
    auto wrapper = env.cc->WrapperDir(image, *rootfs);
    CompileCacheJob j;
    j.job_id = a.job_id;
    j.attempt = a.attempt;
    j.project = a.project;
    j.image = image;
    j.dir = cfg.work_dir + "/cc/" + std::to_string(a.job_id) + "-" + std::to_string(a.attempt);
    j.max_object_bytes = cfg.compile_cache_max_object_bytes;
    j.max_job_bytes = cfg.max_output_bytes;
    j.secrets = a.secret_env;
    if (!cfg.remote_compiles) j.why_not_remote = "remote_compiles = false in worker " + env.worker_id + "'s configuration";
    else if (!a.secret_env.empty()) j.why_not_remote = "the job has secret env, which stays on its own worker";
    // With no other worker's slots, remote compiles would only add a
    // preprocessor pass: a farm of one builds as before.
    else if (a.parallelism - 1 - std::max(0, cfg.action_slots) <= 0)
      j.why_not_remote = "no other worker of the job's cluster runs remote actions";
    j.remote = j.why_not_remote.empty();
    j.note = log;
    j.farm_slots = std::max(0, a.parallelism - 1 - std::max(0, cfg.action_slots));
    auto srv = wrapper.ok() ? CompileCacheServer::Start(
                                  j, {env.stub, env.cas, env.local_cas, env.cc->memory(), env.cc->identities()})
                            : Result<std::unique_ptr<CompileCacheServer>>(wrapper.status());
    if (srv.ok()) {
      cc = std::move(*srv);
      run.cc_wrapper_dir = *wrapper;
      run.cc_socket_dir = j.dir;
    } else {
      spdlog::warn("job_id={} attempt={}: runs without the compile cache: {}", a.job_id, a.attempt,
                   srv.status().message());
    }
  }
  auto run_began = std::chrono::steady_clock::now();
  bool container_started = false;
  auto note_started = [&](int64_t started_ms) {
    container_started = true;
    started(started_ms);
  };
  env.metrics.sandbox_starts.Inc();
  RunOutcome out = env.sandbox->Run(run, *rootfs, note_started, log, js->cancel, js->hand_back);
  ObservePhase(env, "run", run_began);
  if (!container_started || out.start_error == StartError::kRuntime || out.start_error == StartError::kSetup)
    env.metrics.sandbox_failures.Inc();
  if (out.start_error == StartError::kRuntime && env.runc_check) {
    // Whose failure: this worker's containers start, or they do not.
    Status works = env.runc_check();
    if (works.ok()) {
      out.result.infrastructure = false;
      out.result.error += " (this worker's own containers start: the cause is the job's image or settings)";
    } else if (works.code() != Code::kUnavailable) {
      out.result.error += " (and this worker's own container check fails too: " + works.message() + ")";
    }
  }
  if (out.result.infrastructure) {
    // The worker's failure, not the build's: retried elsewhere (kiln status
    // says so) and counted against this worker's health.
    out.result.error = "infrastructure: " + out.result.error + " (worker " + env.worker_id + ")";
    spdlog::warn("job_id={} attempt={}: {}", a.job_id, a.attempt, out.result.error);
  }
  if (cc) {
    cc->Stop();
    auto record = cc->Record();
    for (const auto& [outcome, count] : api::UnitsByOutcome(record.stats()))
      if (count > 0) env.metrics.compile_units.With({{"outcome", outcome}}).Inc(static_cast<double>(count));
    RecordCompiles(*env.stub, record);
  }
  env.images->Release(image);
  return out;
}

}  // namespace

bool InfrastructureError(const Status& setup) {
  switch (setup.code()) {
    case Code::kOk:
    case Code::kUnavailable:
    case Code::kInvalidArgument:    // the job's: a bad digest, a path
    case Code::kResourceExhausted:  // the job's: inputs past its own disk cap
    case Code::kCancelled:
    // A blob missing from or corrupt in the farm's CAS fails every worker
    // alike: charging each one would take a whole cluster out of service.
    case Code::kNotFound:
    case Code::kDataLoss:
      return false;
    default:
      return true;
  }
}

bool KeepWorkspace(const Status& setup, const RunOutcome& out) {
  return setup.ok() && (out.status == queue::JobStatus::kSucceeded ||
                        (out.status == queue::JobStatus::kFailed && out.result.exit_code >= 0 &&
                         out.result.term_signal == 0 && !out.result.timed_out && out.result.limit.empty()));
}

Result<std::string> CaptureOutputs(cas::CasClient& cas, const Assignment& a, const std::string& job_dir,
                                   int64_t max_bytes, int64_t* uploaded) {
  cas::WalkOptions o;
  o.paths = a.spec.outputs;
  for (const auto& p : o.paths) {
    struct stat st {};
    if (::lstat((job_dir + "/" + p).c_str(), &st) != 0)
      return NotFound("declared output '" + p + "' was not produced by the build");
  }
  auto t = cas::BuildTree(job_dir, o);
  if (!t.ok()) return Status(t.status().code(), "cannot capture outputs: " + t.status().message());
  if (t->file_bytes > max_bytes)
    return ResourceExhausted("the declared outputs hold " + std::to_string(t->file_bytes) +
                             " bytes, over this worker's limit of " + std::to_string(max_bytes) +
                             " (max_output_bytes)");
  Status last;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
    auto up = cas.UploadTree(*t);
    if (up.ok()) {
      spdlog::debug("job_id={} outputs {}: uploaded {} blobs ({} bytes), {} nodes", a.job_id, t->root.ToString(),
                    up->blobs, up->blob_bytes, up->nodes);
      if (uploaded != nullptr) *uploaded += up->blob_bytes;
      return t->root.Key();
    }
    last = up.status();
    if (last.code() != Code::kUnavailable && last.code() != Code::kDeadlineExceeded) break;
  }
  return Status(last.code(), "cannot upload outputs: " + last.message());
}

void RunAssignment(const JobEnv& env, const Assignment& a, const std::shared_ptr<JobState>& js) {
  const config::WorkerConfig& cfg = *env.cfg;
  v1::JobTimings timings;  // sent with the final report (the farm's history)
  timings.set_received_ms(NowUnixMs());
  RunRequest req;
  req.job_id = a.job_id;
  req.attempt = a.attempt;
  req.spec = a.spec;
  // Secret env is the build's like any other; it is masked on the way out.
  for (const auto& [k, v] : a.secret_env) req.spec.env[k] = v;
  // How many compiles to run at once (make -j$KILN_JOBS): the fleet's, unless the job says.
  if (a.parallelism > 0) req.spec.env.emplace("KILN_JOBS", std::to_string(a.parallelism));
  SecretMask mask(a.secret_env);
  // The checkout's base: the job's own, or its warm workspace's.
  std::string base = cfg.work_dir + "/jobs/" + std::to_string(a.job_id) + "-" + std::to_string(a.attempt);
  const int64_t disk_cap = CappedLimit(a.spec.disk_bytes, cfg.disk_max);
  std::error_code ec;
  // A warm workspace when the job asks for one and no other job uses it.
  const std::string& ws_name = a.spec.workspace_name;
  std::optional<std::string> ws;
  if (a.spec.workspace == "persistent" && !ws_name.empty()) ws = env.workspaces->Acquire(a.project, ws_name);
  if (ws) {
    req.job_dir = *ws;
    base = env.workspaces->BaseOf(a.project, ws_name);
  } else {
    env.checkouts->Unmount(base);
    fs::remove_all(base, ec);
  }
  spdlog::debug("running job_id={} attempt={}", a.job_id, a.attempt);
  int64_t offset = 0;
  bool saw_enospc = false;  // strerror(ENOSPC) in the build's output
  auto send_log = [&](const std::string& chunk) {
    if (offset + static_cast<int64_t>(chunk.size()) > cfg.max_log_bytes) {
      js->log_overflow = true;
      return;
    }
    v1::WorkerMessage m;
    auto* l = m.mutable_log();
    l->set_job_id(a.job_id);
    l->set_attempt(a.attempt);
    l->set_offset(offset);
    l->set_data(chunk);
    offset += static_cast<int64_t>(chunk.size());
    env.send(m);
  };
  // The build's output, and lines of kiln's own from other threads (the
  // compile cache's "remote compiles started").
  std::mutex log_mu;
  auto log = [&](const std::string& chunk) {
    std::lock_guard g(log_mu);
    if (chunk.find("No space left on device") != std::string::npos) saw_enospc = true;
    if (mask.empty()) return send_log(chunk);
    std::string masked = mask.Feed(chunk);
    if (!masked.empty()) send_log(masked);
  };
  RunOutcome out;
  Status setup;
  if (a.spec.workspace == "persistent" && !ws) {
    log("kiln: workspace " + ws_name + " is in use by another job on worker " + env.worker_id +
        ": this job runs in a fresh directory\n");
  }
  if (ws) {
    setup = SyncWorkspace(env, a, disk_cap, log);
  } else {
    int64_t fetched = 0;
    auto dir = PrepareCheckout(env, a, base, disk_cap, &fetched);
    setup = dir.status();
    if (dir.ok()) req.job_dir = *dir;
    timings.set_input_bytes(fetched);
  }
  if (setup.ok()) timings.set_inputs_ms(NowUnixMs());
  if (!setup.ok()) {
    spdlog::warn("job_id={} attempt={}: cannot prepare the input tree: {}", a.job_id, a.attempt, setup.message());
    out.status = setup.code() == Code::kUnavailable ? queue::JobStatus::kQueued : queue::JobStatus::kFailed;
    out.result.infrastructure = InfrastructureError(setup);
    out.result.error = std::string(out.result.infrastructure ? "infrastructure: " : "") +
                       "cannot prepare the input tree on worker " + env.worker_id + ": " + setup.message();
    out.started_ms = out.finished_ms = NowUnixMs();
  } else {
    auto started = [&](int64_t started_ms) {
      v1::WorkerMessage m;
      *m.mutable_update() = RunningUpdate(a, started_ms);
      env.send(m);
    };
    req.abort = &js->log_overflow;
    req.abort_limit = "log";
    req.abort_reason = "killed: its log exceeded the limit of " + FormatLimitBytes(cfg.max_log_bytes);
    out = RunIn(env, a, req, started, log, js, &timings);
    timings.set_ended_ms(out.finished_ms);
    if (out.status == queue::JobStatus::kFailed && out.result.limit.empty() && !out.result.infrastructure &&
        env.checkouts->overlay().ok() && Checkouts::DiskFull(base, saw_enospc)) {
      out.result.limit = "disk";
      out.result.error = "its checkout's disk is full: it reached the limit of " +
                         FormatLimitBytes(disk_cap) + " (kiln submit --disk; the worker's disk_max)";
      log("kiln: " + out.result.error + "\n");
    }
    if (out.status == queue::JobStatus::kSucceeded && !a.spec.outputs.empty()) {
      int64_t uploaded = 0;
      auto upload_began = std::chrono::steady_clock::now();
      auto root = CaptureOutputs(*env.cas, a, req.job_dir, cfg.max_output_bytes, &uploaded);
      ObservePhase(env, "upload_outputs", upload_began);
      timings.set_output_bytes(uploaded);
      if (root.ok()) {
        out.result.output_root = *root;
      } else {
        out.status = queue::JobStatus::kFailed;
        out.result.error = root.status().message();
        log("kiln: " + root.status().message() + "\n");
      }
      out.finished_ms = NowUnixMs();
    }
  }
  bool keep = false;
  if (ws) {
    keep = KeepWorkspace(setup, out);
    if (!keep) log("kiln: workspace " + ws_name + " discarded: the next build starts clean\n");
    // Released after the report (its size and record are not the
    // build's time); the workspace's next job waits for that.
    env.workspaces->Releasing(a.project, ws_name);
  }
  if (std::string rest = mask.Flush(); !rest.empty()) send_log(rest);
  spdlog::debug("job finished job_id={} attempt={} status={}", a.job_id, a.attempt, queue::ToString(out.status));
  env.metrics.jobs.With({{"outcome", queue::ToString(out.status)}}).Inc();
  v1::JobUpdate final_update = FinalUpdate(a, out, offset);
  if (out.status != queue::JobStatus::kQueued) *final_update.mutable_timings() = timings;  // not a hand-back
  env.finish(final_update);
  // What the job leaves goes after the report: removing a large build's
  // directory took a few hundred milliseconds, and they are not the
  // build's time. A worker that stops first removes leftovers at start.
  if (ws) {
    for (const auto& r : env.workspaces->Release(a.project, ws_name, keep)) {
      v1::WorkerMessage m;
      *m.mutable_workspace() = r;
      env.send(m);
    }
  } else {
    env.checkouts->Unmount(base);
    fs::remove_all(base, ec);
  }
}

}  // namespace kiln::worker
