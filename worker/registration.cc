#include "worker/registration.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "common/version.h"

namespace kiln::worker {

v1::WorkerMessage Registration(const config::WorkerConfig& cfg, const WorkerIdentity& who, bool draining,
                               const std::vector<v1::WorkspaceReport>& workspaces, const JobLedger::Held& held) {
  v1::WorkerMessage reg;
  auto* r = reg.mutable_register_();
  r->set_worker_id(who.id);
  r->set_hostname(who.hostname);
  r->set_arch(who.arch);
  r->set_os("linux");
  r->set_slots(cfg.slots);
  r->set_action_slots(std::max(0, cfg.action_slots));
  for (const auto& [k, v] : cfg.labels) (*r->mutable_labels())[k] = v;
  if (who.sandbox) (*r->mutable_labels())["sandbox"] = "runc";
  if (cfg.allow_plain_jobs) (*r->mutable_labels())["plain"] = "yes";
  r->set_cluster(cfg.cluster);
  std::error_code ec;
  auto dir = std::filesystem::absolute(cfg.work_dir, ec);
  r->set_work_dir((ec ? std::filesystem::path(cfg.work_dir) : dir.lexically_normal()).string());
  r->set_version(kVersion);
  r->set_draining(draining);
  for (const auto& ws : workspaces) *r->add_workspaces() = ws;
  for (const auto& [job_id, attempt] : held.running) {
    auto* ref = r->add_running();
    ref->set_job_id(job_id);
    ref->set_attempt(attempt);
  }
  return reg;
}

}  // namespace kiln::worker
