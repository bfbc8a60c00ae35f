#include "controller/log_quota.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "common/util.h"
#include "controller/project_cache.h"

namespace kiln::controller {

queue::LogPrunePlan PlanLogQuotas(const std::map<std::string, config::ProjectConfig>& projects,
                                  const config::ControllerConfig& cfg) {
  queue::LogPrunePlan plan;
  for (const auto& [name, pc] : projects) {
    queue::ProjectLogQuota q;
    q.project = name;
    q.retention_ms = pc.log_retention_ms.value_or(cfg.log_retention.count());
    q.retention_why = "older than project " + name + "'s log_retention of " + FormatDuration(q.retention_ms) +
                      (pc.log_retention_ms ? "" : ", the farm's default");
    q.max_bytes = pc.log_max_bytes.value_or(cfg.project_log_max_bytes);
    q.max_bytes_why = "project " + name + " over its log_max_bytes of " + FormatLimitBytes(q.max_bytes) +
                      (pc.log_max_bytes ? "" : ", the farm's project_log_max_bytes");
    if (q.retention_ms > 0 || q.max_bytes > 0) plan.projects.push_back(std::move(q));
  }
  plan.total_max_bytes = cfg.log_max_bytes;
  plan.total_why = "the farm's stored logs over its log_max_bytes of " + FormatLimitBytes(cfg.log_max_bytes);
  return plan;
}

Result<queue::LogPruneOutcome> PruneLogs(queue::LogStore& store, ProjectCache& projects,
                                         const config::ControllerConfig& cfg, const std::atomic<bool>& stop) {
  auto began = std::chrono::steady_clock::now();
  auto out = store.Prune(PlanLogQuotas(projects.All(), cfg), stop);
  if (!out.ok()) {
    spdlog::warn("log pruning failed: {}", out.status().message());
    return out;
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count();
  for (const auto& [reason, r] : {std::pair{"retention", out->retention},
                                  std::pair{"project_log_max_bytes", out->project_cap},
                                  std::pair{"log_max_bytes", out->total_cap}}) {
    if (r.jobs > 0)
      spdlog::info("removed logs of ended jobs jobs={} bytes={} reason={} ms={}", r.jobs, r.bytes, reason, ms);
  }
  if (out->busy) spdlog::debug("log pruning left to another controller (it holds the lock) counted={}", out->counted);
  else spdlog::debug("log pruning pass counted={} ms={}", out->counted, ms);
  return out;
}

}  // namespace kiln::controller
