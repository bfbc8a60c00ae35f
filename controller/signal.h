#pragma once
// A counter to wait on: Notify bumps it, Wait returns once it moved past
// what the caller saw, or at the timeout. The controller's wake-ups
// (dispatch, job events, config, shutdown) are each one of these.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace kiln::controller {

class Signal {
 public:
  void Notify() {
    {
      std::lock_guard g(mu_);
      ++gen_;
    }
    cv_.notify_all();
  }
  uint64_t generation() {
    std::lock_guard g(mu_);
    return gen_;
  }
  // Returns the new generation.
  uint64_t Wait(uint64_t seen, std::chrono::milliseconds timeout) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, timeout, [&] { return gen_ != seen; });
    return gen_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t gen_ = 0;
};

}  // namespace kiln::controller
