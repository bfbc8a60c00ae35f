#pragma once
// Exit codes of the kiln CLI and the one place errors are printed.
// The table of codes is documented in main.cpp.

#include <chrono>
#include <string>

#include "common/status.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 2;        // bad flags or arguments
inline constexpr int kExitUnreachable = 3;  // UNAVAILABLE, DEADLINE_EXCEEDED
inline constexpr int kExitNotFound = 4;     // NOT_FOUND
inline constexpr int kExitRemote = 5;       // any other error the controller returned
inline constexpr int kExitDenied = 6;       // UNAUTHENTICATED, PERMISSION_DENIED: no token, or it may not
inline constexpr int kExitTimedOut = 124;   // submit: the job hit its timeout
inline constexpr int kExitNoExitCode = 125; // submit: lost, or failed without an exit code
inline constexpr int kExitCancelled = 130;  // submit: cancelled (or Ctrl-C twice)

// Where the error came from, for the UNAVAILABLE / DEADLINE_EXCEEDED hints.
struct ErrorContext {
  std::string controller;
  std::chrono::milliseconds timeout{0};
};

// Exit code for a failed call's status (3, 4, 5 or 6; 2 for a local usage error).
int ExitCodeFor(const Status& s);

// Prints "kiln: error: <message>" to stderr, with a hint for unreachable
// controllers, and returns ExitCodeFor(s).
int ReportError(const Status& s, const ErrorContext& ctx);

// Prints "kiln: error: <message>" to stderr and returns kExitUsage.
int UsageError(const std::string& message);

// Prints "kiln: warning: <message>" to stderr.
void Warn(const std::string& message);

// Exit code that mirrors a finished job: its exit code when it exited
// normally, 124 timed out, 128+signal, 130 cancelled, 125 otherwise.
int JobExitCode(const v1::Job& job);

}  // namespace kiln::cli
