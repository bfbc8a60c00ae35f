#pragma once
// The worker's connection to the controller: registers, serves what the
// controller sends (assignments, cancels, acknowledgements, workspace
// removals), heartbeats, and reports; everything it sends goes through the
// Outbox, final reports are kept in the JobLedger until acknowledged.
// Thread-safe.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "config/config.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "worker/ledger.h"
#include "worker/outbox.h"
#include "worker/registration.h"

namespace grpc {
class ClientContext;
}

namespace kiln::worker {

class WorkspaceStore;

class ControllerStream {
 public:
  // Not owned; all outlive the stream. workspaces may be null only where no
  // session is opened and no workspace removal is handled (tests).
  struct Deps {
    v1::WorkerService::StubInterface* stub = nullptr;
    std::shared_ptr<grpc::Channel> channel;  // to say why a connection fails (may be null in tests)
    const config::WorkerConfig* cfg = nullptr;
    WorkerIdentity who;
    JobLedger* ledger = nullptr;
    Outbox* outbox = nullptr;
    WorkspaceStore* workspaces = nullptr;
    const std::atomic<bool>* draining = nullptr;
    // What the worker measures of itself, sent with the registration and
    // each heartbeat (may be empty: no report).
    std::function<v1::HealthReport()> health;
    std::function<void(const v1::Assign&)> assign;  // the controller assigned a job
    std::function<void(const v1::RunAction&)> run_action;  // ... or a remote action (may be empty: refused)
    // The controller refused this worker's certificate (revoked, or not of
    // this farm): retrying cannot help.
    std::function<void(const std::string&)> refused;
  };
  explicit ControllerStream(Deps deps) : d_(std::move(deps)) {}

  // One connection: registers (naming every job held), sends what waited
  // and the unacknowledged final reports, heartbeats and serves until the
  // stream ends. Returns at once once closed.
  void Session();
  // Ends the session in progress (or a connect in progress) and every
  // later one.
  void Close();
  bool closed() const { return closed_; }

  // Serves one message from the controller.
  void Handle(const v1::ControllerMessage& m);
  // Sends now, or (keep) queues for the next connection.
  void Send(const v1::WorkerMessage& m, bool keep = true) { d_.outbox->Send(m, keep); }
  // Says how many jobs run, whether the worker drains and how healthy it
  // measures (not kept).
  void Heartbeat();
  // Reports a final state; kept and re-sent until acknowledged. With
  // ran_here, the job also leaves the running set in the same step, freeing
  // its slot before the report goes out (the controller may assign the next
  // job the moment it reads it).
  void Report(const v1::JobUpdate& u, bool ran_here = false);
  // Hands an assignment back to the queue, saying why.
  void HandBack(int64_t job_id, int attempt, const std::string& why);

 private:
  Deps d_;
  std::mutex mu_;  // with cv_: the heartbeat's wait
  std::condition_variable cv_;
  std::chrono::milliseconds heartbeat_interval_{2000};
  std::mutex ctx_mu_;  // guards ctx_ and the setting of closed_
  std::shared_ptr<grpc::ClientContext> ctx_;
  std::atomic<bool> closed_{false};
};

}  // namespace kiln::worker
