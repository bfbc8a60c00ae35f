#pragma once
// The worker streams connected to this controller: one Session per stream
// and the Registry of them by worker id. Rebuilt from reconnecting workers;
// nothing here is the source of truth.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::controller {

using WorkerStream = grpc::ServerReaderWriter<v1::ControllerMessage, v1::WorkerMessage>;

// One connected worker's stream. Writes are serialized; reads happen only on
// the stream's own handler thread.
class Session {
 public:
  Session(std::string worker_id, std::string session_id, int slots, WorkerStream* stream, grpc::ServerContext* ctx)
      : worker_id(std::move(worker_id)),
        session_id(std::move(session_id)),
        slots(slots),
        stream_(stream),
        ctx_(ctx) {}
  // A session whose messages go to `sink` (tests of what is sent on streams).
  Session(std::string worker_id, std::string session_id, int slots,
          std::function<bool(const v1::ControllerMessage&)> sink)
      : worker_id(std::move(worker_id)), session_id(std::move(session_id)), slots(slots), sink_(std::move(sink)) {}

  const std::string worker_id;
  const std::string session_id;
  const int slots;
  std::atomic<bool> draining{false};
  // The health checker's verdict (controller/health.h): an unhealthy
  // worker gets no jobs and no actions, like a draining one.
  std::atomic<bool> unhealthy{false};
  bool Available() const { return !draining && !unhealthy; }
  std::string cluster;  // set once, before the session is shared
  // Closed for good (its certificate revoked): it cannot come back, so its
  // jobs are requeued at once, without the reconnect grace.
  std::atomic<bool> revoked{false};

  // Returns false if the stream is gone.
  bool Send(const v1::ControllerMessage& m) {
    std::lock_guard g(write_mu_);
    if (closed_) return false;
    if (sink_) return sink_(m);
    if (!stream_->Write(m)) {
      closed_ = true;
      return false;
    }
    return true;
  }
  void Close() {
    std::lock_guard g(write_mu_);
    closed_ = true;
    if (!finished_ && ctx_ != nullptr) ctx_->TryCancel();
  }
  // The handler is returning: stream and context die with it.
  void Finish() {
    std::lock_guard g(write_mu_);
    closed_ = true;
    finished_ = true;
  }

  // Jobs assigned and not yet finished, as this controller saw them.
  int FreeSlots() {
    std::lock_guard g(mu_);
    return Available() ? slots - static_cast<int>(inflight_.size()) : 0;
  }
  void Assigned(int64_t job_id) {
    std::lock_guard g(mu_);
    inflight_.insert(job_id);
  }
  bool Holds(int64_t job_id) {
    std::lock_guard g(mu_);
    return inflight_.count(job_id) > 0;
  }
  int Running() {
    std::lock_guard g(mu_);
    return static_cast<int>(inflight_.size());
  }
  // Returns true if the job was in flight here.
  bool Finished(int64_t job_id) {
    std::lock_guard g(mu_);
    return inflight_.erase(job_id) > 0;
  }
  void Adopt(const std::vector<int64_t>& ids) {
    std::lock_guard g(mu_);
    inflight_.insert(ids.begin(), ids.end());
  }

 private:
  std::mutex write_mu_;
  bool closed_ = false;
  bool finished_ = false;
  WorkerStream* stream_ = nullptr;
  grpc::ServerContext* ctx_ = nullptr;
  std::function<bool(const v1::ControllerMessage&)> sink_;
  std::mutex mu_;
  std::set<int64_t> inflight_;
};

class Registry {
 public:
  void Add(const std::shared_ptr<Session>& s) {
    std::shared_ptr<Session> stale;
    {
      std::lock_guard g(mu_);
      auto& slot = sessions_[s->worker_id];
      if (slot != s) stale = slot;
      slot = s;
    }
    // The same worker reconnected: the old stream is stale. Closed outside
    // the lock, which must never wait on a stream.
    if (stale) stale->Close();
  }
  void Remove(const std::shared_ptr<Session>& s) {
    std::lock_guard g(mu_);
    auto it = sessions_.find(s->worker_id);
    if (it != sessions_.end() && it->second == s) sessions_.erase(it);
  }
  std::shared_ptr<Session> Find(const std::string& worker_id) {
    std::lock_guard g(mu_);
    auto it = sessions_.find(worker_id);
    return it == sessions_.end() ? nullptr : it->second;
  }
  std::vector<std::shared_ptr<Session>> All() {
    std::lock_guard g(mu_);
    std::vector<std::shared_ptr<Session>> out;
    for (auto& [_, s] : sessions_) out.push_back(s);
    return out;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
};

// Tells a worker to delete one of its warm workspaces.
v1::ControllerMessage DropMessage(const std::string& project, const std::string& name);

}  // namespace kiln::controller
