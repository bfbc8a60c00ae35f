#include "controller/controller.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "api/convert.h"
#include "auth/secrets.h"
#include "audit/audit_store.h"
#include "cluster/instance_store.h"
#include "cluster/state_store.h"
#include "controller/autoscaler.h"
#include "controller/deployer.h"
#include "auth/trust_store.h"
#include "auth/x509.h"
#include "cache/action_store.h"
#include "cache/compile_store.h"
#include "common/util.h"
#include "common/version.h"
#include "controller/actions.h"
#include "controller/admin_service.h"
#include "controller/health.h"
#include "controller/cas.h"
#include "controller/compile_service.h"
#include "controller/enroll.h"
#include "controller/guard.h"
#include "controller/scopes.h"
#include "cas/scope_store.h"
#include "controller/job_service.h"
#include "controller/grpc_metrics.h"
#include "controller/log_quota.h"
#include "controller/metrics.h"
#include "controller/project_cache.h"
#include "controller/reports.h"
#include "controller/sessions.h"
#include "controller/signal.h"
#include "controller/worker_service.h"
#include "db/leader.h"
#include "db/migrate.h"
#include "db/pool_stats.h"
#include "metrics/server.h"
#include "queue/catalog_store.h"
#include "queue/dispatch_store.h"
#include "queue/gauge_store.h"
#include "queue/job_store.h"
#include "queue/listener.h"
#include "queue/log_store.h"
#include "queue/open_pool.h"
#include "queue/stats_store.h"
#include "queue/worker_store.h"

namespace kiln::controller {

// The composition root's state: the stores on one pool, the in-memory
// state, the signals, the services (each built from the parts it uses) and
// the background loops, which are the controller's own.
struct Controller::Impl {
  config::ControllerConfig cfg;
  std::string controller_id;
  // The health checker's thresholds: reloadable (Controller::Reload).
  std::shared_ptr<HealthSettings> health;

  std::shared_ptr<db::Pool> pool;  // shared by the queue's stores
  std::unique_ptr<queue::JobStore> jobs;
  std::unique_ptr<queue::DispatchStore> dispatch;
  std::unique_ptr<queue::WorkerStore> workers;
  std::unique_ptr<queue::CatalogStore> catalog;
  std::unique_ptr<cache::ActionCacheStore> action_cache;
  std::unique_ptr<queue::LogStore> logs;
  std::unique_ptr<queue::StatsStore> stats;
  std::unique_ptr<cluster::StateStore> cluster_state;  // clusters' desired state (kiln clusters set)
  std::unique_ptr<cluster::InstanceStore> cluster_instances;
  std::unique_ptr<Deployer> deployer;  // kiln clusters plan / apply
  std::unique_ptr<Autoscaler> autoscaler;  // on the leader, every autoscale_interval
  // The CAS directory at its last collection, for the samples (-1: not yet).
  std::atomic<int64_t> cas_blobs{-1}, cas_bytes{-1};
  std::unique_ptr<cache::CompileCacheStore> compile_cache;
  std::unique_ptr<Cas> cas;
  std::unique_ptr<ProjectCache> projects;
  std::unique_ptr<auth::TrustStore> trust;
  std::unique_ptr<audit::AuditStore> audit;
  std::unique_ptr<Guard> guard;
  std::unique_ptr<Enroller> enroller;
  std::unique_ptr<cas::ScopeStore> scope_store;
  std::unique_ptr<ContentScopes> scopes;
  std::unique_ptr<auth::SecretBox> secrets;  // null: no secrets key, secret env is refused

  // Metrics (docs/operations.md, "Metrics"): this controller's own, and the
  // farm's gauges, which only the leader reads and exports.
  ControllerMetrics metrics;
  std::unique_ptr<queue::GaugeStore> gauges;
  std::unique_ptr<db::Leader> leader;
  std::unique_ptr<metrics::Server> metrics_server;  // null: metrics_address is empty
  // Jobs claimed here, until their final report: their project and when
  // they were claimed (queue wait and run time are observed at the end).
  struct InFlight {
    std::string project;
    int64_t claimed_ms = 0;
    double since_submit_s = 0;
  };
  uint64_t pool_errors_seen = 0;  // the pool's error count at the last scrape (under the registry's lock)
  // Dropped streams waiting out the reconnect grace, in the order they
  // dropped (a revoked worker's first): the applier's, read by the reaper,
  // which leaves their workers to the drop.
  std::mutex parked_mu;
  std::deque<Event> parked;
  std::mutex flight_mu;
  std::unordered_map<int64_t, InFlight> in_flight;

  Registry registry;
  ActionBroker actions{ActionBroker::Options{}, metrics.actions};  // remote actions, in memory (docs/architecture.md, "Remote actions")
  ReportQueue reports;  // worker updates, applied by one thread in batches
  std::atomic<bool> stopping{false};

  Signal dispatch_wake;  // new jobs or freed slots
  Signal job_events;     // something about some job changed (for WatchJob)
  Signal config_wake;    // NOTIFY kiln_config
  Signal shutdown_wake;  // Shutdown() was called
  Signal remote_wake;    // jobs were submitted here: tell the other controllers

  std::unique_ptr<grpc::Service> job_service, admin_service, worker_service, cas_service, image_service, cache_service,
      enroll_service;
  std::unique_ptr<grpc::Server> server;
  std::string bound_address;
  std::unique_ptr<queue::Listener> listener;
  std::vector<std::thread> threads;

  void DispatchLoop();
  // A claimed job whose secret env cannot be opened fails, saying why.
  void FailUnopened(const Session& s, const queue::Claimed& job, const Status& why);
  void ApplyLoop();
  void ApplyDrop(const Event& drop);
  std::vector<std::string> ParkedWorkers() {
    std::lock_guard g(parked_mu);
    std::vector<std::string> out;
    for (const auto& e : parked) out.push_back(e.session->worker_id);
    return out;
  }
  void ReapLoop();
  void ConfigLoop();
  void NotifyLoop();
  void GcLoop();
  void LogPruneLoop();
  void SampleLoop();
  void TokenUseLoop();
  void FarmGaugeLoop();
  void ScaleLoop();
  // Counts a job's end: its outcome, and how long it waited and ran.
  void CountEnd(const queue::UpdateOutcome& o, const queue::Update* u);
  void OnNotify(const std::string& channel, const std::string& payload);
};

// ---- background loops ----

void Controller::Impl::FailUnopened(const Session& s, const queue::Claimed& job, const Status& why) {
  spdlog::error("cannot open the secret env of job_id={} attempt={}: {}", job.id, job.attempt, why.message());
  queue::Update u;
  u.worker_id = s.worker_id;
  u.job_id = job.id;
  u.attempt = job.attempt;
  u.status = queue::JobStatus::kFailed;
  u.result = queue::JobResult{};
  u.result->error = "cannot open its secret env: " + why.message();
  u.started_ms = u.finished_ms = NowUnixMs();
  auto out = dispatch->Apply({u}, {});
  if (!out.ok()) spdlog::warn("cannot fail job_id={}: {}", job.id, out.status().message());
  if (out.ok()) {
    for (const auto& o : *out) CountEnd(o, &u);
  }
  job_events.Notify();
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
      auto claimed = dispatch->Claim(s->worker_id, s->session_id, free, cfg.workspace_grace);
      if (!claimed.ok()) {
        spdlog::warn("claim failed: {}", claimed.status().message());
        break;
      }
      for (auto& job : *claimed) {
        v1::ControllerMessage m;
        auto* a = m.mutable_assign();
        if (!job.sealed_secrets.empty()) {
          auto values = secrets ? secrets->Open(job.sealed_secrets)
                                : Result<std::map<std::string, std::string>>(FailedPrecondition(
                                      "controller " + controller_id + " has no secrets key (tls_dir/secrets.key): "
                                      "every controller of the farm needs the same one"));
          if (!values.ok()) {
            FailUnopened(*s, job, values.status());
            continue;
          }
          for (auto& [name, value] : *values) (*a->mutable_secret_env())[name] = std::move(value);
        }
        s->Assigned(job.id);
        metrics.jobs.dispatch_latency.Observe(std::max(0.0, job.since_queued_s));
        {
          std::lock_guard g(flight_mu);
          in_flight[job.id] = {job.project, NowUnixMs(), job.since_submit_s};
        }
        a->set_job_id(job.id);
        a->set_attempt(job.attempt);
        a->set_project(job.project);
        // Its own slot's compile, and one for each remote action slot of the cluster.
        a->set_parallelism(1 + actions.Slots(s->cluster));
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
  // Dropped streams wait out the reconnect grace in `parked` (one grace for
  // all); a worker that registers again meanwhile keeps its jobs (the drop
  // is fenced by its session). Only this thread adds or removes: a drop
  // leaves `parked` once applied, so the reaper skips its worker until then.
  const auto grace = std::min(cfg.reconnect_grace, cfg.lease);
  while (true) {
    bool waiting = false;
    for (;;) {
      Event due;
      {
        std::lock_guard g(parked_mu);
        waiting = !parked.empty();
        if (!waiting || !(parked.front().session->revoked ||
                          std::chrono::steady_clock::now() >= parked.front().at + grace))
          break;
        due = parked.front();
      }
      ApplyDrop(due);
      std::lock_guard g(parked_mu);
      parked.pop_front();
    }
    Event drop;
    auto took = reports.Take(batch, drop, kMaxBatch,
                             waiting ? std::chrono::milliseconds(50) : std::chrono::milliseconds(200), stopping);
    if (took == ReportQueue::Took::kNothing) {
      if (stopping) {
        std::lock_guard g(parked_mu);
        for (const auto& p : parked)
          spdlog::info("worker disconnected worker_id={}: its jobs are requeued when its lease expires, unless it "
                       "comes back (this controller is stopping)",
                       p.session->worker_id);
        return;
      }
      continue;
    }
    if (took == ReportQueue::Took::kDrop) {
      if (grace.count() > 0 && !drop.session->revoked)
        spdlog::info("worker stream closed worker_id={} jobs={}: requeued in {} ms unless it registers again",
                     drop.session->worker_id, drop.session->Running(), grace.count());
      std::lock_guard g(parked_mu);
      if (drop.session->revoked) parked.push_front(std::move(drop));  // it cannot come back
      else parked.push_back(std::move(drop));
      continue;
    }
    std::vector<queue::Update> updates;
    std::vector<queue::LogAppend> logs;
    std::map<std::pair<int64_t, int>, std::shared_ptr<Session>> senders;
    std::map<std::pair<int64_t, int>, size_t> last;  // the update each outcome answers
    for (auto& e : batch) {
      if (e.kind == Event::kLog) {
        logs.push_back(e.log);
      } else {
        last[{e.update.job_id, e.update.attempt}] = updates.size();
        updates.push_back(e.update);
        senders[{e.update.job_id, e.update.attempt}] = e.session;
      }
    }
    std::vector<queue::EndedJob> completed;  // jobs that waited for an identical one
    auto outcomes = dispatch->Apply(updates, logs, &completed);
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
    CountEnded(metrics.jobs, completed);
    for (const auto& o : *outcomes) {
      auto& s = senders[{o.job_id, o.attempt}];
      // The status is the stored one if applied, else the one reported.
      bool final_report = o.status != queue::JobStatus::kRunning;
      if (o.applied && final_report) {
        auto k = last.find({o.job_id, o.attempt});
        CountEnd(o, k == last.end() ? nullptr : &updates[k->second]);
      }
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

void Controller::Impl::CountEnd(const queue::UpdateOutcome& o, const queue::Update* u) {
  std::optional<InFlight> f;
  {
    std::lock_guard g(flight_mu);
    if (auto it = in_flight.find(o.job_id); it != in_flight.end()) {
      f = std::move(it->second);
      in_flight.erase(it);
    }
  }
  if (o.status == queue::JobStatus::kQueued) return;  // handed back: it runs again
  if (!f) {
    // Claimed by another controller (its worker reconnected here): one read.
    auto job = jobs->Get(o.job_id);
    if (!job.ok()) {
      spdlog::warn("job_id={} ended but is not counted in metrics: {}", o.job_id, job.status().message());
      return;
    }
    f = InFlight{job->project, 0, 0};
  }
  metrics.jobs.finished.With({{"project", f->project}, {"outcome", queue::ToString(o.status)}}).Inc();
  if (u == nullptr || u->started_ms <= 0 || u->finished_ms < u->started_ms) return;
  metrics.jobs.run_time.With({{"project", f->project}}).Observe(static_cast<double>(u->finished_ms - u->started_ms) / 1000.0);
  if (f->claimed_ms > 0) {
    // From the submit to the claim (the database's clock), then to the start (the worker's).
    double wait = f->since_submit_s + static_cast<double>(std::max<int64_t>(0, u->started_ms - f->claimed_ms)) / 1000.0;
    metrics.jobs.queue_wait.With({{"project", f->project}}).Observe(std::max(0.0, wait));
  }
}

// The autoscaler runs on the farm's leader only: one controller at a time
// sizes the clusters and starts their workers (a new leader goes on from
// the decisions in the database).
void Controller::Impl::ScaleLoop() {
  uint64_t seen = shutdown_wake.generation();
  while (!stopping) {
    if (leader->IsLeader()) autoscaler->Tick();
    seen = shutdown_wake.Wait(seen, cfg.autoscale_interval);
  }
}

void Controller::Impl::FarmGaugeLoop() {
  // Series seen at the last read: those gone since are dropped, not left at
  // their last value.
  std::set<std::pair<std::string, std::string>> queued_seen;
  std::set<std::string> clusters_seen;
  uint64_t seen = shutdown_wake.generation();
  bool warned = false;
  while (!stopping) {
    if (leader->IsLeader()) {
      auto g = gauges->Read();
      if (!g.ok()) {
        if (!warned) spdlog::warn("farm gauges not updated: {}", g.status().message());
        warned = true;
      } else {
        warned = false;
        auto& f = metrics.farm_gauges;
        std::set<std::pair<std::string, std::string>> queued_now;
        for (const auto& q : g->queued) {
          f.queued.With({{"project", q.project}, {"cluster", q.cluster}}).Set(static_cast<double>(q.jobs));
          queued_now.insert({q.project, q.cluster});
        }
        for (const auto& [project, cluster] : queued_seen) {
          if (!queued_now.count({project, cluster})) f.queued.With({{"project", project}, {"cluster", cluster}}).Set(0);
        }
        queued_seen.insert(queued_now.begin(), queued_now.end());
        std::set<std::string> clusters_now;
        for (const auto& c : g->clusters) {
          metrics::Labels l{{"cluster", c.cluster}};
          f.workers.With(l).Set(static_cast<double>(c.workers));
          f.slots.With(l).Set(static_cast<double>(c.slots));
          f.slots_busy.With(l).Set(static_cast<double>(c.busy));
          f.unhealthy.With(l).Set(static_cast<double>(c.unhealthy));
          clusters_now.insert(c.cluster);
        }
        for (const auto& c : clusters_seen) {
          if (clusters_now.count(c)) continue;
          for (auto* fam : {&f.workers, &f.slots, &f.slots_busy, &f.unhealthy}) fam->Remove({{"cluster", c}});
        }
        clusters_seen = std::move(clusters_now);
      }
    }
    {
      // Jobs claimed here whose end another controller saw (their worker
      // moved) are forgotten after a week.
      const int64_t old = NowUnixMs() - 7LL * 86'400'000;
      std::lock_guard lk(flight_mu);
      std::erase_if(in_flight, [old](const auto& e) { return e.second.claimed_ms < old; });
    }
    seen = shutdown_wake.Wait(seen, std::chrono::seconds(2));
  }
}

void Controller::Impl::ApplyDrop(const Event& drop) {
  const auto& s = drop.session;
  for (auto backoff = std::chrono::milliseconds(50);; backoff = std::min(backoff * 2, std::chrono::milliseconds(2000))) {
    auto r = dispatch->DropWorker(s->worker_id, s->session_id, drop.why);
    if (r.ok() && r->fenced) {
      spdlog::info("worker came back within the grace worker_id={}: its jobs stay with it", s->worker_id);
      break;
    }
    if (r.ok()) {
      spdlog::info("worker disconnected worker_id={} requeued={} lost={} cancelled={}", s->worker_id, r->requeued,
                   r->lost, r->cancelled);
      CountEnded(metrics.jobs, r->ended);
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

// A lease is taken only by a reaper that watched for a whole lease: one that
// started, could not reach the database, or was itself stalled (stopped,
// starved of CPU) meanwhile gives the workers a lease to heartbeat first. A
// lease that expired while no controller recorded heartbeats says nothing of
// the worker. The controller's own stall is seen as a gap between passes
// (the start of one to the start of the next) that overran its wait by half
// of (lease - heartbeat_interval): no shorter stall can expire a lease by
// itself. Deferrals end after three leases without a pass that took leases:
// a controller that stalls or loses its database more often than once a
// lease still reaps, late.
void Controller::Impl::ReapLoop() {
  using Clock = std::chrono::steady_clock;
  uint64_t seen = shutdown_wake.generation();
  auto watching_since = Clock::now(), last_taken = Clock::now(), last_pass = Clock::now();
  bool waiting_said = true;  // (the watch after its start)
  const auto slack = std::max(cfg.heartbeat_interval, (cfg.lease - cfg.heartbeat_interval) / 2);
  const auto ms = [](Clock::duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  spdlog::info("lease reaper: watching for {} ms before it takes any lease, so workers can heartbeat", cfg.lease.count());
  while (!stopping) {
    const auto now = Clock::now();
    if (auto gap = now - last_pass; gap > cfg.reap_interval + slack) {
      spdlog::warn("controller stalled: {} ms between lease reaper passes ({} ms expected); workers get a lease to "
                   "heartbeat before any is taken",
                   ms(gap), cfg.reap_interval.count());
      watching_since = now;
      waiting_said = true;
    }
    // From this pass's start: a stop during its query or its wait is seen
    // by the next pass (a slow query looks like a stall: it only defers).
    last_pass = now;
    const bool watched = now - watching_since >= cfg.lease, overdue = now - last_taken >= 3 * cfg.lease;
    if (watched || overdue) {
      if (!watched)
        spdlog::warn("lease reaper: taking expired leases after deferring them for {} ms (stalls or database errors)",
                     ms(now - last_taken));
      else if (waiting_said)
        spdlog::info("lease reaper: taking expired leases");
      if (auto r = dispatch->Reap(ParkedWorkers()); !r.ok()) {
        spdlog::warn("lease reaper: {}; expired leases are taken a lease after the database answers again",
                     r.status().message());
        watching_since = Clock::now();
        waiting_said = true;
      } else {
        waiting_said = false;
        last_taken = Clock::now();
        if (!r->job_ids.empty()) {
          spdlog::info("expired leases: requeued={} lost={} cancelled={}", r->requeued, r->lost, r->cancelled);
          CountEnded(metrics.jobs, r->ended);
          job_events.Notify();
        }
      }
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
    if (auto n = action_cache->Expire(cfg.action_cache_max_age); !n.ok()) {
      spdlog::warn("action cache expiry failed: {}", n.status().message());
    } else if (*n > 0) {
      spdlog::info("action cache: dropped {} entries unused for {} s", *n, cfg.action_cache_max_age.count() / 1000);
    }
    if (auto n = compile_cache->Expire(cfg.compile_cache_max_age); !n.ok()) {
      spdlog::warn("compile cache expiry failed: {}", n.status().message());
    } else if (*n > 0) {
      spdlog::info("compile cache: dropped {} results unused for {} s", *n, cfg.compile_cache_max_age.count() / 1000);
    }
    if (cfg.audit_retention.count() > 0) {
      if (auto n = audit->Prune(cfg.audit_retention); !n.ok()) {
        spdlog::warn("audit trail pruning failed: {}", n.status().message());
      } else if (*n > 0) {
        spdlog::info("audit trail: pruned {} rows older than {} s", *n, cfg.audit_retention.count() / 1000);
      }
      // The autoscaler's decisions are kept as long as the audit trail.
      if (auto n = cluster_instances->PruneDecisions(cfg.audit_retention); !n.ok()) {
        spdlog::warn("autoscaler decisions pruning failed: {}", n.status().message());
      } else if (*n > 0) {
        spdlog::info("autoscaler decisions: pruned {} rows older than {} s", *n, cfg.audit_retention.count() / 1000);
      }
    }
    auto st = cas->Collect();
    if (!st.ok()) {
      spdlog::warn("CAS collection failed: {}", st.status().message());
      continue;
    }
    if (Status f = scope_store->Forget(st->removed); !f.ok()) spdlog::warn("{}", f.message());
    cas_blobs = st->blobs_kept;
    cas_bytes = st->bytes_kept;
    metrics.farm_gauges.cas_blobs.With().Set(static_cast<double>(st->blobs_kept));
    metrics.farm_gauges.cas_bytes.With().Set(static_cast<double>(st->bytes_kept));
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

void Controller::Impl::LogPruneLoop() {
  uint64_t seen = shutdown_wake.generation();
  while (!stopping) {
    seen = shutdown_wake.Wait(seen, cfg.log_prune_interval);
    if (stopping) break;
    (void)PruneLogs(*logs, *projects, cfg, stopping);  // logged there; the next pass tries again
  }
}

// The farm's history: a sample every sample_interval (one controller's per
// interval bucket), and the day partitions kept from today to two days ahead
// and dropped past sample_retention, at start and every hour.
void Controller::Impl::SampleLoop() {
  constexpr auto kMaintainEvery = std::chrono::hours(1);
  constexpr int kDaysAhead = 2;
  auto maintain = [&] {
    auto done = stats->Maintain(kDaysAhead, cfg.sample_retention);
    if (!done.ok()) {
      spdlog::warn("{}", done.status().message());
      return false;
    }
    for (const auto& what : *done) spdlog::info("samples: partition {}", what);
    return true;
  };
  bool maintained = maintain();
  auto last_maintained = std::chrono::steady_clock::now();
  uint64_t seen = shutdown_wake.generation();
  while (!stopping) {
    seen = shutdown_wake.Wait(seen, cfg.sample_interval);
    if (stopping) break;
    if (!maintained || std::chrono::steady_clock::now() - last_maintained >= kMaintainEvery) {
      maintained = maintain();
      last_maintained = std::chrono::steady_clock::now();
    }
    auto n = stats->Sample(cfg.sample_interval, {cas_blobs.load(), cas_bytes.load()});
    if (!n.ok()) {
      spdlog::warn("{}", n.status().message());
      if (n.status().code() == Code::kFailedPrecondition) maintained = false;  // make today's partition
    }
  }
}

void Controller::Impl::TokenUseLoop() {
  // last_used_at of tokens: one UPDATE a minute, not one per call.
  uint64_t seen = shutdown_wake.generation();
  while (!stopping) {
    seen = shutdown_wake.Wait(seen, std::chrono::seconds(60));
    if (Status s = trust->TouchTokens(guard->TakeUsed()); !s.ok()) spdlog::warn("{}", s.message());
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
    Status s = dispatch->NotifyJobs();
    if (!s.ok()) spdlog::warn("{}", s.message());
  }
}

void Controller::Impl::OnNotify(const std::string& channel, const std::string& payload) {
  if (channel == "kiln_jobs") {
    dispatch_wake.Notify();
  } else if (channel == "kiln_revoke") {
    // payload: "token <id>" or "worker <worker id>"
    guard->Forget(payload);
    if (payload.rfind("worker ", 0) == 0) {
      if (auto s = registry.Find(payload.substr(7))) {
        spdlog::info("closing the stream of revoked worker worker_id={}", s->worker_id);
        s->Close();
      }
    }
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

// TLS for every caller: the server's certificate for all; a client
// certificate is asked for and, when sent, must chain to a trusted CA (a
// worker). Clients without one authenticate with a token instead. The files
// are watched: a renewed server certificate, or a CA added to trusted.crt,
// is served from the next handshake on, without a restart.
Result<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(const std::string& dir) {
  const std::string trusted_file = std::filesystem::exists(dir + "/trusted.crt") ? dir + "/trusted.crt" : dir + "/ca.crt";
  auto cert = auth::ReadFile(dir + "/server.crt");
  auto key = auth::ReadFile(dir + "/server.key");
  auto trusted = auth::ReadFile(trusted_file);
  for (const auto* r : {&cert, &key, &trusted}) {
    if (!r->ok()) {
      return FailedPrecondition("no TLS certificates: " + r->status().message() +
                                " (create them with kiln-controller certs init --dir " + dir +
                                ", or set insecure = true to serve plaintext on a loopback address)");
    }
  }
  if (!auth::KeyMatchesCert(*key, *cert)) {
    return InvalidArgument(dir + "/server.key does not belong to " + dir + "/server.crt");
  }
  if (Status s = auth::VerifyCert(*cert, *trusted, auth::CertPurpose::kServer); !s.ok()) {
    return InvalidArgument(dir + "/server.crt: " + s.message());
  }
  namespace ex = grpc::experimental;
  auto files = std::make_shared<ex::FileWatcherCertificateProvider>(dir + "/server.key", dir + "/server.crt",
                                                                     trusted_file, 60);
  ex::TlsServerCredentialsOptions o(files);
  o.watch_root_certs();
  o.watch_identity_key_cert_pairs();
  o.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(o);
}

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
  impl->health = std::make_shared<HealthSettings>(ThresholdsOf(cfg));

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
  auto pool = queue::OpenPool(cfg.database_url, static_cast<size_t>(cfg.db_pool_size));
  if (!pool.ok()) return pool.status();
  impl->pool = std::move(pool).value();
  impl->jobs = std::make_unique<queue::JobStore>(*impl->pool);
  impl->dispatch = std::make_unique<queue::DispatchStore>(*impl->pool, cfg.job_timings);
  impl->workers = std::make_unique<queue::WorkerStore>(*impl->pool);
  impl->catalog = std::make_unique<queue::CatalogStore>(*impl->pool);
  impl->action_cache = std::make_unique<cache::ActionCacheStore>(*impl->pool);
  impl->logs = std::make_unique<queue::LogStore>(*impl->pool);
  impl->stats = std::make_unique<queue::StatsStore>(*impl->pool);
  impl->cluster_state = std::make_unique<cluster::StateStore>(*impl->pool);
  impl->cluster_instances = std::make_unique<cluster::InstanceStore>(*impl->pool);
  impl->projects = std::make_unique<ProjectCache>(*impl->catalog);
  impl->trust = std::make_unique<auth::TrustStore>(*impl->pool);
  impl->audit = std::make_unique<audit::AuditStore>(*impl->pool);
  impl->gauges = std::make_unique<queue::GaugeStore>(*impl->pool);
  impl->guard = std::make_unique<Guard>(*impl->trust, !cfg.insecure);
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (cfg.insecure) {
    spdlog::warn("insecure = true: serving plaintext gRPC on {}; anyone who can reach it reads tokens off the wire, "
                 "and workers are whoever they say they are", cfg.listen);
    impl->enroller = Enroller::Disabled(*impl->trust, "this controller serves without TLS (insecure = true): "
                                                      "workers connect with insecure = true and need no enrolment");
    creds = grpc::InsecureServerCredentials();
  } else {
    auto tls = ServerCredentials(cfg.tls_dir);
    if (!tls.ok()) return tls.status();
    creds = *tls;
    auto e = Enroller::Load(*impl->trust, cfg.tls_dir, cfg.worker_cert_validity);
    if (!e.ok()) return e.status();
    impl->enroller = std::move(e).value();
  }
  {
    const std::string key_file = cfg.secrets_key_file.empty() ? cfg.tls_dir + "/secrets.key" : cfg.secrets_key_file;
    auto box = auth::SecretBox::Load(key_file);
    if (box.ok()) {
      impl->secrets = std::make_unique<auth::SecretBox>(std::move(box).value());
      spdlog::info("secrets key loaded file={} key_id={}", key_file, impl->secrets->KeyId());
    } else if (box.status().code() == Code::kNotFound) {
      spdlog::warn("no secrets key file={}: submits with secret env are refused (kiln-controller certs init "
                   "creates it; every controller needs the same one)", key_file);
    } else {
      return box.status();
    }
  }
  KILN_RETURN_IF_ERROR(impl->projects->Refresh(true));

  auto cas = Cas::Open(cfg);
  if (!cas.ok()) return cas.status();
  impl->cas = std::move(cas).value();
  impl->compile_cache = std::make_unique<cache::CompileCacheStore>(cfg.database_url, 4);
  impl->scope_store = std::make_unique<cas::ScopeStore>(*impl->pool);
  impl->scopes = std::make_unique<ContentScopes>(*impl->scope_store, *impl->projects, impl->cas->trees());
  impl->scopes->SetLender([a = &impl->actions](const std::string& worker, const std::vector<std::string>& hashes,
                                               std::unordered_set<std::string>& out) { a->LentTo(worker, hashes, out); });

  // Each service gets what it uses, and nothing else.
  auto& i = *impl;
  i.job_service = MakeJobService({*i.guard, *i.scopes, *i.jobs, *i.projects, i.cas->trees(), i.cas->blobs(), i.cas->images(),
                                  cfg.cas_max_tree_files, *i.compile_cache, i.secrets.get(), i.dispatch_wake,
                                  i.remote_wake, i.job_events, i.stopping, i.metrics.jobs});
  auto disconnect = [&i](const std::string& worker_id) {
    auto s = i.registry.Find(worker_id);
    if (s) {
      s->revoked = true;
      s->Close();
    }
    return s != nullptr;
  };
  {
    std::error_code ec;
    auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    DeployerDeps dd{*i.cluster_state, *i.cluster_instances, *i.trust,
                    [&i] {
                      // A wildcard listen address: workers on this host dial loopback.
                      std::string a = i.bound_address;
                      for (const char* any : {"0.0.0.0:", "[::]:"})
                        if (a.rfind(any, 0) == 0) a = "127.0.0.1:" + a.substr(std::strlen(any));
                      return a;
                    },
                    cfg.insecure ? std::string() : cfg.tls_dir,
                    (ec ? std::filesystem::path("kiln-worker") : self.parent_path() / "kiln-worker").string(),
                    "/var/lib/kiln-controller/instances", i.controller_id,
                    [&i](const std::string& cluster) {
                      i.metrics.clusters.unregistered.With({{"cluster", cluster}}).Inc();
                    }};
    i.deployer = std::make_unique<Deployer>(std::move(dd));
    i.autoscaler = std::make_unique<Autoscaler>(AutoscalerDeps{
        *i.cluster_state, *i.cluster_instances, *i.deployer,
        [&i](const std::string& cluster) { return i.actions.Queued(cluster); }, i.controller_id,
        cfg.autoscale_interval.count() > 0 ? cfg.autoscale_interval : std::chrono::milliseconds(5000),
        {i.metrics.clusters.decisions, i.metrics.clusters.failures, i.metrics.clusters.desired}});
  }
  i.admin_service = MakeAdminService(
      {*i.guard, *i.trust, disconnect, *i.catalog, *i.workers, i.config_wake, i.dispatch_wake, *i.audit, *i.stats,
       i.cluster_state.get(), i.deployer.get()});
  i.worker_service = MakeWorkerService({*i.guard, *i.enroller, *i.scopes, *i.workers, *i.dispatch, *i.compile_cache, i.cas->blobs(), i.registry,
                                        i.actions, i.reports, i.dispatch_wake, i.stopping, i.controller_id, cfg.lease,
                                        cfg.heartbeat_interval, i.metrics.compiles, i.metrics.jobs, i.health});
  i.cas_service = MakeCasService({*i.guard, *i.scopes, i.cas->blobs(), i.cas->trees(), cfg.cas_max_blob_bytes,
                                  i.metrics.cas});
  i.image_service = MakeImageService({*i.guard, *i.scopes, i.cas->images(), i.cas->blobs()});
  i.cache_service = MakeCacheService({*i.guard, *i.compile_cache, *i.projects});
  i.enroll_service = MakeEnrollService(*i.enroller);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(cfg.listen, creds, &port);
  builder.RegisterService(impl->job_service.get());
  builder.RegisterService(impl->admin_service.get());
  builder.RegisterService(impl->worker_service.get());
  builder.RegisterService(impl->cas_service.get());
  builder.RegisterService(impl->image_service.get());
  builder.RegisterService(impl->cache_service.get());
  builder.RegisterService(impl->enroll_service.get());
  builder.SetMaxReceiveMessageSize(16 << 20);
  {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> counters;
    counters.push_back(CallCounter(impl->metrics.grpc));
    builder.experimental().SetInterceptorCreators(std::move(counters));
  }
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
  // The farm's leader exports the farm's gauges (one controller, so that a
  // sum over controllers counts them once).
  impl->metrics.farm.ExportWhen([raw] { return raw->leader->IsLeader(); });
  impl->metrics.registry.OnScrape([raw] {
    auto st = db::StatsOf(*raw->pool);
    auto& m = raw->metrics.pool;
    m.size.Set(static_cast<double>(st.size));
    m.in_use.Set(static_cast<double>(st.in_use));
    m.waiting.Set(static_cast<double>(st.waiting));
    m.errors.Inc(static_cast<double>(st.errors - raw->pool_errors_seen));
    raw->pool_errors_seen = st.errors;
  });
  impl->metrics.farm_gauges.leader.Set(0);
  impl->leader = db::Leader::Start({cfg.database_url, db::kFarmLeaderLock, std::chrono::seconds(2), impl->controller_id,
                                    [raw](bool leads) { raw->metrics.farm_gauges.leader.Set(leads ? 1 : 0); }});
  if (!cfg.metrics_address.empty()) {
    auto server = metrics::Server::Start(cfg.metrics_address, {&impl->metrics.registry, &impl->metrics.farm});
    if (!server.ok()) return server.status();
    impl->metrics_server = std::move(server).value();
  }
  impl->listener = std::make_unique<queue::Listener>(
      cfg.database_url, std::vector<std::string>{"kiln_jobs", "kiln_cancel", "kiln_config", "kiln_workspace", "kiln_revoke"},
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
  i.threads.emplace_back([&i] { i.LogPruneLoop(); });
  i.threads.emplace_back([&i] { i.TokenUseLoop(); });
  if (i.cfg.sample_interval.count() > 0) i.threads.emplace_back([&i] { i.SampleLoop(); });
  if (i.cfg.autoscale_interval.count() > 0) i.threads.emplace_back([&i] { i.ScaleLoop(); });
  i.threads.emplace_back([&i] { i.FarmGaugeLoop(); });
  if (i.metrics_server) {
    spdlog::info("serving metrics on http://{}/metrics", i.metrics_server->address());
    WriteAddressFile(i.cfg.metrics_address_file, i.metrics_server->address());
  }
  WriteAddressFile(i.cfg.address_file, i.bound_address);
  spdlog::info("kiln-controller {} serving on {} with {} (controller_id={})", kVersion, i.bound_address,
               i.cfg.insecure ? "plaintext (insecure = true)" : "TLS", i.controller_id);
  sd_notify(0, "READY=1");
  i.server->Wait();
}

void Controller::Reload(const config::ControllerConfig& cfg) {
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  impl_->health->Set(ThresholdsOf(cfg));
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
  i.reports.Wake();
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
