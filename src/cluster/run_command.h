#pragma once
// Running a provider's helper (systemctl, an operator's command) and waiting
// for it: an argv, never a shell; its input given, its output kept in
// memory up to a bound, and a deadline after which it is killed.

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::cluster {

struct CommandOptions {
  std::string input;                                  // its standard input, then end of file
  std::chrono::milliseconds timeout{30'000};          // then SIGKILL to its process group
  size_t max_output = 1 << 20;                        // bytes of standard output; more is an error
  static constexpr size_t kMaxError = 64 * 1024;      // bytes of standard error kept (the rest read, dropped)
};

struct CommandResult {
  int exit_code = -1;  // its exit status; 128+N if signal N ended it
  std::string out;     // standard output
  std::string err;     // standard error, at most CommandOptions::kMaxError bytes
};

// This process's environment for a provider's children: all of it but the
// KILN_* variables, which are this daemon's settings (KILN_DATABASE_URL
// may hold a password; KILN_CONTROLLER would override a started worker's
// own configuration). A cloud tool's credentials (AWS_*, ...) pass.
std::vector<std::string> ChildEnvironment();

// Runs argv[0] (a path, or a name looked up on PATH) with argv,
// ChildEnvironment(), and a process group of its own. Waits for it to
// exit, not for processes it left behind holding its output open. A
// non-zero exit is a result, not an error. Internal when it cannot start;
// DeadlineExceeded when it outlived the timeout, ResourceExhausted when it
// wrote more than max_output (both times the group was killed). Errors name
// the command (CommandText).
Result<CommandResult> RunCommand(const std::vector<std::string>& argv, const CommandOptions& o = {});

// argv as one line for messages and logs: "systemctl stop kiln-worker@a.service".
std::string CommandText(const std::vector<std::string>& argv);

// A failed run's message: "<command> exited with status N: <its stderr>",
// the stderr trimmed and printable.
std::string CommandFailure(const std::vector<std::string>& argv, const CommandResult& r);

}  // namespace kiln::cluster
