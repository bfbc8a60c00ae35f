#include "worker/worker.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "cas/client.h"
#include "common/util.h"
#include "common/version.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "worker/actions.h"
#include "worker/assignment.h"
#include "worker/cc_wrapper.h"
#include "worker/images.h"
#include "worker/health.h"
#include "worker/job_run.h"
#include "worker/ledger.h"
#include "worker/checkout.h"
#include "worker/identity.h"
#include "worker/local_cas.h"
#include "worker/metrics.h"
#include "metrics/server.h"
#include "worker/outbox.h"
#include "worker/stream.h"
#include "worker/sandbox.h"
#include "worker/workspaces.h"

namespace kiln::worker {

namespace fs = std::filesystem;

struct Worker::Impl {
  config::WorkerConfig cfg;
  std::string id;
  std::string hostname;
  std::string arch;
  std::unique_ptr<v1::WorkerService::Stub> stub;
  std::unique_ptr<cas::CasClient> cas;
  std::unique_ptr<Checkouts> checkouts;
  std::unique_ptr<LocalCas> local_cas;
  std::unique_ptr<v1::ImageService::Stub> image_stub;
  std::unique_ptr<ImageStore> images;
  std::unique_ptr<WorkspaceStore> workspaces;
  std::unique_ptr<Sandbox> sandbox;   // null: this worker runs no containers
  std::string no_sandbox_why;
  std::unique_ptr<CompileCacheSetup> cc;  // null: the compile cache is off here
  std::unique_ptr<ActionRunner> actions;  // null: runs no remote actions
  std::unique_ptr<HealthProbe> health;
  JobEnv env;                             // what each job's run uses of the above

  JobLedger ledger;
  Outbox outbox;
  WorkerMetrics metrics;
  std::unique_ptr<metrics::Server> metrics_server;  // null: metrics_address is empty
  std::unique_ptr<ControllerStream> stream;  // set by Create

  std::mutex mu;  // with cv: the reconnect backoff's wait
  std::condition_variable cv;

  std::atomic<bool> draining{false};
  std::thread drain_thread;
  Identity who;  // this worker's certificate
  std::thread renew_thread;

  // Renews the certificate when due (and retries hourly after a failure).
  void RenewLoop() {
    while (!stream->closed()) {
      int64_t wait_ms = std::max<int64_t>(0, RenewAtMs(cfg, who) - NowUnixMs());
      {
        std::unique_lock lk(mu);
        cv.wait_for(lk, std::chrono::milliseconds(std::min<int64_t>(wait_ms, 3'600'000)),
                    [&] { return stream->closed(); });
      }
      if (stream->closed()) return;
      if (NowUnixMs() < RenewAtMs(cfg, who)) continue;
      Status s = Renew(cfg, *stub, who);
      if (!s.ok()) {
        spdlog::warn("{}; retrying in an hour (the certificate expires at_ms={})", s.message(), who.expires_at_ms);
      } else if (NowUnixMs() >= RenewAtMs(cfg, who)) {
        spdlog::warn("cert_renew_before is longer than a certificate's lifetime: renewing hourly");
      } else {
        continue;
      }
      std::unique_lock lk(mu);
      cv.wait_for(lk, std::chrono::hours(1), [&] { return stream->closed(); });
    }
  }

  void Start(const v1::Assign& wire) {
    Assignment a = FromProto(wire);
    auto adm = ledger.Admit(a.job_id, a.attempt, cfg.slots, draining, &wire);
    if (adm.older_stopping) {
      // The controller gave the job to a new attempt while the old one ran
      // here (its lease or stream was lost): the old one is told to stop and
      // this one takes its slot once it has (its run's thread starts it).
      // Handed back at once, the job would come straight back here, attempt
      // after attempt.
      spdlog::info("job_id={} attempt={} waits for its older attempt to stop here", a.job_id, a.attempt);
      return;
    }
    if (!adm.refuse.empty()) {
      spdlog::info("handing back job_id={} attempt={}: {}", a.job_id, a.attempt, adm.refuse);
      stream->HandBack(a.job_id, a.attempt, adm.refuse);
      return;
    }
    if (!adm.job) return;  // a repeat of what we run
    std::thread([this, a = std::move(a), js = std::move(adm.job)] {
      RunAssignment(env, a, js);
      // A newer attempt that waited for this one: started (or handed back)
      // while this run still counts as live, so a drain waits for it.
      if (auto next = ledger.TakeSuccessor(a.job_id)) Start(*next);
      ledger.RunEnded();
    }).detach();
  }

  void Drain() {
    spdlog::info("draining: no new jobs; {} running get up to {} s", ledger.running(),
                 cfg.drain_grace.count() / 1000);
    stream->Heartbeat();
    if (!ledger.WaitIdle(cfg.drain_grace)) {
      spdlog::info("drain grace over: handing back {} jobs", ledger.HandBackAll());
      ledger.WaitIdle();
    }
    // Wait (a little) for the controller to acknowledge the final reports.
    if (!ledger.WaitAcked(std::chrono::seconds(10)))
      spdlog::warn("{} final reports unacknowledged at exit", ledger.unacked());
    stream->Close();
    {
      std::lock_guard g(mu);  // the reconnect wait sees closed() at once
    }
    cv.notify_all();
  }
};

Worker::Worker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Worker::~Worker() {
  if (impl_->drain_thread.joinable()) impl_->drain_thread.join();
  if (impl_->renew_thread.joinable()) impl_->renew_thread.join();
}
const std::string& Worker::id() const { return impl_->id; }

void Worker::Reload(const config::WorkerConfig& cfg) {
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  impl_->health->SetInterval(cfg.health_check_interval);
}

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
  std::error_code ec;
  fs::create_directories(cfg.work_dir, ec);
  // Who this worker is: its enrolled certificate's identity.
  auto who = LoadOrEnroll(cfg, impl->hostname, args);
  if (!who.ok()) return who.status();
  impl->id = who->id;
  impl->who = *who;
  fs::create_directories(cfg.work_dir + "/jobs", ec);
  if (ec) return FailedPrecondition("cannot create work directory " + cfg.work_dir + ": " + ec.message());
  // A crashed run's checkouts are still mounted: unmounted before anything
  // under work_dir is scanned or deleted.
  UnmountUnder(cfg.work_dir);
  // The build user; a worker that is not root cannot give files away, and
  // its plain jobs run as itself.
  const auto uid = ::geteuid() == 0 ? static_cast<uint32_t>(cfg.sandbox_uid) : static_cast<uint32_t>(::geteuid());
  // The cache's files and the checkouts' layers belong to the build user:
  // only root may reach them on the host (overlays and runc mount them as
  // root; a build sees only its own /src).
  for (const char* d : {"/cas", "/jobs", "/workspaces"}) {
    fs::create_directories(cfg.work_dir + d, ec);
    ::chmod((cfg.work_dir + d).c_str(), 0700);
  }
  impl->checkouts = std::make_unique<Checkouts>(cfg.work_dir + "/disks", uid, uid);
  if (const Status& s = impl->checkouts->overlay(); !s.ok()) {
    spdlog::warn("job checkouts are copies on this worker, without a disk cap: {}", s.message());
  } else if (struct statvfs v {}; ::statvfs(cfg.work_dir.c_str(), &v) == 0) {
    // Disks are sparse: they take what builds write, up to their caps.
    const int64_t free = static_cast<int64_t>(v.f_bavail) * static_cast<int64_t>(v.f_frsize);
    const int64_t worst = int64_t{impl->cfg.slots} * cfg.disk_max + cfg.workspace_max_bytes;
    if (free < worst)
      spdlog::warn("work_dir {} has {} free, less than slots x disk_max + workspace_max_bytes ({}): builds that "
                   "write that much would fill it before their caps; lower disk_max or give work_dir more room",
                   cfg.work_dir, FormatLimitBytes(free), FormatLimitBytes(worst));
  }
  impl->local_cas = std::make_unique<LocalCas>(cfg.work_dir + "/cas", cfg.cache_max_bytes, uid, uid);
  impl->images = std::make_unique<ImageStore>(cfg.work_dir + "/images", cfg.image_cache_bytes, impl->local_cas.get());
  impl->workspaces =
      std::make_unique<WorkspaceStore>(cfg.work_dir + "/workspaces", cfg.workspace_max_bytes, *impl->checkouts);
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
      // And the probes' rootfs a crashed worker left (work_dir/probe-N).
      std::error_code probe_ec;
      for (const auto& e : std::filesystem::directory_iterator(cfg.work_dir, probe_ec))
        if (e.path().filename().string().rfind("probe-", 0) == 0) std::filesystem::remove_all(e.path(), probe_ec);
      impl->sandbox = std::move(sb);
    } else {
      impl->no_sandbox_why = s.message();
      spdlog::warn("containers are off on this worker: {}; jobs with an image will not be sent here", s.message());
    }
  } else {
    impl->no_sandbox_why = "sandbox = none in its configuration";
  }
  if (impl->sandbox && cfg.compile_cache)
    impl->cc = CompileCacheSetup::Install(cfg.work_dir, cfg.compile_cache_wrapper, cfg.compile_cache_memory_bytes);
  fs::remove_all(cfg.work_dir + "/cc", ec);  // sockets of a crashed run
  // Remote actions need containers and kiln-cc (their launcher).
  if (impl->cfg.action_slots < 0) impl->cfg.action_slots = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!impl->sandbox || !impl->cc) impl->cfg.action_slots = 0;
  // Leftovers of a crashed run: their jobs were requeued long ago.
  for (const auto& e : fs::directory_iterator(cfg.work_dir + "/jobs", ec)) {
    spdlog::info("removing leftover job directory {}", e.path().string());
    fs::remove_all(e.path(), ec);
  }
  auto channel = ControllerChannel(cfg, *who, args);
  impl->stub = v1::WorkerService::NewStub(channel);
  impl->cas = std::make_unique<cas::CasClient>(channel);
  impl->image_stub = v1::ImageService::NewStub(channel);
  JobEnv& env = impl->env;
  env.cfg = &impl->cfg;
  env.worker_id = impl->id;
  env.stub = impl->stub.get();
  env.cas = impl->cas.get();
  env.local_cas = impl->local_cas.get();
  env.image_stub = impl->image_stub.get();
  env.images = impl->images.get();
  env.workspaces = impl->workspaces.get();
  env.checkouts = impl->checkouts.get();
  env.sandbox = impl->sandbox.get();
  env.no_sandbox_why = impl->no_sandbox_why;
  env.cc = impl->cc.get();
  if (impl->sandbox && impl->cc) {
    env.runc_check = [sb = impl->sandbox.get(), dir = cfg.work_dir + "/probe-", cc = impl->cc->master()] {
      // 1, 2, ...: the health check's own container is 0.
      static std::atomic<int> n{0};
      const int k = ++n;
      return ProbeContainer(*sb, dir + std::to_string(k), cc, 30, nullptr, k);
    };
  }
  env.metrics = impl->metrics.run;
  // The stores whose free disk the health reports and metrics give.
  const std::vector<std::pair<std::string, std::string>> stores = {
      {"work_dir", cfg.work_dir}, {"images", cfg.work_dir + "/images"}, {"cas", cfg.work_dir + "/cas"}};
  // The runc check starts a real container when kiln-cc (static) is here to
  // be its init.
  HealthProbe::StartContainer start_container;
  if (impl->sandbox && impl->cc) {
    start_container = [sb = impl->sandbox.get(), dir = cfg.work_dir + "/probe",
                       cc = impl->cc->master()](const std::atomic<bool>& cancel) {
      return ProbeContainer(*sb, dir, cc, 30, &cancel);
    };
  }
  impl->health =
      std::make_unique<HealthProbe>(stores, impl->sandbox.get(), cfg.health_check_interval, std::move(start_container));
  Impl* i = impl.get();
  impl->metrics.registry.OnScrape([i, stores] {
    for (const auto& [store, dir] : stores) {
      int64_t free = 0, total = 0;
      if (FreeDisk(dir, free, total)) i->metrics.disk_free_bytes.With({{"store", store}}).Set(static_cast<double>(free));
    }
    i->metrics.slots.Set(i->cfg.slots);
    i->metrics.slots_busy.Set(static_cast<double>(i->ledger.running()));
    i->metrics.cas_cache_bytes.Set(static_cast<double>(i->local_cas->bytes()));
    i->metrics.image_bytes.Set(static_cast<double>(i->images->stats().bytes));
    i->metrics.boxes.Set(i->actions ? i->actions->Boxes() : 0);
  });
  if (!cfg.metrics_address.empty()) {
    auto server = metrics::Server::Start(cfg.metrics_address, {&impl->metrics.registry});
    if (!server.ok()) return server.status();
    impl->metrics_server = std::move(server).value();
  }
  ControllerStream::Deps sd;
  sd.stub = impl->stub.get();
  sd.channel = channel;
  sd.cfg = &impl->cfg;
  sd.who = {impl->id, impl->hostname, impl->arch, impl->sandbox != nullptr};
  sd.ledger = &impl->ledger;
  sd.outbox = &impl->outbox;
  sd.workspaces = impl->workspaces.get();
  sd.draining = &impl->draining;
  sd.health = [i] { return i->health->Measure(); };
  sd.assign = [i](const v1::Assign& a) { i->Start(a); };
  if (impl->cfg.action_slots > 0) sd.run_action = [i](const v1::RunAction& a) { i->actions->Start(a); };
  // A revoked worker stops: its jobs were requeued elsewhere, and it may
  // not report on them.
  sd.refused = [i](const std::string& why) {
    spdlog::error("the controller refuses this worker's certificate: stopping its jobs and exiting ({})", why);
    i->ledger.KillAll();
    std::_Exit(3);
  };
  impl->stream = std::make_unique<ControllerStream>(std::move(sd));
  ControllerStream* stream = impl->stream.get();
  env.send = [stream](const v1::WorkerMessage& m) { stream->Send(m); };
  if (impl->cfg.action_slots > 0) {
    ActionEnv ae;
    ae.cfg = &impl->cfg;
    ae.worker_id = impl->id;
    ae.cas = impl->cas.get();
    ae.local_cas = impl->local_cas.get();
    ae.image_stub = impl->image_stub.get();
    ae.images = impl->images.get();
    ae.sandbox = impl->sandbox.get();
    ae.cc = impl->cc.get();
    ae.send = [stream](const v1::WorkerMessage& m) { stream->Send(m, /*keep=*/false); };
    ae.draining = &impl->draining;
    ae.metrics = impl->metrics.actions;
    impl->actions = std::make_unique<ActionRunner>(std::move(ae), impl->cfg.action_slots);
  }
  env.finish = [stream](const v1::JobUpdate& update) { stream->Report(update, /*ran_here=*/true); };
  return std::unique_ptr<Worker>(new Worker(std::move(impl)));
}

int Worker::Run() {
  auto& i = *impl_;
  spdlog::info("kiln-worker {} starting: worker_id={} controller={} slots={} action_slots={} work_dir={}", kVersion,
               i.id, i.cfg.controller, i.cfg.slots, i.cfg.action_slots, i.cfg.work_dir);
  if (!i.cfg.insecure) i.renew_thread = std::thread([&i] { i.RenewLoop(); });
  if (i.metrics_server) {
    spdlog::info("serving metrics on http://{}/metrics", i.metrics_server->address());
    WriteAddressFile(i.cfg.metrics_address_file, i.metrics_server->address());
  }
  auto backoff = std::chrono::milliseconds(100);
  while (!i.stream->closed()) {
    auto began = std::chrono::steady_clock::now();
    i.stream->Session();
    if (i.stream->closed()) break;
    if (std::chrono::steady_clock::now() - began > std::chrono::seconds(5)) backoff = std::chrono::milliseconds(100);
    // Jittered, capped at a second: a controller restart must not cost a
    // lease, and many workers must not reconnect in lockstep.
    auto wait = backoff / 2 + std::chrono::milliseconds(std::stoul(RandomHex(2), nullptr, 16) % (backoff.count() / 2 + 1));
    std::unique_lock lk(i.mu);
    i.cv.wait_for(lk, wait, [&] { return i.stream->closed(); });
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
    i.ledger.KillAll();
    std::_Exit(1);
  }
  if (i.draining.exchange(true)) return;
  sd_notify(0, "STOPPING=1");
  i.drain_thread = std::thread([&i] { i.Drain(); });
}

}  // namespace kiln::worker
