#include "queue/types.h"

namespace kiln::queue {

const char* ToString(JobStatus s) {
  switch (s) {
    case JobStatus::kQueued: return "queued";
    case JobStatus::kSetup: return "setup";
    case JobStatus::kRunning: return "running";
    case JobStatus::kSucceeded: return "succeeded";
    case JobStatus::kFailed: return "failed";
    case JobStatus::kCancelled: return "cancelled";
    case JobStatus::kLost: return "lost";
  }
  return "unknown";
}

std::optional<JobStatus> ParseJobStatus(std::string_view s) {
  for (auto st : {JobStatus::kQueued, JobStatus::kSetup, JobStatus::kRunning, JobStatus::kSucceeded,
                  JobStatus::kFailed, JobStatus::kCancelled, JobStatus::kLost}) {
    if (s == ToString(st)) return st;
  }
  return std::nullopt;
}

bool IsTerminal(JobStatus s) {
  return s == JobStatus::kSucceeded || s == JobStatus::kFailed || s == JobStatus::kCancelled ||
         s == JobStatus::kLost;
}

}  // namespace kiln::queue
