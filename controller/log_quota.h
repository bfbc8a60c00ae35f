#pragma once
// Log quotas: which stored logs the pruning pass removes (each project's
// log_retention and log_max_bytes, else the controller's defaults, and the
// farm's total log_max_bytes), and one pass of it, logged.

#include <atomic>
#include <map>
#include <string>

#include "common/status.h"
#include "config/config.h"
#include "config/project_config.h"
#include "queue/log_store.h"

namespace kiln::controller {

class ProjectCache;

// The plan of a pass: every project's rules resolved against the farm's
// defaults, with what a job whose log goes for each rule will say
// ("older than project web's log_retention of 30d").
queue::LogPrunePlan PlanLogQuotas(const std::map<std::string, config::ProjectConfig>& projects,
                                  const config::ControllerConfig& cfg);

// One pruning pass over the projects the cache holds; logs what it removed
// (a line per rule with jobs=, bytes=, reason=) and what failed. Returns
// the outcome, or the database's error.
Result<queue::LogPruneOutcome> PruneLogs(queue::LogStore& store, ProjectCache& projects,
                                         const config::ControllerConfig& cfg, const std::atomic<bool>& stop);

}  // namespace kiln::controller
