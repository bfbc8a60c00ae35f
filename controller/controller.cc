#include "controller/controller.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "api/convert.h"
#include "common/util.h"
#include "common/version.h"
#include "controller/impl.h"
#include "db/migrate.h"

namespace kiln::controller {

// ---- project cache ----

Status ProjectCache::Refresh(bool force) {
  auto v = q_->ProjectsVersion();
  if (!v.ok()) return v.status();
  {
    std::lock_guard g(mu_);
    if (!force && *v == version_) return Status::Ok();
  }
  auto rows = q_->ListProjects();
  if (!rows.ok()) return rows.status();
  std::map<std::string, config::ProjectConfig> next;
  for (const auto& p : *rows) {
    auto c = config::ParseProjectConfig(p.config_json);
    if (!c.ok()) {
      // Written around the API (by SQL): keep defaults, say so.
      spdlog::warn("invalid configuration of project {} ignored: {}", p.name, c.status().message());
      next[p.name] = config::ProjectConfig{};
    } else {
      next[p.name] = *c;
    }
  }
  std::lock_guard g(mu_);
  projects_ = std::move(next);
  version_ = *v;
  spdlog::debug("project configuration loaded: {} projects", projects_.size());
  return Status::Ok();
}

Result<config::ProjectConfig> ProjectCache::Get(const std::string& project) {
  for (int pass = 0; pass < 2; ++pass) {
    {
      std::lock_guard g(mu_);
      auto it = projects_.find(project);
      if (it != projects_.end()) return it->second;
    }
    if (pass == 0) KILN_RETURN_IF_ERROR(Refresh(true));
  }
  return NotFound("project \"" + project + "\" does not exist; create it with: kiln projects create " + project);
}

// ---- background loops ----

void Controller::Impl::Enqueue(Event e) {
  {
    std::lock_guard g(events_mu);
    events.push_back(std::move(e));
  }
  events_cv.notify_one();
}

void Controller::Impl::DispatchLoop() {
  uint64_t seen = dispatch_wake.generation();
  size_t rr = 0;
  while (!stopping) {
    bool more = false;
    auto sessions = registry.All();
    for (size_t k = 0; k < sessions.size() && !stopping; ++k) {
      auto& s = sessions[(rr + k) % sessions.size()];
      int free = s->FreeSlots();
      if (free <= 0) continue;
      auto claimed = queue->Claim(s->worker_id, s->session_id, free, cfg.workspace_grace);
      if (!claimed.ok()) {
        spdlog::warn("claim failed: {}", claimed.status().message());
        break;
      }
      for (auto& job : *claimed) {
        s->Assigned(job.id);
        v1::ControllerMessage m;
        auto* a = m.mutable_assign();
        a->set_job_id(job.id);
        a->set_attempt(job.attempt);
        a->set_project(job.project);
        api::ToProto(job.spec, a->mutable_spec());
        spdlog::debug("assigned job_id={} attempt={} worker_id={}", job.id, job.attempt, s->worker_id);
        if (!s->Send(m)) {
          // The stream is gone: its handler requeues the worker's jobs.
          spdlog::info("worker {} went away while being assigned job {}", s->worker_id, job.id);
          break;
        }
      }
      if (!claimed->empty()) job_events.Notify();
      if (static_cast<int>(claimed->size()) == free) more = true;
    }
    ++rr;
    if (more) continue;
    seen = dispatch_wake.Wait(seen, cfg.dispatch_poll_interval);
  }
}

void Controller::Impl::ApplyLoop() {
  constexpr size_t kMaxBatch = 1000;
  auto backoff = std::chrono::milliseconds(50);
  std::deque<Event> batch;
  while (true) {
    {
      std::unique_lock lk(events_mu);
      events_cv.wait_for(lk, std::chrono::milliseconds(200), [&] { return !events.empty() || stopping; });
      if (events.empty() && batch.empty()) {
        if (stopping) return;
        continue;
      }
      // A batch ends before a stream drop, which is applied on its own, in order.
      if (batch.empty() && !events.empty() && events.front().kind == Event::kDrop) {
        Event drop = std::move(events.front());
        events.pop_front();
        lk.unlock();
        ApplyDrop(drop);
        continue;
      }
      while (!events.empty() && batch.size() < kMaxBatch && events.front().kind != Event::kDrop) {
        batch.push_back(std::move(events.front()));
        events.pop_front();
      }
    }
    std::vector<queue::Update> updates;
    std::vector<queue::LogAppend> logs;
    std::map<std::pair<int64_t, int>, std::shared_ptr<Session>> senders;
    for (auto& e : batch) {
      if (e.kind == Event::kLog) {
        logs.push_back(e.log);
      } else {
        updates.push_back(e.update);
        senders[{e.update.job_id, e.update.attempt}] = e.session;
      }
    }
    auto outcomes = queue->Apply(updates, logs);
    if (!outcomes.ok() && outcomes.status().code() == Code::kInvalidArgument) {
      // The database refused the data: retrying cannot help. Unacknowledged
      // final reports come again when their workers reconnect.
      spdlog::error("dropping {} worker reports the database refused: {}", batch.size(), outcomes.status().message());
      batch.clear();
      continue;
    }
    if (!outcomes.ok()) {
      // Keep the batch: nothing a worker reported is dropped while the
      // database is away; workers keep final results until acknowledged.
      spdlog::warn("cannot store worker updates, retrying in {} ms: {}", backoff.count(),
                   outcomes.status().message());
      if (stopping) return;
      std::this_thread::sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      continue;
    }
    backoff = std::chrono::milliseconds(50);
    for (const auto& o : *outcomes) {
      auto& s = senders[{o.job_id, o.attempt}];
      // The status is the stored one if applied, else the one reported.
      bool final_report = o.status != queue::JobStatus::kRunning;
      if (!o.applied) {
        spdlog::info("stale report ignored: job_id={} attempt={} worker_id={}", o.job_id, o.attempt,
                     s ? s->worker_id : "?");
        if (!final_report && s) {
          // The worker runs something that is no longer its own: stop it.
          v1::ControllerMessage m;
          auto* c = m.mutable_cancel();
          c->set_job_id(o.job_id);
          c->set_attempt(o.attempt);
          c->set_reason("this attempt no longer owns the job");
          s->Send(m);
        }
      }
      if (final_report && s) {
        v1::ControllerMessage m;
        auto* ack = m.mutable_ack();
        ack->set_job_id(o.job_id);
        ack->set_attempt(o.attempt);
        ack->set_applied(o.applied);
        s->Send(m);
      }
    }
    batch.clear();
    job_events.Notify();
  }
}

void Controller::Impl::ApplyDrop(const Event& drop) {
  const auto& s = drop.session;
  for (auto backoff = std::chrono::milliseconds(50);; backoff = std::min(backoff * 2, std::chrono::milliseconds(2000))) {
    auto r = queue->DropWorker(s->worker_id, s->session_id, drop.why);
    if (r.ok()) {
      spdlog::info("worker disconnected worker_id={} requeued={} lost={} cancelled={}", s->worker_id, r->requeued,
                   r->lost, r->cancelled);
      break;
    }
    if (stopping) {
      spdlog::warn("worker {} disconnected; its jobs will be requeued when its lease expires: {}", s->worker_id,
                   r.status().message());
      break;
    }
    spdlog::warn("cannot requeue the jobs of disconnected worker {}, retrying: {}", s->worker_id, r.status().message());
    std::this_thread::sleep_for(backoff);
  }
  job_events.Notify();
}

void Controller::Impl::ReapLoop() {
  uint64_t seen = shutdown_wake.generation();
  while (!stopping) {
    auto r = queue->Reap();
    if (!r.ok()) {
      spdlog::warn("lease reaper: {}", r.status().message());
    } else if (!r->job_ids.empty()) {
      spdlog::info("expired leases: requeued={} lost={} cancelled={}", r->requeued, r->lost, r->cancelled);
      job_events.Notify();
    }
    seen = shutdown_wake.Wait(seen, cfg.reap_interval);
  }
}

void Controller::Impl::GcLoop() {
  uint64_t seen = shutdown_wake.generation();
  while (!stopping) {
    seen = shutdown_wake.Wait(seen, cfg.cas_gc_interval);
    if (stopping) break;
    auto began = std::chrono::steady_clock::now();
    if (auto n = queue->ExpireActionCache(cfg.action_cache_max_age); !n.ok()) {
      spdlog::warn("action cache expiry failed: {}", n.status().message());
    } else if (*n > 0) {
      spdlog::info("action cache: dropped {} entries unused for {} s", *n, cfg.action_cache_max_age.count() / 1000);
    }
    if (auto n = compile_cache->Expire(cfg.compile_cache_max_age); !n.ok()) {
      spdlog::warn("compile cache expiry failed: {}", n.status().message());
    } else if (*n > 0) {
      spdlog::info("compile cache: dropped {} results unused for {} s", *n, cfg.compile_cache_max_age.count() / 1000);
    }
    auto st = cas->Collect();
    if (!st.ok()) {
      spdlog::warn("CAS collection failed: {}", st.status().message());
      continue;
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count();
    if (st->blobs_removed > 0 || st->trees_removed > 0) {
      spdlog::info("CAS collection: removed {} blobs ({} bytes) and {} tree nodes, kept {} blobs ({} bytes) in {} ms",
                   st->blobs_removed, st->bytes_removed, st->trees_removed, st->blobs_kept, st->bytes_kept, ms);
    } else {
      spdlog::debug("CAS collection: nothing to remove, {} blobs ({} bytes) in {} ms", st->blobs_kept,
                    st->bytes_kept, ms);
    }
  }
}

void Controller::Impl::ConfigLoop() {
  uint64_t seen = config_wake.generation();
  while (!stopping) {
    Status s = projects->Refresh(false);
    if (!s.ok()) spdlog::warn("project configuration refresh failed: {}", s.message());
    seen = config_wake.Wait(seen, cfg.config_poll_interval);
  }
}

void Controller::Impl::NotifyLoop() {
  // One NOTIFY covers every submit committed before it is sent, so bursts of
  // submits cost one NOTIFY per round trip, not one each.
  uint64_t seen = remote_wake.generation();
  while (!stopping) {
    uint64_t now = remote_wake.Wait(seen, std::chrono::seconds(1));
    if (now == seen) continue;
    seen = now;
    Status s = queue->NotifyJobs();
    if (!s.ok()) spdlog::warn("{}", s.message());
  }
}

void Controller::Impl::OnNotify(const std::string& channel, const std::string& payload) {
  if (channel == "kiln_jobs") {
    dispatch_wake.Notify();
  } else if (channel == "kiln_config") {
    config_wake.Notify();
  } else if (channel == "kiln_cancel") {
    // payload: "<job id> <attempt> <worker id>"
    std::istringstream in(payload);
    int64_t id = 0;
    int attempt = 0;
    std::string worker;
    in >> id >> attempt >> worker;
    if (auto s = registry.Find(worker)) {
      v1::ControllerMessage m;
      auto* c = m.mutable_cancel();
      c->set_job_id(id);
      c->set_attempt(attempt);
      c->set_reason("cancelled by a user");
      spdlog::info("forwarding cancel job_id={} attempt={} worker_id={}", id, attempt, worker);
      s->Send(m);
    }
    job_events.Notify();
   } else if (channel == "kiln_workspace") {
    // payload: "<worker id> <project> <name>" (kiln workspace rm)
    std::istringstream in(payload);
    std::string worker, project, name;
    in >> worker >> project >> name;
    if (auto s = registry.Find(worker)) {
      spdlog::info("forwarding workspace removal project={} name={} worker_id={}", project, name, worker);
      s->Send(DropMessage(project, name));
    }
  }
}

// ---- composition ----

Controller::Controller(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Controller::~Controller() {
  Shutdown();
  for (auto& t : impl_->threads) {
    if (t.joinable()) t.join();
  }
  if (impl_->listener) impl_->listener->Stop();
}

std::string Controller::address() const { return impl_->bound_address; }

Result<std::unique_ptr<Controller>> Controller::Create(const config::ControllerConfig& cfg) {
  auto impl = std::make_unique<Impl>();
  impl->cfg = cfg;
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  impl->controller_id = std::string(host) + "-" + RandomHex(3);

  if (cfg.migrate_on_start) {
    auto m = db::Migrate(cfg.database_url);
    if (!m.ok()) return m.status();
    for (const auto& name : m->applied) spdlog::info("applied migration {}", name);
  } else {
    auto v = db::SchemaVersion(cfg.database_url);
    if (!v.ok()) return v.status();
    if (*v < db::LatestVersion()) {
      return FailedPrecondition("database schema is at version " + std::to_string(*v) + ", this kiln needs " +
                                std::to_string(db::LatestVersion()) + ": run kiln-controller migrate");
    }
  }
  auto q = queue::Queue::Create(cfg.database_url, static_cast<size_t>(cfg.db_pool_size));
  if (!q.ok()) return q.status();
  impl->queue = std::move(q).value();
  impl->projects = std::make_unique<ProjectCache>(impl->queue.get());
  KILN_RETURN_IF_ERROR(impl->projects->Refresh(true));

  auto cas = Cas::Open(cfg);
  if (!cas.ok()) return cas.status();
  impl->cas = std::move(cas).value();

  impl->job_service = MakeJobService(impl.get());
  impl->admin_service = MakeAdminService(impl.get());
  impl->worker_service = MakeWorkerService(impl.get());
  impl->cas_service = MakeCasService(impl->cas.get());
  impl->image_service = MakeImageService(impl->cas.get());
  impl->compile_cache = std::make_unique<cache::CompileCacheStore>(cfg.database_url, 4);
  impl->cache_service = MakeCacheService(impl.get());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(cfg.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(impl->job_service.get());
  builder.RegisterService(impl->admin_service.get());
  builder.RegisterService(impl->worker_service.get());
  builder.RegisterService(impl->cas_service.get());
  builder.RegisterService(impl->image_service.get());
  builder.RegisterService(impl->cache_service.get());
  builder.SetMaxReceiveMessageSize(16 << 20);
  // Find peers that stopped reading (a blocked Write would otherwise wait forever).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  impl->server = builder.BuildAndStart();
  if (!impl->server || port == 0) {
    return Unavailable("cannot listen on " + cfg.listen + ": address in use or invalid (set listen or --listen)");
  }
  std::string addr = cfg.listen;
  auto colon = addr.rfind(':');
  if (colon != std::string::npos && addr.rfind("unix:", 0) != 0) addr = addr.substr(0, colon + 1) + std::to_string(port);
  impl->bound_address = addr;
  impl->server->GetHealthCheckService()->SetServingStatus("kiln.v1.JobService", true);
  impl->server->GetHealthCheckService()->SetServingStatus("kiln.v1.WorkerService", true);
  impl->server->GetHealthCheckService()->SetServingStatus("kiln.v1.CasService", true);
  impl->server->GetHealthCheckService()->SetServingStatus("kiln.v1.ImageService", true);
  impl->server->GetHealthCheckService()->SetServingStatus("kiln.v1.CacheService", true);

  auto* raw = impl.get();
  impl->listener = std::make_unique<queue::Listener>(
      cfg.database_url, std::vector<std::string>{"kiln_jobs", "kiln_cancel", "kiln_config", "kiln_workspace"},
      [raw](const std::string& ch, const std::string& p) { raw->OnNotify(ch, p); },
      [raw] {
        raw->dispatch_wake.Notify();
        raw->config_wake.Notify();
      });
  return std::unique_ptr<Controller>(new Controller(std::move(impl)));
}

void Controller::Run() {
  auto& i = *impl_;
  i.listener->Start();
  i.threads.emplace_back([&i] { i.DispatchLoop(); });
  i.threads.emplace_back([&i] { i.ApplyLoop(); });
  i.threads.emplace_back([&i] { i.ReapLoop(); });
  i.threads.emplace_back([&i] { i.ConfigLoop(); });
  i.threads.emplace_back([&i] { i.NotifyLoop(); });
  i.threads.emplace_back([&i] { i.GcLoop(); });
  if (!i.cfg.address_file.empty()) {
    std::string tmp = i.cfg.address_file + ".tmp";
    std::ofstream(tmp) << i.bound_address << "\n";
    std::rename(tmp.c_str(), i.cfg.address_file.c_str());
  }
  spdlog::info("kiln-controller {} serving on {} (controller_id={})", kVersion, i.bound_address, i.controller_id);
  sd_notify(0, "READY=1");
  i.server->Wait();
}

void Controller::Shutdown() {
  auto& i = *impl_;
  if (i.stopping.exchange(true)) return;
  sd_notify(0, "STOPPING=1");
  spdlog::info("shutting down: closing worker streams (their jobs stay with them), ending client streams");
  i.dispatch_wake.Notify();
  i.shutdown_wake.Notify();
  i.remote_wake.Notify();
  i.job_events.Notify();
  i.config_wake.Notify();
  i.events_cv.notify_all();
  for (auto& s : i.registry.All()) s->Close();
  // Our handlers notice `stopping` within 250 ms; anything still open after
  // a second is cancelled.
  auto began = std::chrono::steady_clock::now();
  if (i.server) i.server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  spdlog::info("server stopped in {} ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::steady_clock::now() - began).count());
  // Threads are joined by the destructor, on the thread that owns them.
}

}  // namespace kiln::controller
