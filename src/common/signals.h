#pragma once
// Signals set flags; a dedicated thread turns them into calls.

#include <functional>
#include <thread>

namespace kiln {

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (call first in
// main, before any thread starts, so every thread inherits the mask) and
// starts a thread that waits for them: on_stop(n) for the n-th SIGTERM or
// SIGINT, on_reload() for SIGHUP. The thread is detached; it lives until exit.
void HandleSignals(std::function<void(int count)> on_stop, std::function<void()> on_reload);

}  // namespace kiln
