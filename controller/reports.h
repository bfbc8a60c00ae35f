#pragma once
// What worker streams hand the update applier: job updates, log chunks and
// stream drops, in the order each stream read them. The worker service
// pushes; the controller's applier thread takes batches.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "controller/sessions.h"
#include "queue/types.h"

namespace kiln::controller {

// An update or log chunk from a worker, or its stream's end.
struct Event {
  enum Kind { kUpdate, kLog, kDrop } kind = kUpdate;
  std::shared_ptr<Session> session;
  queue::Update update;
  queue::LogAppend log;
  std::string why;  // kDrop: why the stream closed
  std::chrono::steady_clock::time_point at{};  // kDrop: when it closed
};

class ReportQueue {
 public:
  void Push(Event e) {
    {
      std::lock_guard g(mu_);
      events_.push_back(std::move(e));
    }
    cv_.notify_one();
  }

  // Wakes a Take that waits, to look at the stop flag.
  void Wake() { cv_.notify_all(); }

  enum class Took { kNothing, kDrop, kBatch };

  // Waits up to `timeout` for events (or `stop`). A drop next in line, with
  // `batch` empty, is moved into `drop` alone (kDrop): it is applied after
  // the reports its stream sent before it. Otherwise updates and log chunks
  // are appended to `batch` up to `max`, stopping at a drop; kBatch if
  // `batch` then holds any (it may hold a batch whose write failed).
  Took Take(std::deque<Event>& batch, Event& drop, size_t max, std::chrono::milliseconds timeout,
            const std::atomic<bool>& stop) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, timeout, [&] { return !events_.empty() || stop; });
    if (events_.empty() && batch.empty()) return Took::kNothing;
    if (batch.empty() && !events_.empty() && events_.front().kind == Event::kDrop) {
      drop = std::move(events_.front());
      events_.pop_front();
      return Took::kDrop;
    }
    while (!events_.empty() && batch.size() < max && events_.front().kind != Event::kDrop) {
      batch.push_back(std::move(events_.front()));
      events_.pop_front();
    }
    return Took::kBatch;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
};

}  // namespace kiln::controller
