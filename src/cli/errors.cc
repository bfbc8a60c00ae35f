#include "cli/errors.h"

#include <cstdio>

#include "common/util.h"

namespace kiln::cli {

int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case Code::kOk: return kExitOk;
    case Code::kUnavailable:
    case Code::kDeadlineExceeded: return kExitUnreachable;
    case Code::kNotFound: return kExitNotFound;
    case Code::kUnauthenticated:
    case Code::kPermissionDenied: return kExitDenied;
    default: return kExitRemote;
  }
}

int ReportError(const Status& s, const ErrorContext& ctx) {
  std::string msg;
  switch (s.code()) {
    case Code::kUnavailable:
      msg = "cannot reach the controller at " + ctx.controller + ": " + s.message();
      if (s.message().find("andshake") != std::string::npos || s.message().find("SSL") != std::string::npos ||
          s.message().find("ssl") != std::string::npos || s.message().find("ertificate") != std::string::npos) {
        msg += "; the TLS handshake failed: give the farm's CA certificate (--ca or KILN_CA), or --insecure for a "
               "controller that serves plaintext";
      } else {
        msg += "; is kiln-controller running? (set --controller or KILN_CONTROLLER)";
      }
      break;
    case Code::kDeadlineExceeded:
      msg = "the controller at " + ctx.controller + " did not answer within " + FormatMs(ctx.timeout.count()) +
            " (" + s.message() + "); it may be overloaded or unreachable (raise --timeout to wait longer)";
      break;
    case Code::kUnimplemented:
      msg = "the controller at " + ctx.controller + " does not implement this call (" + s.message() +
            "); is it a kiln-controller at least as new as this client?";
      break;
    default:
      msg = s.message();
  }
  std::fprintf(stderr, "kiln: error: %s\n", msg.c_str());
  return ExitCodeFor(s);
}

int UsageError(const std::string& message) {
  std::fprintf(stderr, "kiln: error: %s\n", message.c_str());
  return kExitUsage;
}

void Warn(const std::string& message) { std::fprintf(stderr, "kiln: warning: %s\n", message.c_str()); }

int JobExitCode(const v1::Job& job) {
  switch (job.status()) {
    case v1::SUCCEEDED: return kExitOk;
    case v1::CANCELLED: return kExitCancelled;
    case v1::LOST: return kExitNoExitCode;
    default: break;
  }
  const v1::JobResult& r = job.result();
  if (r.timed_out()) return kExitTimedOut;
  if (r.term_signal() > 0) return 128 + r.term_signal();
  // A failed job that "exited 0" did not really exit normally (kiln failed it).
  if (r.exit_code() > 0 && r.exit_code() < 256) return r.exit_code();
  return kExitNoExitCode;
}

}  // namespace kiln::cli
