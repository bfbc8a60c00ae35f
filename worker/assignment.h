#pragma once
// A job the controller assigned to this worker, in the worker's own terms:
// converted once from the wire (v1::Assign) when it arrives, and the
// messages that report on it built from it.

#include <cstdint>
#include <optional>
#include <string>

#include "cas/digest.h"
#include "kiln/v1/kiln.pb.h"
#include "queue/types.h"
#include "worker/runner.h"

namespace kiln::worker {

struct Assignment {
  int64_t job_id = 0;
  int attempt = 0;  // the fencing token: every report on the job carries it
  std::string project;
  queue::JobSpec spec;
  // The input tree's root as the controller sent it (not yet checked), or
  // nullopt when the job has none. spec.input_root holds its key form.
  std::optional<cas::Digest> input_root;
  // The secret env (spec.secret_names): in the build's environment, and
  // masked as *** in its log and in compiler output kept by the compile cache.
  std::map<std::string, std::string> secret_env;
  // How many compiles the build may run at once (its KILN_JOBS); 0: unsaid.
  int parallelism = 0;
};

// Converts an assignment from the wire. Never fails: what the fields hold is
// checked where the job uses them (e.g. the input root before it is fetched).
Assignment FromProto(const v1::Assign& a);

// The update that says the job started at `started_ms`.
v1::JobUpdate RunningUpdate(const Assignment& a, int64_t started_ms);
// The final update for a run that ended with `out`, its log `log_size` bytes.
v1::JobUpdate FinalUpdate(const Assignment& a, const RunOutcome& out, int64_t log_size);
// The final update that hands the job back to the queue (QUEUED), with why.
v1::JobUpdate HandBackUpdate(int64_t job_id, int attempt, const std::string& why);

}  // namespace kiln::worker
