#include "worker/outbox.h"

#include <spdlog/spdlog.h>

#include "common/util.h"

namespace kiln::worker {

void Outbox::Send(const v1::WorkerMessage& m, bool keep) {
  std::lock_guard g(mu_);
  if (writer_ && queue_.empty() && writer_(m)) return;
  if (!keep) return;
  size_t n = m.ByteSizeLong();
  if (m.has_log() && bytes_ + n > max_log_bytes_) {
    if (!overflowed_) spdlog::warn("controller unreachable: dropping log output beyond {}",
                                FormatLimitBytes(static_cast<int64_t>(max_log_bytes_)));
    overflowed_ = true;
    return;
  }
  queue_.push_back(m);
  bytes_ += n;
}

bool Outbox::Flush() {
  std::lock_guard g(mu_);
  while (!queue_.empty() && writer_ && writer_(queue_.front())) {
    bytes_ -= queue_.front().ByteSizeLong();
    queue_.pop_front();
  }
  if (queue_.empty()) overflowed_ = false;
  return queue_.empty();
}

void Outbox::Attach(Writer w) {
  std::lock_guard g(mu_);
  writer_ = std::move(w);
}

void Outbox::Detach() {
  std::lock_guard g(mu_);
  writer_ = nullptr;
}

void Outbox::Connect(Writer w, const std::vector<v1::JobUpdate>& final_reports) {
  Attach(std::move(w));
  if (!Flush()) return;
  for (const auto& u : final_reports) {
    v1::WorkerMessage m;
    *m.mutable_update() = u;
    Send(m, /*keep=*/false);
  }
}

size_t Outbox::queued() const {
  std::lock_guard g(mu_);
  return queue_.size();
}

size_t Outbox::queued_bytes() const {
  std::lock_guard g(mu_);
  return bytes_;
}

}  // namespace kiln::worker
