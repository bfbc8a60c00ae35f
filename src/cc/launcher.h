#pragma once
// The action launcher: kiln-cc run as `kiln-cc --kiln-launcher SOCKET`, the
// init process of a long-lived action sandbox (worker/action_box.h). It
// connects to the worker's socket and runs one Launch at a time (cc.proto),
// so that an action costs a process start, not a container start. After
// each one it kills whatever the action left running in the sandbox.

#include <string>

namespace kiln::cc {

// Serves Launch requests on the socket at `socket_path` until the worker
// closes it; returns the exit code (0 when the worker closed it, 1 when it
// could not connect).
int RunLauncher(const std::string& socket_path);

}  // namespace kiln::cc
