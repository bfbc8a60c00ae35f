#include "controller/submit_policy.h"

#include "cache/action.h"

namespace kiln::controller {

std::string CacheScope(const std::string& project, const config::ProjectConfig& pc) {
  return pc.cache_scope.empty() ? "project:" + project : "shared:" + pc.cache_scope;
}

std::string ImageAsked(const SubmitAsk& ask, const config::ProjectConfig& pc) {
  return !ask.spec.image.empty() ? ask.spec.image : pc.image;
}

queue::NewJob PlanSubmit(const SubmitAsk& ask, const config::ProjectConfig& pc, const std::string& image) {
  queue::NewJob job;
  job.project = ask.project;
  job.cluster = ask.cluster;
  job.priority = ask.priority ? *ask.priority : pc.default_priority;
  job.max_attempts = ask.max_attempts > 0 ? ask.max_attempts : pc.max_attempts;
  job.request_id = ask.request_id;
  job.spec = ask.spec;
  if (job.spec.timeout_s == 0) job.spec.timeout_s = pc.timeout_s;
  for (const auto& [k, v] : pc.env) job.spec.env.emplace(k, v);  // the job's own win
  for (const auto& [k, v] : pc.requirements) job.spec.requirements.emplace(k, v);
  job.spec.requirements.emplace("arch", "x86_64");
  job.spec.image = image;
  if (!pc.compile_cache) job.spec.no_compile_cache = true;
  // The workspace: the job's choice, else the project's.
  const std::string mode = !job.spec.workspace.empty() ? job.spec.workspace : pc.workspace;
  if (mode == "persistent") {
    job.spec.workspace = "persistent";
    if (job.spec.workspace_name.empty()) job.spec.workspace_name = "default";
  } else {
    job.spec.workspace.clear();
    job.spec.workspace_name.clear();
  }
  // Routing: a job with an image only to workers that run containers, one
  // without only to workers that allow plain processes (allow_plain_jobs).
  if (!image.empty()) job.spec.requirements["sandbox"] = "runc";
  else job.spec.requirements["plain"] = "yes";
  // The scope of the compile cache (any job in an image) and of the action
  // cache. A warm workspace's build depends on what earlier builds left in
  // it: it is neither served from the action cache nor cached there.
  if (!image.empty()) job.cache_scope = CacheScope(ask.project, pc);
  if (cache::Cacheable(job.spec)) {
    job.action_digest = cache::ActionDigest(job.spec);
    job.no_cache = ask.no_cache;
  }
  return job;
}

}  // namespace kiln::controller
