#pragma once
// kiln-worker: dials a controller, registers, heartbeats, runs assigned jobs
// and reports them with their attempt (the fencing token). Final results are
// kept until the controller acknowledges them, across reconnects.

#include <memory>

#include "common/status.h"
#include "config/config.h"

namespace kiln::worker {

class Worker {
 public:
  // Prepares the work directory (removing leftovers of a crashed run).
  static Result<std::unique_ptr<Worker>> Create(const config::WorkerConfig& cfg);
  ~Worker();

  // Connects (and reconnects) until stopped; returns the exit code.
  int Run();
  // n == 1: drain (no new jobs; running ones finish, or are handed back
  // after drain_grace; then exit). n >= 2: kill running jobs, exit at once.
  void Stop(int n);

  // Applies the reloadable settings of `cfg` (validated; config::
  // WorkerReloadable): the log level and health_check_interval. Others are
  // ignored. Thread-safe (called from the signal thread).
  void Reload(const config::WorkerConfig& cfg);

  const std::string& id() const;

  struct Impl;

 private:
  explicit Worker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::worker
