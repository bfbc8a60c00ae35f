// WorkerService: one bidirectional stream per connected worker. The handler
// thread reads; the dispatcher, the applier and the listener write.

#include <spdlog/spdlog.h>

#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "controller/worker_service.h"

#include "api/convert.h"
#include "cas/digest.h"
#include "common/util.h"
#include "controller/actions.h"
#include "controller/compile_service.h"
#include "controller/enroll.h"
#include "controller/guard.h"
#include "controller/scopes.h"
#include "cas/scope_store.h"
#include "controller/reports.h"
#include "controller/request_checks.h"
#include "controller/sessions.h"
#include "controller/signal.h"
#include "queue/dispatch_store.h"
#include "queue/worker_store.h"

namespace kiln::controller {
namespace {

// A (valid) report of a workspace that `worker_id` holds, as the queue records it.
queue::WorkspaceRow WorkspaceOf(const v1::WorkspaceReport& ws, const std::string& worker_id) {
  return {ws.project(), ws.name(), worker_id, "", ws.has_root() ? api::DigestKey(ws.root()) : std::string(),
          ws.bytes(), 0, false};
}

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  explicit WorkerServiceImpl(const WorkerServiceDeps& d) : d_(d) {}

  grpc::Status Connect(grpc::ServerContext* ctx, WorkerStream* stream) override {
    // With TLS the certificate says who is calling before anything is read.
    std::optional<Caller> who;
    if (d_.guard.tls()) {
      auto w = d_.guard.RequireWorker(ctx);
      if (!w.ok()) {
        spdlog::warn("worker refused: {} peer={}", w.status().message(), ctx->peer());
        return api::ToGrpc(w.status());
      }
      who = std::move(w).value();
    }
    v1::WorkerMessage msg;
    if (!stream->Read(&msg)) return grpc::Status(grpc::CANCELLED, "stream closed before registering");
    if (!msg.has_register_()) {
      return grpc::Status(grpc::INVALID_ARGUMENT, "the first message on a worker stream must be a registration");
    }
    const auto& reg = msg.register_();
    if (Status s = ValidateRegister(reg); !s.ok()) return api::ToGrpc(s);
    if (d_.stopping) return grpc::Status(grpc::UNAVAILABLE, "controller is shutting down");
    // A worker is who its certificate says, not the name it sends.
    if (!who) {
      auto w = d_.guard.RequireWorker(ctx, reg.worker_id());
      if (!w.ok()) return api::ToGrpc(w.status());
      who = std::move(w).value();
    }
    if (who->worker_id != reg.worker_id()) {
      spdlog::warn("worker refused: certificate of {} registers as {} peer={}", who->worker_id, reg.worker_id(),
                   ctx->peer());
      return grpc::Status(grpc::PERMISSION_DENIED, "this certificate belongs to worker " + who->worker_id +
                                                       ", which may not register as " + reg.worker_id());
    }

    queue::WorkerRegistration w;
    w.id = reg.worker_id();
    w.hostname = reg.hostname();
    w.work_dir = reg.work_dir();
    w.cluster = reg.cluster();
    w.arch = reg.arch();
    w.os = reg.os().empty() ? "linux" : reg.os();
    for (const auto& [k, v] : reg.labels()) w.labels[k] = v;
    w.slots = reg.slots();
    w.version = reg.version();
    w.controller_id = d_.controller_id;
    w.session = RandomHex(8);
    w.draining = reg.draining();
    auto recorded = d_.workers.Register(w, d_.lease);
    if (!recorded.ok()) return api::ToGrpc(recorded.status());

    // Jobs the worker still runs from before a reconnect: keep those it
    // still owns, stop the others. Before its health is read: jobs it lost
    // (a restart) count against it from this registration on.
    std::vector<queue::JobRef> running;
    std::vector<int64_t> kept;
    for (const auto& r : reg.running()) running.push_back({r.job_id(), r.attempt()});
    std::vector<queue::EndedJob> ended;
    int lost = 0;
    auto stop = d_.dispatch.Adopt(w.id, running, &ended, &lost);
    if (!stop.ok()) return api::ToGrpc(stop.status());
    CountEnded(d_.job_metrics, ended);
    if (lost > 0) {
      spdlog::warn("worker registered again without its jobs worker_id={} lost={}: they are requeued and the loss "
                   "counts against it (did it restart while they ran?)",
                   w.id, lost);
    }
    for (const auto& r : running) {
      bool stopped = false;
      for (const auto& s : *stop) stopped |= s.job_id == r.job_id;
      if (!stopped) kept.push_back(r.job_id);
    }
    auto session = std::make_shared<Session>(w.id, w.session, w.slots, stream, ctx);
    session->Adopt(kept);
    session->draining = reg.draining();
    // Health outlives a reconnect: an unhealthy worker recovers only by
    // passing its checks for a while, here as anywhere.
    HealthState health(*recorded != "unhealthy");
    session->unhealthy = !health.healthy();
    // Its infrastructure failures, whichever session or controller saw them.
    if (auto infra = d_.workers.InfraFailuresOf(w.id); infra.ok())
      health.SeedInfraFailures(infra->at_ms, infra->now_ms, HealthState::Clock::now(), infra->last);
    else
      spdlog::warn("infrastructure failures of worker {} not read: {}", w.id, infra.status().message());
    if (reg.has_health()) {
      if (Status hs = JudgeHealth(w, reg.draining(), reg.health(), health, *session); !hs.ok())
        spdlog::warn("health report of worker {} not recorded: {}", w.id, hs.message());
    }
    session->cluster = w.cluster;

    v1::ControllerMessage hello;
    auto* ok = hello.mutable_registered();
    ok->set_heartbeat_interval_ms(static_cast<int32_t>(d_.heartbeat_interval.count()));
    ok->set_lease_ms(static_cast<int32_t>(d_.lease.count()));
    ok->set_controller_id(d_.controller_id);
    if (!session->Send(hello)) return grpc::Status(grpc::CANCELLED, "worker went away");
    for (const auto& s : *stop) {
      v1::ControllerMessage m;
      m.mutable_cancel()->set_job_id(s.job_id);
      m.mutable_cancel()->set_attempt(s.attempt);
      m.mutable_cancel()->set_reason("this attempt no longer owns the job");
      session->Send(m);
    }
    // Its warm workspaces: recorded for locality; those removed while it
    // was away are dropped now.
    std::vector<queue::WorkspaceRow> held;
    for (const auto& ws : reg.workspaces()) {
      if (!ValidWorkspace(ws)) continue;
      held.push_back(WorkspaceOf(ws, w.id));
    }
    if (auto removed = d_.workers.ReplaceWorkspaces(w.id, held); !removed.ok()) {
      spdlog::warn("workspaces of worker {} not recorded: {}", w.id, removed.status().message());
    } else {
      for (const auto& r : *removed) session->Send(DropMessage(r.project, r.name));
    }
    d_.registry.Add(session);
    d_.actions.WorkerUp(session, w.cluster, reg.action_slots());
    spdlog::info("worker connected worker_id={} host={} cluster={} slots={} action_slots={} adopted={} workspaces={}",
                 w.id, w.hostname, w.cluster, w.slots, reg.action_slots(), kept.size(), held.size());
    d_.dispatch_wake.Notify();

    std::string why = "its stream closed";
    while (stream->Read(&msg)) {
      if (msg.has_heartbeat()) {
        bool draining = msg.heartbeat().draining();
        if (draining && !session->draining) spdlog::info("worker draining worker_id={}", w.id);
        session->draining = draining;
        Status s = msg.heartbeat().has_health()
                       ? JudgeHealth(w, draining, msg.heartbeat().health(), health, *session)
                       : d_.workers.Heartbeat(w.id, w.session, d_.lease, draining);
        if (s.code() == Code::kNotFound) {
          why = "";
          break;  // registered again through another stream
        }
        if (!s.ok()) spdlog::warn("heartbeat of worker {} not recorded: {}", w.id, s.message());
      } else if (msg.has_update()) {
        const auto& u = msg.update();
        if (Status s = ValidateUpdate(u); !s.ok()) {
          spdlog::warn("worker {} sent an invalid update for job {}; ignored: {}", w.id, u.job_id(), s.message());
          continue;
        }
        auto st = api::FromProto(u.status());  // valid: checked above
        Event e;
        e.session = session;
        e.update.worker_id = w.id;
        e.update.worker_cert = who->cert_serial;
        e.update.job_id = u.job_id();
        e.update.attempt = u.attempt();
        e.update.status = *st;
        if (u.has_result()) e.update.result = api::FromProto(u.result());
        e.update.started_ms = u.started_at_ms();
        e.update.finished_ms = u.finished_at_ms();
        if (u.has_timings()) {
          if (Status ts = ValidateTimings(u); ts.ok()) {
            e.update.timings = api::FromProto(u.timings(), u.log_size());
          } else {
            spdlog::warn("worker {} sent invalid timings for job {}; the report is kept without them: {}", w.id,
                         u.job_id(), ts.message());
          }
        }
        if (e.update.result && !e.update.result->output_root.empty()) {
          // Before the result is stored (and seen by whoever downloads it).
          if (Status rs = d_.scopes.RecordOutputs(*who, u.job_id(), u.attempt(), e.update.result->output_root);
              !rs.ok())
            spdlog::warn("outputs of job {} not recorded in its scope: {}", u.job_id(), rs.message());
        }
        if (u.has_result() && u.result().infrastructure()) {
          // Counted against the worker (health_max_infra_failures); the
          // update itself requeues the job while attempts remain.
          health.NoteInfraFailure(HealthState::Clock::now(), u.result().error());
          if (Status ns = d_.workers.NoteInfraFailure(w.id, u.result().error()); !ns.ok())
            spdlog::warn("{}", ns.message());
          spdlog::warn("infrastructure failure worker_id={} job_id={} attempt={}: {}", w.id, u.job_id(), u.attempt(),
                       u.result().error());
        }
        if (*st != queue::JobStatus::kRunning && session->Finished(u.job_id())) d_.dispatch_wake.Notify();
        d_.reports.Push(std::move(e));
      } else if (msg.has_workspace()) {
        const auto& ws = msg.workspace();
        if (!ValidWorkspace(ws)) {
          spdlog::warn("worker {} sent an invalid workspace report; ignored", w.id);
          continue;
        }
        auto removed = d_.workers.ReportWorkspace(w.id, WorkspaceOf(ws, w.id), ws.present());
        if (!removed.ok()) spdlog::warn("workspace report of worker {} not recorded: {}", w.id, removed.status().message());
        else if (*removed) session->Send(DropMessage(ws.project(), ws.name()));
      } else if (msg.has_action_done()) {
        if (!d_.actions.Done(w.id, msg.action_done()))
          spdlog::debug("result of action {} from worker {} ignored: not running there (late or unknown)",
                        msg.action_done().action_id(), w.id);
      } else if (msg.has_log()) {
        const auto& l = msg.log();
        if (Status s = ValidateLogChunk(l); !s.ok()) {
          spdlog::warn("worker {} sent an invalid log chunk for job {}; ignored: {}", w.id, l.job_id(), s.message());
          continue;
        }
        Event e;
        e.session = session;
        e.kind = Event::kLog;
        e.log = {w.id, l.job_id(), l.attempt(), l.offset(), l.data()};
        d_.reports.Push(std::move(e));
      }
    }
    d_.registry.Remove(session);
    d_.actions.WorkerDown(session);
    session->Finish();
    if (d_.stopping || why.empty()) {
      spdlog::info("worker stream closed worker_id={} (jobs stay with the worker)", w.id);
      return grpc::Status::OK;
    }
    // The worker went away: its jobs go back in line after the reconnect
    // grace unless it registers again meanwhile (a stream also breaks while
    // this controller is stopped or cut off, and the worker then comes back
    // with its jobs still running), not at lease expiry. Queued behind the
    // reports already read from this stream, so a result that arrived is
    // stored before the requeue.
    Event drop;
    drop.kind = Event::kDrop;
    drop.session = session;
    drop.why = "its stream to controller " + d_.controller_id + " closed";
    drop.at = std::chrono::steady_clock::now();
    d_.reports.Push(std::move(drop));
    return grpc::Status::OK;
  }

  // The compile cache answers a worker only about attempts it runs: the
  // store's statements are fenced by (job, attempt, worker).
  grpc::Status LookupCompile(grpc::ServerContext* ctx, const v1::LookupCompileRequest* req,
                             v1::LookupCompileResponse* resp) override {
    auto who = Worker(ctx);
    if (!who.ok()) return api::ToGrpc(who.status());
    return controller::LookupCompile(d_.compiles, who->worker_id, req, resp);
  }
  grpc::Status LookupCompileResult(grpc::ServerContext* ctx, const v1::LookupCompileResultRequest* req,
                                   v1::LookupCompileResultResponse* resp) override {
    auto who = Worker(ctx);
    if (!who.ok()) return api::ToGrpc(who.status());
    return controller::LookupCompileResult(d_.compiles, who->worker_id, req, resp);
  }
  grpc::Status StoreCompile(grpc::ServerContext* ctx, const v1::StoreCompileRequest* req,
                            v1::StoreCompileResponse* resp) override {
    auto who = Worker(ctx);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (!req->manifest_only() && cas::IsHash(req->result().object().hash())) {
      // The object must be the worker's own upload (or its job's content);
      // it joins the job's scopes, where later jobs (on any worker) read it.
      Status s = d_.scopes.RecordObject(*who, req->job_id(), req->attempt(), req->result().object().hash());
      if (!s.ok()) return api::ToGrpc(s);
    }
    return controller::StoreCompile(d_.compiles, d_.blobs, who->worker_id, req, resp);
  }
  grpc::Status RecordCompiles(grpc::ServerContext* ctx, const v1::RecordCompilesRequest* req, v1::Empty*) override {
    auto who = Worker(ctx);
    if (!who.ok()) return api::ToGrpc(who.status());
    return controller::RecordCompiles(d_.compiles, who->worker_id, req, d_.compile_metrics);
  }

  grpc::Status ExecuteAction(grpc::ServerContext* ctx, const v1::ExecuteActionRequest* req,
                             v1::ActionResult* resp) override {
    auto who = Worker(ctx);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (Status s = CheckJobRef(req->job_id(), req->attempt()); !s.ok()) return api::ToGrpc(s);
    if (Status s = ValidateAction(req->action()); !s.ok()) return api::ToGrpc(s);
    auto session = d_.registry.Find(who->worker_id);
    if (!session || !session->Holds(req->job_id()))
      return grpc::Status(grpc::FAILED_PRECONDITION, "job " + std::to_string(req->job_id()) +
                                                         " does not run on worker " + who->worker_id +
                                                         " at this controller");
    auto ticket = Ticket(*who, req->job_id(), req->attempt());
    if (!ticket.ok()) return api::ToGrpc(ticket.status());
    // The requester may pass on only content it sees itself.
    std::vector<std::string> unchecked;
    {
      std::lock_guard g((*ticket)->mu);
      for (const auto& in : req->action().inputs())
        if (!(*ticket)->seen.count(in.digest().hash())) unchecked.push_back(in.digest().hash());
    }
    if (!unchecked.empty()) {
      auto seen = d_.scopes.SeenThroughJob(who->worker_id, (*ticket)->job, unchecked);
      if (!seen.ok()) return api::ToGrpc(seen.status());
      for (const auto& h : unchecked)
        if (!seen->count(h))
          return grpc::Status(grpc::FAILED_PRECONDITION,
                              "action input " + h + " is not in CAS for worker " + who->worker_id + ": upload it first");
      std::lock_guard g((*ticket)->mu);
      (*ticket)->seen.insert(unchecked.begin(), unchecked.end());
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::hours(1);
    if (ctx->deadline() != std::chrono::system_clock::time_point::max())
      deadline = std::chrono::steady_clock::now() + (ctx->deadline() - std::chrono::system_clock::now()) -
                 std::chrono::milliseconds(500);  // the answer must reach the requester in time
    *resp = d_.actions.Execute(who->worker_id, (*ticket)->project, session->cluster, req->action(), deadline);
    return grpc::Status::OK;
  }

  grpc::Status RenewCertificate(grpc::ServerContext* ctx, const v1::RenewRequest* req,
                                v1::EnrollResponse* resp) override {
    auto who = d_.guard.RequireWorker(ctx);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (!d_.guard.tls()) return grpc::Status(grpc::FAILED_PRECONDITION, "this controller serves without TLS");
    return api::ToGrpc(d_.enroller.Renew(*who, ctx->peer(), req->csr_pem(), resp));
  }

 private:
  // Checks a worker's health report, records it with the heartbeat (and a
  // change of health, logged) and sets the session's verdict. An invalid
  // report changes nothing but the lease.
  Status JudgeHealth(const queue::WorkerRegistration& w, bool draining, const v1::HealthReport& report,
                     HealthState& state, Session& session) {
    if (Status v = ValidateHealthReport(report); !v.ok()) {
      spdlog::warn("worker {} sent an invalid health report; ignored: {}", w.id, v.message());
      return d_.workers.Heartbeat(w.id, w.session, d_.lease, draining);
    }
    const int64_t now_ms = NowUnixMs();
    const auto now = HealthState::Clock::now();
    const HealthThresholds t = d_.health->Get();
    HealthFailure f = CheckHealthReport(report, now_ms, t);
    if (f.check.empty()) f = state.CheckInfraFailures(now, t);
    const HealthState before = state;
    HealthState::Change c = state.Observe(f, now, t.recover_after);
    queue::HealthRecord rec;
    rec.report_json = HealthReportJson(report, now_ms);
    if (c.changed) rec.health = c.healthy ? "healthy" : "unhealthy";
    rec.reason = c.reason;
    rec.reason_changed = c.reason_changed;
    Status s = d_.workers.Heartbeat(w.id, w.session, d_.lease, draining, rec);
    if (!s.ok()) {
      state = before;  // recorded nowhere: judged again with the next report
      return s;
    }
    session.unhealthy = !state.healthy();
    if (c.changed && !c.healthy) {
      spdlog::warn("worker unhealthy worker_id={} host={} reason=\"{}\"", w.id, w.hostname, c.reason);
    } else if (c.reason_changed) {
      spdlog::warn("worker still unhealthy worker_id={} host={} reason=\"{}\"", w.id, w.hostname, c.reason);
    } else if (c.changed) {
      spdlog::info("worker healthy again worker_id={} host={} passed_for_ms={}", w.id, w.hostname,
                   t.recover_after.count());
      d_.dispatch_wake.Notify();
      d_.actions.Wake();
    }
    return s;
  }

  // The calling worker. Without TLS (insecure = true) it is the id it
  // names (kiln-worker-id metadata); with TLS, its certificate's.
  Result<Caller> Worker(grpc::ServerContext* ctx) {
    auto who = d_.guard.RequireWorker(ctx);
    if (!who.ok()) return who;
    if (who->worker_id.empty()) return InvalidArgument("without TLS a worker names itself in kiln-worker-id metadata");
    return who;
  }

  // What ExecuteAction remembers of a job's attempt: its project and the
  // inputs its worker was found to see (asked of the database once).
  struct JobTicket {
    cas::ScopeStore::HeldJob job;
    std::string project;
    std::mutex mu;
    std::unordered_set<std::string> seen;
  };
  Result<std::shared_ptr<JobTicket>> Ticket(const Caller& who, int64_t job_id, int attempt) {
    const std::string key = who.worker_id + "/" + std::to_string(job_id) + "/" + std::to_string(attempt);
    {
      std::lock_guard g(tickets_mu_);
      auto it = tickets_.find(key);
      if (it != tickets_.end()) return it->second;
    }
    auto jobs = d_.scopes.store().WorkerJobs(who.worker_id);
    if (!jobs.ok()) return jobs.status();
    for (const auto& j : *jobs) {
      if (j.job_id != job_id || j.attempt != attempt) continue;
      auto t = std::make_shared<JobTicket>();
      t->job = j;
      for (const auto& sc : j.scopes)
        if (sc.rfind("project:", 0) == 0) t->project = sc.substr(8);
      std::lock_guard g(tickets_mu_);
      if (tickets_.size() >= 4096) tickets_.clear();  // a bound; the next call of each asks again
      tickets_[key] = t;
      return t;
    }
    return FailedPrecondition("job " + std::to_string(job_id) + " attempt " + std::to_string(attempt) +
                              " does not run on worker " + who.worker_id);
  }

  WorkerServiceDeps d_;
  std::mutex tickets_mu_;
  std::unordered_map<std::string, std::shared_ptr<JobTicket>> tickets_;
};

}  // namespace

v1::ControllerMessage DropMessage(const std::string& project, const std::string& name) {
  v1::ControllerMessage m;
  m.mutable_drop_workspace()->set_project(project);
  m.mutable_drop_workspace()->set_name(name);
  return m;
}

std::unique_ptr<grpc::Service> MakeWorkerService(const WorkerServiceDeps& deps) {
  return std::make_unique<WorkerServiceImpl>(deps);
}

}  // namespace kiln::controller
