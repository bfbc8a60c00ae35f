#pragma once
// Runs a short helper command (runc, mount, mkfs.ext4) and waits for it.

#include <chrono>
#include <string>
#include <vector>

namespace kiln::worker {

// Runs argv (looked up on PATH) with stdin from /dev/null; returns its exit
// code (128+N if signal N ended it; -1 if it could not start). Its stdout
// and stderr together go to *out when given. With a timeout (> 0), a
// command still running then is killed (SIGKILL) and reaped: 128+9.
int Exec(const std::vector<std::string>& argv, std::string* out = nullptr,
         std::chrono::milliseconds timeout = std::chrono::milliseconds(0));

// runc's own commands (version, list, kill, delete): a hung runc must not
// hold up a job's end or the worker's stop for ever.
inline constexpr std::chrono::milliseconds kRuncCommandTimeout{60'000};

}  // namespace kiln::worker
