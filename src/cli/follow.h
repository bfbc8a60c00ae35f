#pragma once
// Streaming a job's log (and, for submit, its state changes) with resume
// across controller restarts.

#include <chrono>
#include <cstdint>
#include <string>

#include "cli/client.h"
#include "common/status.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::cli {

struct FollowOptions {
  int64_t job_id = 0;
  int attempt = 0;             // 0: the current attempt, then every later one
  bool follow = true;          // keep streaming until the job ended
  bool status_lines = false;   // print "kiln: job N running on ..." lines to stderr (and a removed log)
  std::string known_unsatisfiable;  // already reported; warn again only if it changes
  bool retry_first_connect = false; // also retry if the very first stream cannot connect
  std::chrono::milliseconds reconnect_for{60'000};  // give up after this long unreachable
  // Once the job ended, stop waiting for the rest of its log after this much
  // silence (a log the controller never completes must not hang the client).
  std::chrono::milliseconds ended_silence{10'000};
};

// Writes the job's log bytes raw to stdout as they arrive (none once the
// log quotas removed the log: the job's log_removed says so). If the stream
// breaks with UNAVAILABLE, reconnects with backoff and resumes at the last
// attempt and offset. Returns the last job state seen (terminal when a
// follow of the current attempt completed), or the error that stopped it.
Result<v1::Job> FollowJob(Client& client, const FollowOptions& options);

}  // namespace kiln::cli
