#include "worker/worker.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <climits>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "api/convert.h"
#include "common/util.h"
#include "common/version.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "cas/client.h"
#include "cas/walk.h"
#include "worker/compile_cache.h"
#include "worker/images.h"
#include "worker/local_cas.h"
#include "worker/runner.h"
#include "worker/sandbox.h"
#include "worker/workspaces.h"

namespace kiln::worker {

namespace fs = std::filesystem;
using Stream = grpc::ClientReaderWriter<v1::WorkerMessage, v1::ControllerMessage>;

struct JobState {
  int64_t id = 0;
  int attempt = 0;
  std::atomic<bool> cancel{false};
  std::atomic<bool> hand_back{false};
  std::atomic<int> pgid{0};
  std::atomic<bool> log_overflow{false};
};

// cc, c++, and gcc or g++ with the optional triplet prefix and version
// suffix (x86_64-linux-gnu-gcc-12): the names kiln-cc stands in for.
bool IsCompilerName(std::string_view n) {
  if (n == "cc" || n == "c++") return true;
  if (n.substr(0, 17) == "x86_64-linux-gnu-") n.remove_prefix(17);
  if (n.substr(0, 3) != "gcc" && n.substr(0, 3) != "g++") return false;
  n.remove_prefix(3);
  if (n.empty()) return true;
  if (n[0] != '-' || n.size() == 1) return false;
  for (char c : n.substr(1))
    if (c < '0' || c > '9') return false;
  return true;
}

struct Worker::Impl {
  config::WorkerConfig cfg;
  std::string id;
  std::string hostname;
  std::string arch;
  std::unique_ptr<v1::WorkerService::Stub> stub;
  std::unique_ptr<cas::CasClient> cas;
  std::unique_ptr<LocalCas> local_cas;
  std::unique_ptr<v1::ImageService::Stub> image_stub;
  std::unique_ptr<ImageStore> images;
  std::unique_ptr<WorkspaceStore> workspaces;
  std::unique_ptr<Sandbox> sandbox;   // null: this worker runs no containers
  std::string no_sandbox_why;

  // The compile cache: kiln-cc's copy in work_dir (empty: off here), and per
  // image a directory of it and links named after the image's compilers.
  std::string cc_master;
  std::unique_ptr<LookupMemory> cc_memory;
  IdentityMemory cc_identities;
  std::mutex cc_mu;
  std::set<std::string> cc_ready;  // image hashes whose wrapper directory exists

  std::mutex mu;  // guards jobs, unacked
  std::condition_variable cv;
  std::map<int64_t, std::shared_ptr<JobState>> jobs;
  std::map<std::pair<int64_t, int>, v1::JobUpdate> unacked;  // final reports until acknowledged
  std::set<std::pair<int64_t, int>> early_cancels;  // cancels that overtook their assignment
  int live_runs = 0;                                 // RunOne threads not yet finished

  std::mutex write_mu;  // guards stream, ctx and writes
  Stream* stream = nullptr;
  std::shared_ptr<grpc::ClientContext> ctx;
  std::chrono::milliseconds heartbeat_interval{2000};

  std::atomic<bool> draining{false};
  std::atomic<bool> done{false};
  std::thread drain_thread;

  // Messages that could not be sent wait here, in order, for the next
  // connection: logs (up to kMaxOutbox bytes), job state changes.
  static constexpr size_t kMaxOutbox = 16 << 20;
  std::deque<v1::WorkerMessage> outbox;  // guarded by write_mu
  size_t outbox_bytes = 0;
  bool outbox_overflowed = false;

  // Sends now, or (keep) queues for the next connection. Order is kept:
  // nothing overtakes what waits in the outbox.
  void Send(const v1::WorkerMessage& m, bool keep = true) {
    std::lock_guard g(write_mu);
    if (stream != nullptr && outbox.empty() && stream->Write(m)) return;
    if (!keep) return;
    size_t n = m.ByteSizeLong();
    if (m.has_log() && outbox_bytes + n > kMaxOutbox) {
      if (!outbox_overflowed) spdlog::warn("controller unreachable: dropping log output beyond 16 MiB");
      outbox_overflowed = true;
      return;
    }
    outbox.push_back(m);
    outbox_bytes += n;
  }

  // Sends what waits; true if the outbox is empty afterwards.
  bool Flush() {
    std::lock_guard g(write_mu);
    while (!outbox.empty() && stream != nullptr && stream->Write(outbox.front())) {
      outbox_bytes -= outbox.front().ByteSizeLong();
      outbox.pop_front();
    }
    if (outbox.empty()) outbox_overflowed = false;
    return outbox.empty();
  }

  void Heartbeat() {
    v1::WorkerMessage m;
    {
      std::lock_guard g(mu);
      m.mutable_heartbeat()->set_running(static_cast<int>(jobs.size()));
    }
    m.mutable_heartbeat()->set_draining(draining);
    Send(m, /*keep=*/false);
  }

  // Reports a final state; kept and re-sent until acknowledged. With
  // ran_here, the job also leaves `jobs` in the same step, freeing its slot
  // before the report goes out (the controller may assign the next job the
  // moment it reads it) and never leaving the job in neither set.
  void Report(const v1::JobUpdate& u, bool ran_here = false) {
    {
      std::lock_guard g(mu);
      if (ran_here) jobs.erase(u.job_id());
      unacked[{u.job_id(), u.attempt()}] = u;
    }
    v1::WorkerMessage m;
    *m.mutable_update() = u;
    Send(m);
  }

  void HandBack(int64_t job_id, int attempt, const std::string& why) {
    v1::JobUpdate u;
    u.set_job_id(job_id);
    u.set_attempt(attempt);
    u.set_status(v1::QUEUED);
    u.mutable_result()->set_exit_code(-1);
    u.mutable_result()->set_error(why);
    Report(u);
  }

  void Start(const v1::Assign& a) {
    auto js = std::make_shared<JobState>();
    js->id = a.job_id();
    js->attempt = a.attempt();
    std::string refuse;
    {
      std::lock_guard g(mu);
      auto it = jobs.find(a.job_id());
      if (it != jobs.end() && it->second->attempt >= a.attempt()) return;  // a repeat of what we run
      if (early_cancels.erase({a.job_id(), a.attempt()})) js->cancel = true;
      if (it != jobs.end()) {
        // A newer attempt owns the job: stop ours, let the new one be claimed again.
        it->second->cancel = true;
        refuse = "an older attempt of the job is still stopping here";
      } else if (draining) refuse = "the worker is draining";
      else if (static_cast<int>(jobs.size()) >= cfg.slots) refuse = "the worker has no free slot";
      else {
        jobs[a.job_id()] = js;
        ++live_runs;
      }
    }
    if (!refuse.empty()) {
      spdlog::info("handing back job_id={} attempt={}: {}", a.job_id(), a.attempt(), refuse);
      HandBack(a.job_id(), a.attempt(), refuse);
      return;
    }
    std::thread([this, a, js] { RunOne(a, js); }).detach();
  }

  // Fills the job directory with the input tree. Unavailable: CAS could not
  // be reached (the job goes back in line); anything else fails the job.
  Status Materialize(const v1::Assign& a, const std::string& job_dir) {
    const cas::Digest root = api::FromProto(a.spec().input_root());
    if (Status s = cas::CheckDigest(root, "input_root"); !s.ok()) return s;
    auto began = std::chrono::steady_clock::now();
    auto rep = local_cas->Materialize(*cas, root, job_dir);
    if (!rep.ok()) return rep.status();
    spdlog::info("job_id={} attempt={}: input tree {} ready: {} files ({} bytes), fetched {} ({} bytes) in {} ms",
                 a.job_id(), a.attempt(), root.ToString(), rep->files, rep->bytes, rep->fetched_files,
                 rep->fetched_bytes,
                 std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count());
    return Status::Ok();
  }

  // Brings the job's warm workspace to its input tree (or an empty one).
  Status SyncWorkspace(const v1::Assign& a, const std::function<void(const std::string&)>& log) {
    const cas::Digest root = a.spec().has_input_root() ? api::FromProto(a.spec().input_root())
                                                       : cas::DigestOf(cas::Directory{});
    if (Status s = cas::CheckDigest(root, "input_root"); !s.ok()) return s;
    auto began = std::chrono::steady_clock::now();
    auto rep = workspaces->Sync(a.project(), a.spec().workspace_name(), *cas, *local_cas, root);
    if (!rep.ok()) return rep.status();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count();
    std::string what = rep->fresh ? "new: the tree was written in full"
                                  : std::to_string(rep->changed) + " changed, " + std::to_string(rep->added) +
                                        " added, " + std::to_string(rep->removed) + " removed, " +
                                        std::to_string(rep->unchanged) + " untouched";
    log("kiln: warm workspace " + a.spec().workspace_name() + " on worker " + id + " (" + what + ", in " +
        std::to_string(ms) + " ms)\n");
    return Status::Ok();
  }

  // Captures the declared outputs into CAS; returns the root of their tree.
  Result<std::string> CaptureOutputs(const v1::Assign& a, const std::string& job_dir) {
    cas::WalkOptions o;
    o.paths.assign(a.spec().outputs().begin(), a.spec().outputs().end());
    for (const auto& p : o.paths) {
      struct stat st {};
      if (::lstat((job_dir + "/" + p).c_str(), &st) != 0)
        return NotFound("declared output '" + p + "' was not produced by the build");
    }
    auto t = cas::BuildTree(job_dir, o);
    if (!t.ok()) return Status(t.status().code(), "cannot capture outputs: " + t.status().message());
    if (t->file_bytes > cfg.max_output_bytes)
      return ResourceExhausted("the declared outputs hold " + std::to_string(t->file_bytes) +
                               " bytes, over this worker's limit of " + std::to_string(cfg.max_output_bytes) +
                               " (max_output_bytes)");
    Status last;
    for (int attempt = 0; attempt < 5; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
      auto up = cas->UploadTree(*t);
      if (up.ok()) {
        spdlog::debug("job_id={} outputs {}: uploaded {} blobs ({} bytes), {} nodes", a.job_id(), t->root.ToString(),
                      up->blobs, up->blob_bytes, up->nodes);
        return t->root.Key();
      }
      last = up.status();
      if (last.code() != Code::kUnavailable && last.code() != Code::kDeadlineExceeded) break;
    }
    return Status(last.code(), "cannot upload outputs: " + last.message());
  }

  // work_dir/kiln-cc/<image hex>: kiln-cc and a link to it for each C or
  // C++ compiler the image has in its PATH directories (only those: a build
  // probing for a compiler must not find one that is not there).
  Result<std::string> WrapperDir(const std::string& image, const std::string& rootfs) {
    const std::string hash = image.substr(image.find(':') + 1);
    const std::string dir = cfg.work_dir + "/kiln-cc/" + hash;
    std::lock_guard g(cc_mu);
    if (cc_ready.count(hash)) return dir;
    std::set<std::string> names;
    for (const char* bin : {"usr/local/bin", "usr/bin", "bin"}) {
      struct stat st {};
      std::string d = rootfs + "/" + bin;
      if (::lstat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;  // never follow the image's links out
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(d, ec)) {
        std::string n = e.path().filename();
        if (IsCompilerName(n)) names.insert(n);
      }
    }
    std::string tmp = dir + ".partial";
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (::link(cc_master.c_str(), (tmp + "/kiln-cc").c_str()) != 0)
      fs::copy_file(cc_master, tmp + "/kiln-cc", fs::copy_options::overwrite_existing, ec);
    for (const auto& n : names) fs::create_symlink("kiln-cc", tmp + "/" + n, ec);
    ::chmod(tmp.c_str(), 0755);
    fs::remove_all(dir, ec);
    fs::rename(tmp, dir, ec);
    if (ec) return FailedPrecondition("cannot prepare " + dir + ": " + ec.message());
    spdlog::info("compile cache wrapper for image {}: {} compilers ({})", image, names.size(),
                 names.empty() ? "none" : *names.begin() + (names.size() > 1 ? ", ..." : ""));
    cc_ready.insert(hash);
    return dir;
  }

  // Sends what kiln-cc reported in a job's run (best effort: statistics).
  void RecordCompiles(const v1::RecordCompilesRequest& r) {
    if (r.stats().units() == 0) return;
    for (int attempt = 0; attempt < 3; ++attempt) {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      v1::Empty e;
      auto s = stub->RecordCompiles(&ctx, r, &e);
      if (s.ok()) return;
      if (s.error_code() != grpc::UNAVAILABLE || attempt == 2) {
        spdlog::warn("job_id={} attempt={}: compile cache statistics not recorded: {}", r.job_id(), r.attempt(),
                     s.error_message());
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
    }
  }

  // Runs the job: in a container when it names an image (never bare), else
  // as a plain process where this worker allows that.
  RunOutcome RunIn(const v1::Assign& a, const RunRequest& req, const std::function<void(int64_t)>& started,
                   const std::function<void(const std::string&)>& log, const std::shared_ptr<JobState>& js) {
    auto refuse = [&](queue::JobStatus st, const std::string& why) {
      RunOutcome out;
      out.status = st;
      out.result.error = why;
      out.started_ms = out.finished_ms = NowUnixMs();
      log("kiln: " + why + "\n");
      return out;
    };
    const std::string& image = a.spec().image();
    if (image.empty()) {
      if (!cfg.allow_plain_jobs)
        return refuse(queue::JobStatus::kFailed, "worker " + id + " runs only jobs with an image "
                                                 "(kiln submit --image, or the project's image); "
                                                 "allow_plain_jobs is off");
      return RunJob(req, started, log, js->cancel, js->hand_back, &js->pgid);
    }
    if (!sandbox)
      return refuse(queue::JobStatus::kFailed, "worker " + id + " cannot run containers (" + no_sandbox_why +
                                                   "); the job needs image " + image);
    auto rootfs = images->Acquire(*cas, *image_stub, image);
    if (!rootfs.ok()) {
      bool transient = rootfs.status().code() == Code::kUnavailable;
      return refuse(transient ? queue::JobStatus::kQueued : queue::JobStatus::kFailed,
                    "cannot prepare image " + image + " on worker " + id + ": " + rootfs.status().message());
    }
    RunRequest run = req;
    std::unique_ptr<CompileCacheServer> cc;
    if (!cc_master.empty() && !a.spec().no_compile_cache()) {
      auto wrapper = WrapperDir(image, *rootfs);
      CompileCacheJob j;
      j.job_id = a.job_id();
      j.attempt = a.attempt();
      j.project = a.project();
      j.image = image;
      j.dir = cfg.work_dir + "/cc/" + std::to_string(a.job_id()) + "-" + std::to_string(a.attempt());
      j.max_object_bytes = cfg.compile_cache_max_object_bytes;
      j.max_job_bytes = cfg.max_output_bytes;
      auto srv = wrapper.ok() ? CompileCacheServer::Start(
                                   j, {stub.get(), cas.get(), local_cas.get(), cc_memory.get(), &cc_identities})
                              : Result<std::unique_ptr<CompileCacheServer>>(wrapper.status());
      if (srv.ok()) {
        cc = std::move(*srv);
        run.cc_wrapper_dir = *wrapper;
        run.cc_socket_dir = j.dir;
      } else {
        spdlog::warn("job_id={} attempt={}: runs without the compile cache: {}", a.job_id(), a.attempt(),
                     srv.status().message());
      }
    }
    RunOutcome out = sandbox->Run(run, *rootfs, started, log, js->cancel, js->hand_back);
    if (cc) {
      cc->Stop();
      RecordCompiles(cc->Record());
    }
    images->Release(image);
    return out;
  }

  void RunOne(const v1::Assign& a, const std::shared_ptr<JobState>& js) {
    RunRequest req;
    req.job_id = a.job_id();
    req.attempt = a.attempt();
    req.spec = api::FromProto(a.spec());
    req.job_dir = cfg.work_dir + "/jobs/" + std::to_string(a.job_id()) + "-" + std::to_string(a.attempt());
    std::error_code ec;
    // A warm workspace when the job asks for one and no other job uses it.
    const std::string& ws_name = a.spec().workspace_name();
    std::optional<std::string> ws;
    if (a.spec().workspace() == "persistent" && !ws_name.empty()) ws = workspaces->Acquire(a.project(), ws_name);
    if (ws) {
      req.job_dir = *ws;
    } else {
      fs::remove_all(req.job_dir, ec);
      fs::create_directories(req.job_dir, ec);
    }
    spdlog::debug("running job_id={} attempt={}", a.job_id(), a.attempt());
    int64_t offset = 0;
    auto log = [&](const std::string& chunk) {
      if (offset + static_cast<int64_t>(chunk.size()) > cfg.max_log_bytes) {
        js->log_overflow = true;
        return;
      }
      v1::WorkerMessage m;
      auto* l = m.mutable_log();
      l->set_job_id(a.job_id());
      l->set_attempt(a.attempt());
      l->set_offset(offset);
      l->set_data(chunk);
      offset += static_cast<int64_t>(chunk.size());
      Send(m);
    };
    RunOutcome out;
    Status setup;
    if (a.spec().workspace() == "persistent" && !ws) {
      log("kiln: workspace " + ws_name + " is in use by another job on worker " + id +
          ": this job runs in a fresh directory\n");
    }
    if (ws) setup = SyncWorkspace(a, log);
    else if (a.spec().has_input_root()) setup = Materialize(a, req.job_dir);
    if (!setup.ok()) {
      spdlog::warn("job_id={} attempt={}: cannot prepare the input tree: {}", a.job_id(), a.attempt(), setup.message());
      out.status = setup.code() == Code::kUnavailable ? queue::JobStatus::kQueued : queue::JobStatus::kFailed;
      out.result.error = "cannot prepare the input tree on worker " + id + ": " + setup.message();
      out.started_ms = out.finished_ms = NowUnixMs();
    } else {
      auto started = [&](int64_t started_ms) {
        v1::WorkerMessage m;
        auto* u = m.mutable_update();
        u->set_job_id(a.job_id());
        u->set_attempt(a.attempt());
        u->set_status(v1::RUNNING);
        u->set_started_at_ms(started_ms);
        Send(m);
      };
      req.abort = &js->log_overflow;
      req.abort_limit = "log";
      req.abort_reason = "killed: its log exceeded the limit of " + FormatLimitBytes(cfg.max_log_bytes);
      out = RunIn(a, req, started, log, js);
      if (out.status == queue::JobStatus::kSucceeded && a.spec().outputs_size() > 0) {
        auto root = CaptureOutputs(a, req.job_dir);
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
      // Kept unless the run ended in a way that may leave it half written
      // (killed, cancelled, handed back, timed out) or its sync failed.
      keep = setup.ok() && (out.status == queue::JobStatus::kSucceeded ||
                                 (out.status == queue::JobStatus::kFailed && out.result.exit_code >= 0 &&
                                  out.result.term_signal == 0 && !out.result.timed_out && out.result.limit.empty()));
      if (!keep) log("kiln: workspace " + ws_name + " discarded: the next build starts clean\n");
      // Released after the report (its size and record are not the
      // build's time); the workspace's next job waits for that.
      workspaces->Releasing(a.project(), ws_name);
    }
    v1::JobUpdate u;
    u.set_job_id(a.job_id());
    u.set_attempt(a.attempt());
    u.set_status(api::ToProto(out.status));
    api::ToProto(out.result, u.mutable_result());
    u.set_started_at_ms(out.started_ms);
    u.set_finished_at_ms(out.finished_ms);
    u.set_log_size(offset);
    spdlog::debug("job finished job_id={} attempt={} status={}", a.job_id(), a.attempt(), queue::ToString(out.status));
    Report(u, /*ran_here=*/true);
    // What the job leaves goes after the report: removing a large build's
    // directory took a few hundred milliseconds, and they are not the
    // build's time. A worker that stops first removes leftovers at start.
    if (ws) {
      for (const auto& r : workspaces->Release(a.project(), ws_name, keep)) {
        v1::WorkerMessage m;
        *m.mutable_workspace() = r;
        Send(m);
      }
    } else {
      fs::remove_all(req.job_dir, ec);
    }
    {
      std::lock_guard g(mu);
      --live_runs;
    }
    cv.notify_all();
  }

  void Handle(const v1::ControllerMessage& m) {
    if (m.has_assign()) {
      Start(m.assign());
    } else if (m.has_cancel()) {
      std::lock_guard g(mu);
      auto it = jobs.find(m.cancel().job_id());
      if (it != jobs.end() && it->second->attempt == m.cancel().attempt()) {
        spdlog::info("cancelling job_id={} attempt={}: {}", m.cancel().job_id(), m.cancel().attempt(),
                     m.cancel().reason());
        it->second->cancel = true;
      } else if (!unacked.count({m.cancel().job_id(), m.cancel().attempt()}) && early_cancels.size() < 10000) {
        // The cancel may have overtaken its assignment: remember it.
        early_cancels.insert({m.cancel().job_id(), m.cancel().attempt()});
      }
    } else if (m.has_drop_workspace()) {
      const auto& d = m.drop_workspace();
      spdlog::info("removing workspace {} of project {} (kiln workspace rm)", d.name(), d.project());
      if (auto r = workspaces->Drop(d.project(), d.name())) {
        v1::WorkerMessage wm;
        *wm.mutable_workspace() = *r;
        Send(wm);
      }
    } else if (m.has_ack()) {
      std::lock_guard g(mu);
      unacked.erase({m.ack().job_id(), m.ack().attempt()});
      if (!m.ack().applied()) {
        spdlog::info("controller dropped our report as stale job_id={} attempt={}", m.ack().job_id(),
                     m.ack().attempt());
      }
      cv.notify_all();
    }
  }

  // One connection: register, serve, return when the stream ends.
  void Session() {
    auto context = std::make_shared<grpc::ClientContext>();
    // Wait for the channel rather than fail fast while it backs off: a
    // restarted controller is picked up as soon as it listens.
    context->set_wait_for_ready(true);
    {
      std::lock_guard g(write_mu);
      if (done) return;
      ctx = context;  // lets Drain() cancel a connect in progress
    }
    auto s = stub->Connect(context.get());
    v1::WorkerMessage reg;
    auto* r = reg.mutable_register_();
    r->set_worker_id(id);
    r->set_hostname(hostname);
    r->set_arch(arch);
    r->set_os("linux");
    r->set_slots(cfg.slots);
    for (const auto& [k, v] : cfg.labels) (*r->mutable_labels())[k] = v;
    if (sandbox) (*r->mutable_labels())["sandbox"] = "runc";
    if (cfg.allow_plain_jobs) (*r->mutable_labels())["plain"] = "yes";
    r->set_cluster(cfg.cluster);
    r->set_version(kVersion);
    r->set_draining(draining);
    for (const auto& ws : workspaces->List()) *r->add_workspaces() = ws;
    std::vector<v1::JobUpdate> resend;
    {
      std::lock_guard g(mu);
      for (const auto& [jid, js] : jobs) {
        auto* ref = r->add_running();
        ref->set_job_id(jid);
        ref->set_attempt(js->attempt);
      }
      // A job whose final report is unacknowledged is still ours: without
      // it here, the controller would think we lost it and run it again.
      for (const auto& [_, u] : unacked) {
        resend.push_back(u);
        auto* ref = r->add_running();
        ref->set_job_id(u.job_id());
        ref->set_attempt(u.attempt());
      }
    }
    if (!s->Write(reg)) {
      auto st = s->Finish();
      spdlog::warn("cannot reach controller {}: {}", cfg.controller, st.error_message());
      return;
    }
    v1::ControllerMessage m;
    if (!s->Read(&m) || !m.has_registered()) {
      auto st = s->Finish();
      spdlog::warn("controller {} refused registration: {}", cfg.controller,
                   st.ok() ? "no answer" : st.error_message());
      return;
    }
    heartbeat_interval = std::chrono::milliseconds(std::max(50, m.registered().heartbeat_interval_ms()));
    {
      std::lock_guard g(write_mu);
      stream = s.get();
    }
    spdlog::info("connected to controller {} ({}) as worker_id={} slots={}", cfg.controller,
                 m.registered().controller_id(), id, cfg.slots);
    sd_notify(0, "READY=1");
    // What waited (logs first, in order), then final reports again: a final
    // report applied before its job's last log chunks would fence them out.
    if (Flush()) {
      for (const auto& u : resend) {
        v1::WorkerMessage um;
        *um.mutable_update() = u;
        Send(um, /*keep=*/false);
      }
    }
    std::atomic<bool> connected{true};
    std::thread hb([&] {
      while (connected) {
        auto until = std::chrono::steady_clock::now() + heartbeat_interval;
        std::unique_lock lk(mu);
        cv.wait_until(lk, until, [&] { return !connected; });
        lk.unlock();
        if (connected) Heartbeat();
      }
    });
    while (s->Read(&m)) Handle(m);
    connected = false;
    cv.notify_all();
    hb.join();
    {
      std::lock_guard g(write_mu);
      stream = nullptr;
      ctx = nullptr;
    }
    auto st = s->Finish();
    if (!done) spdlog::warn("lost the controller stream: {}", st.ok() ? "closed by the controller" : st.error_message());
  }

  void Drain() {
    spdlog::info("draining: no new jobs; {} running get up to {} s", jobs.size(), cfg.drain_grace.count() / 1000);
    Heartbeat();
    std::unique_lock lk(mu);
    if (!cv.wait_for(lk, cfg.drain_grace, [&] { return jobs.empty() && live_runs == 0; })) {
      spdlog::info("drain grace over: handing back {} jobs", jobs.size());
      for (auto& [_, js] : jobs) js->hand_back = true;
      cv.wait(lk, [&] { return jobs.empty() && live_runs == 0; });
    }
    // Wait (a little) for the controller to acknowledge the final reports.
    cv.wait_for(lk, std::chrono::seconds(10), [&] { return unacked.empty(); });
    if (!unacked.empty()) spdlog::warn("{} final reports unacknowledged at exit", unacked.size());
    done = true;
    lk.unlock();
    std::lock_guard g(write_mu);
    if (ctx) ctx->TryCancel();
  }
};

Worker::Worker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Worker::~Worker() {
  if (impl_->drain_thread.joinable()) impl_->drain_thread.join();
}
const std::string& Worker::id() const { return impl_->id; }

Result<std::unique_ptr<Worker>> Worker::Create(const config::WorkerConfig& cfg) {
  auto impl = std::make_unique<Impl>();
  impl->cfg = cfg;
  if (impl->cfg.slots <= 0) impl->cfg.slots = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  impl->hostname = cfg.hostname.empty() ? host : cfg.hostname;
  struct utsname u;
  uname(&u);
  impl->arch = u.machine;
  impl->id = impl->hostname + "-" + RandomHex(4);
  std::error_code ec;
  fs::create_directories(cfg.work_dir + "/jobs", ec);
  if (ec) return FailedPrecondition("cannot create work directory " + cfg.work_dir + ": " + ec.message());
  impl->local_cas = std::make_unique<LocalCas>(cfg.work_dir + "/cas", cfg.cache_max_bytes);
  impl->images = std::make_unique<ImageStore>(cfg.work_dir + "/images", cfg.image_cache_bytes, impl->local_cas.get());
  impl->workspaces = std::make_unique<WorkspaceStore>(cfg.work_dir + "/workspaces", cfg.workspace_max_bytes);
  if (cfg.sandbox == "runc") {
    SandboxCaps caps;
    caps.uid = caps.gid = static_cast<uint32_t>(cfg.sandbox_uid);
    caps.memory_bytes = cfg.sandbox_memory_max;
    caps.pids = cfg.sandbox_pids_max;
    caps.cpu_millis = cfg.sandbox_cpus_max * 1000;
    caps.tmp_bytes = cfg.sandbox_tmp_bytes;
    auto sb = MakeRuncSandbox(cfg.work_dir + "/runc", cfg.work_dir + "/bundles", "kiln-" + impl->id + "-", caps);
    if (Status s = sb->Check(); s.ok()) {
      sb->CleanUp();
      impl->sandbox = std::move(sb);
    } else {
      impl->no_sandbox_why = s.message();
      spdlog::warn("containers are off on this worker: {}; jobs with an image will not be sent here", s.message());
    }
  } else {
    impl->no_sandbox_why = "sandbox = none in its configuration";
  }
  if (impl->sandbox && cfg.compile_cache) {
    std::string src = cfg.compile_cache_wrapper;
    if (src.empty()) {
      char self[PATH_MAX] = {0};
      ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
      if (n > 0) src = fs::path(std::string(self, static_cast<size_t>(n))).parent_path() / "kiln-cc";
    }
    // A copy of our own: a reinstall does not change the wrapper under running builds.
    std::string dir = cfg.work_dir + "/kiln-cc";
    fs::remove_all(dir, ec);
    fs::create_directories(dir, ec);
    ::chmod(dir.c_str(), 0755);
    if (::access(src.c_str(), X_OK) != 0) {
      spdlog::warn("compile cache off: kiln-cc not found at {} (install it beside kiln-worker, or set "
                   "compile_cache_wrapper)", src);
    } else if (fs::copy_file(src, dir + "/kiln-cc", fs::copy_options::overwrite_existing, ec);
               ec || ::chmod((dir + "/kiln-cc").c_str(), 0755) != 0) {
      spdlog::warn("compile cache off: cannot copy {} into {}: {}", src, dir, ec.message());
    } else {
      impl->cc_master = dir + "/kiln-cc";
      if (cfg.compile_cache_memory_bytes > 0)
        impl->cc_memory = std::make_unique<LookupMemory>(cfg.compile_cache_memory_bytes);
    }
  }
  fs::remove_all(cfg.work_dir + "/cc", ec);  // sockets of a crashed run
  // Leftovers of a crashed run: their jobs were requeued long ago.
  for (const auto& e : fs::directory_iterator(cfg.work_dir + "/jobs", ec)) {
    spdlog::info("removing leftover job directory {}", e.path().string());
    fs::remove_all(e.path(), ec);
  }
  grpc::ChannelArguments args;
  // A directory node of a very large directory, or a page of them, may pass
  // gRPC's default 4 MiB (the controller takes up to 16 MiB).
  args.SetMaxReceiveMessageSize(32 << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  auto channel = grpc::CreateCustomChannel(cfg.controller, grpc::InsecureChannelCredentials(), args);
  impl->stub = v1::WorkerService::NewStub(channel);
  impl->cas = std::make_unique<cas::CasClient>(channel);
  impl->image_stub = v1::ImageService::NewStub(channel);
  return std::unique_ptr<Worker>(new Worker(std::move(impl)));
}

int Worker::Run() {
  auto& i = *impl_;
  spdlog::info("kiln-worker {} starting: worker_id={} controller={} slots={} work_dir={}", kVersion, i.id,
               i.cfg.controller, i.cfg.slots, i.cfg.work_dir);
  auto backoff = std::chrono::milliseconds(100);
  while (!i.done) {
    auto began = std::chrono::steady_clock::now();
    i.Session();
    if (i.done) break;
    if (std::chrono::steady_clock::now() - began > std::chrono::seconds(5)) backoff = std::chrono::milliseconds(100);
    // Jittered, capped at a second: a controller restart must not cost a
    // lease, and many workers must not reconnect in lockstep.
    auto wait = backoff / 2 + std::chrono::milliseconds(std::stoul(RandomHex(2), nullptr, 16) % (backoff.count() / 2 + 1));
    std::unique_lock lk(i.mu);
    i.cv.wait_for(lk, wait, [&] { return i.done.load(); });
    backoff = std::min(backoff * 2, std::chrono::milliseconds(1000));
  }
  sd_notify(0, "STOPPING=1");
  spdlog::info("stopped");
  return 0;
}

void Worker::Stop(int n) {
  auto& i = *impl_;
  if (n >= 2) {
    spdlog::warn("second stop signal: killing running jobs and exiting at once");
    std::lock_guard g(i.mu);
    for (auto& [_, js] : i.jobs) {
      if (js->pgid > 0) kill(-js->pgid, SIGKILL);
    }
    std::_Exit(1);
  }
  if (i.draining.exchange(true)) return;
  sd_notify(0, "STOPPING=1");
  i.drain_thread = std::thread([&i] { i.Drain(); });
}

}  // namespace kiln::worker
