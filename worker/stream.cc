#include "worker/stream.h"

#include "worker/actions.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <condition_variable>
#include <mutex>
#include <thread>

#include <grpcpp/generic/generic_stub.h>

#include "worker/assignment.h"
#include "worker/workspaces.h"

namespace kiln::worker {

void ControllerStream::Heartbeat() {
  v1::WorkerMessage m;
  m.mutable_heartbeat()->set_running(static_cast<int>(d_.ledger->running()));
  m.mutable_heartbeat()->set_draining(*d_.draining);
  if (d_.health) *m.mutable_heartbeat()->mutable_health() = d_.health();
  Send(m, /*keep=*/false);
}

void ControllerStream::Report(const v1::JobUpdate& u, bool ran_here) {
  d_.ledger->Finish(u, ran_here);
  v1::WorkerMessage m;
  *m.mutable_update() = u;
  Send(m);
}

void ControllerStream::HandBack(int64_t job_id, int attempt, const std::string& why) {
  Report(HandBackUpdate(job_id, attempt, why));
}

void ControllerStream::Handle(const v1::ControllerMessage& m) {
  if (m.has_assign()) {
    d_.assign(m.assign());
  } else if (m.has_run_action()) {
    if (d_.run_action) {
      d_.run_action(m.run_action());
    } else {
      Send(ActionRefused(m.run_action().action_id(), "worker " + d_.who.id + " runs no remote actions"), /*keep=*/false);
    }
  } else if (m.has_cancel()) {
    const auto& c = m.cancel();
    if (d_.ledger->Cancel(c.job_id(), c.attempt()) == JobLedger::CancelResult::kCancelled)
      spdlog::info("cancelling job_id={} attempt={}: {}", c.job_id(), c.attempt(), c.reason());
  } else if (m.has_drop_workspace()) {
    const auto& d = m.drop_workspace();
    spdlog::info("removing workspace {} of project {} (kiln workspace rm)", d.name(), d.project());
    if (auto r = d_.workspaces->Drop(d.project(), d.name())) {
      v1::WorkerMessage wm;
      *wm.mutable_workspace() = *r;
      Send(wm);
    }
  } else if (m.has_ack()) {
    d_.ledger->Ack(m.ack().job_id(), m.ack().attempt());
    if (!m.ack().applied()) {
      spdlog::info("controller dropped our report as stale job_id={} attempt={}", m.ack().job_id(),
                   m.ack().attempt());
    }
  }
}

void ControllerStream::Close() {
  std::lock_guard g(ctx_mu_);
  closed_ = true;
  if (ctx_) ctx_->TryCancel();
}

void ControllerStream::Session() {
  const config::WorkerConfig& cfg = *d_.cfg;
  auto context = std::make_shared<grpc::ClientContext>();
  // Wait for the channel rather than fail fast while it backs off: a
  // restarted controller is picked up as soon as it listens.
  context->set_wait_for_ready(true);
  {
    std::lock_guard g(ctx_mu_);
    if (closed_) return;
    ctx_ = context;  // lets Close() cancel a connect in progress
  }
  if (d_.channel && !d_.channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(5))) {
    // Waiting for the channel says nothing of why it cannot connect (a TLS
    // handshake refused, a wrong address): a fail-fast call does.
    grpc::GenericStub probe(d_.channel);
    grpc::ClientContext pc;
    pc.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::Slice empty("", 0);
    grpc::ByteBuffer req(&empty, 1), resp;
    grpc::Status st;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    probe.UnaryCall(&pc, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &req, &resp, [&](grpc::Status s) {
      std::lock_guard g(mu);
      st = std::move(s);
      done = true;
      cv.notify_all();
    });
    std::unique_lock lk(mu);
    cv.wait(lk, [&] { return done; });
    if (st.error_code() == grpc::UNAVAILABLE) {
      spdlog::warn("cannot connect to controller {}: {} (still trying)", cfg.controller, st.error_message());
    }
  }
  auto s = d_.stub->Connect(context.get());
  // A job whose final report is unacknowledged is still ours.
  JobLedger::Held held = d_.ledger->Snapshot();
  v1::WorkerMessage reg = Registration(cfg, d_.who, *d_.draining, d_.workspaces->List(), held);
  if (d_.health) *reg.mutable_register_()->mutable_health() = d_.health();
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
    if ((st.error_code() == grpc::UNAUTHENTICATED || st.error_code() == grpc::PERMISSION_DENIED) && d_.refused)
      d_.refused(st.error_message());
    return;
  }
  heartbeat_interval_ = std::chrono::milliseconds(std::max(50, m.registered().heartbeat_interval_ms()));
  spdlog::info("connected to controller {} ({}) as worker_id={} slots={}", cfg.controller,
               m.registered().controller_id(), d_.who.id, cfg.slots);
  sd_notify(0, "READY=1");
  // What waited (logs first, in order), then the unacknowledged final reports again.
  d_.outbox->Connect([stream = s.get()](const v1::WorkerMessage& wm) { return stream->Write(wm); }, held.reports);
  std::atomic<bool> connected{true};
  std::thread hb([&] {
    while (connected) {
      auto until = std::chrono::steady_clock::now() + heartbeat_interval_;
      std::unique_lock lk(mu_);
      cv_.wait_until(lk, until, [&] { return !connected; });
      lk.unlock();
      if (connected) Heartbeat();
    }
  });
  while (s->Read(&m)) Handle(m);
  {
    std::lock_guard g(mu_);
    connected = false;
  }
  cv_.notify_all();
  hb.join();
  d_.outbox->Detach();
  {
    std::lock_guard g(ctx_mu_);
    ctx_ = nullptr;
  }
  auto st = s->Finish();
  if (!closed_) spdlog::warn("lost the controller stream: {}", st.ok() ? "closed by the controller" : st.error_message());
}

}  // namespace kiln::worker
