#pragma once
// kiln-controller: composes the queue, the gRPC services and the background
// loops (dispatcher, update applier, reaper, config watcher, listener).
// Holds no state that PostgreSQL does not: any controller may die.

#include <memory>

#include "common/status.h"
#include "config/config.h"

namespace kiln::controller {

class Controller {
 public:
  // Connects to the database and binds the listen address; Unavailable or
  // InvalidArgument with a message saying what to fix.
  static Result<std::unique_ptr<Controller>> Create(const config::ControllerConfig& cfg);
  ~Controller();

  // Serves until Shutdown() is called (from a signal thread).
  void Run();
  // Stops serving: closes worker streams without requeueing their jobs (the
  // workers reconnect elsewhere and keep them), ends client streams.
  void Shutdown();
  // Applies the reloadable settings of `cfg` (validated; config::
  // ControllerReloadable): the log level and the health thresholds. Others
  // are ignored. Thread-safe (called from the signal thread).
  void Reload(const config::ControllerConfig& cfg);
  // The address actually bound (port resolved when listen asked for :0).
  std::string address() const;

  struct Impl;

 private:
  explicit Controller(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::controller
