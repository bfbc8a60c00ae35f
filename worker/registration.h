#pragma once
// The message a worker opens each connection to the controller with: who it
// is, what it can run, the warm workspaces it holds, and the jobs it holds.

#include <string>
#include <vector>

#include "config/config.h"
#include "kiln/v1/kiln.pb.h"
#include "worker/ledger.h"

namespace kiln::worker {

struct WorkerIdentity {
  std::string id;
  std::string hostname;
  std::string arch;
  bool sandbox = false;  // runs containers (runc)
};

// The registration: cfg's slots, labels and cluster, with the labels
// "sandbox" = "runc" and "plain" = "yes" for what this worker runs, and as
// running every job in `held` (those with an unacknowledged final report
// too: without them the controller would think them lost and run them again).
v1::WorkerMessage Registration(const config::WorkerConfig& cfg, const WorkerIdentity& who, bool draining,
                               const std::vector<v1::WorkspaceReport>& workspaces, const JobLedger::Held& held);

}  // namespace kiln::worker
