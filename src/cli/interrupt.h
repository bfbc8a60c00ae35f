#pragma once
// Ctrl-C while waiting on a job: signals set flags, a helper thread acts.

#include <functional>
#include <thread>

namespace kiln::cli {

// While alive, handles SIGINT: the first runs on_first on a helper thread
// (so it may make RPCs while the main thread is blocked reading a stream);
// the second exits the process at once with status 130. At most one
// InterruptGuard may exist at a time; the destructor restores the previous handler.
class InterruptGuard {
 public:
  explicit InterruptGuard(std::function<void()> on_first);
  ~InterruptGuard();
  InterruptGuard(const InterruptGuard&) = delete;
  InterruptGuard& operator=(const InterruptGuard&) = delete;

 private:
  std::function<void()> on_first_;
  std::thread thread_;
};

}  // namespace kiln::cli
