// kiln: the command-line client of a kiln build farm. All logic lives in
// the kiln_cli library; main only maps an escaped exception to an exit code.
//
// Exit codes:
//   0    success
//   1    internal error (a bug in kiln; the message says what failed)
//   2    usage error: unknown flag, missing or malformed argument (e.g. a job
//        id that is not a positive number, a bad KEY=VALUE, a project
//        configuration that fails local validation, an unreadable @FILE)
//   3    controller unreachable (UNAVAILABLE) or too slow (DEADLINE_EXCEEDED);
//        also `kiln cancel` when the job has not stopped 30 s after the request
//   4    not found (NOT_FOUND): no such job, project or cluster; kiln logs: the
//        log quotas removed the log
//   5    any other error from the controller (INVALID_ARGUMENT,
//        FAILED_PRECONDITION such as cancelling a job that already ended,
//        ALREADY_EXISTS, ...); also `kiln cancel` when the job ended on its own
//        before the cancel took effect
//   --help and --version exit 0.
// `kiln submit` without --detach exits like the job once it ended:
//   the build's exit code    when it exited normally (0 when it succeeded)
//   124                      it hit its timeout
//   128+N                    it was killed by signal N
//   130                      it was cancelled (or Ctrl-C was pressed twice)
//   125                      it was lost with its workers, or failed without
//                            an exit code (e.g. it could not start)
//   3, 4, 5                  as above, when following the job failed

#include <cstdio>
#include <exception>

#include "cli/app.h"

int main(int argc, char** argv) {
  try {
    return kiln::cli::Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kiln: error: internal error: %s (please report this as a kiln bug)\n", e.what());
    return 1;
  }
}
