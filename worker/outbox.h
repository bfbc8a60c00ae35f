#pragma once
// The worker's side of the controller stream: every message to the
// controller goes through one Outbox, which writes it to the connected
// stream or, while there is none (or a write fails), keeps it in order for
// the next connection. Thread-safe; writes are serialized.

#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

#include "kiln/v1/kiln.pb.h"

namespace kiln::worker {

class Outbox {
 public:
  // Writes one message to the stream; false when the stream is broken.
  using Writer = std::function<bool(const v1::WorkerMessage&)>;

  // Log messages are dropped once the queue holds `max_log_bytes` (state
  // changes are always kept).
  static constexpr size_t kMaxBytes = 16 << 20;
  explicit Outbox(size_t max_log_bytes = kMaxBytes) : max_log_bytes_(max_log_bytes) {}

  // Sends now, or (keep) queues for the next connection; without keep a
  // message that cannot go now is dropped (heartbeats). Order is kept:
  // nothing overtakes what waits in the queue.
  void Send(const v1::WorkerMessage& m, bool keep = true);
  // Sends what waits, in order; true if the queue is empty afterwards.
  bool Flush();

  // The stream is connected (w writes to it) or gone. Attach does not flush.
  void Attach(Writer w);
  void Detach();
  // A new connection, registered: attaches w, sends what waits (logs first,
  // in order), and then, only if all of that went, `final_reports` again
  // without keeping them (their keeper sends them again at the next
  // connection until they are acknowledged): a final report applied before
  // its job's last log chunks would fence them out.
  void Connect(Writer w, const std::vector<v1::JobUpdate>& final_reports);

  // Messages waiting, and their bytes.
  size_t queued() const;
  size_t queued_bytes() const;

 private:
  const size_t max_log_bytes_;
  mutable std::mutex mu_;  // guards all below, and every write
  Writer writer_;          // empty: not connected
  std::deque<v1::WorkerMessage> queue_;
  size_t bytes_ = 0;
  bool overflowed_ = false;  // logs were dropped since the queue was last empty
};

}  // namespace kiln::worker
