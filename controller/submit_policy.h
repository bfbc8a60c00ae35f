#pragma once
// What a submit becomes: the project's defaults filled in, the job routed by
// whether it runs in an image, its workspace mode, and its action and
// compile cache scope. Pure: no database, no network, no clock.

#include <optional>
#include <string>

#include "config/project_config.h"
#include "queue/types.h"

namespace kiln::controller {

// A submit as the client asked for it, already validated.
struct SubmitAsk {
  std::string project;  // resolved: "default" when the client named none
  std::string cluster;  // optional pin
  std::optional<int> priority;  // none: the project's default
  int max_attempts = 0;         // 0: the project's
  std::string request_id;
  queue::JobSpec spec;  // as submitted
  bool no_cache = false;
};

// The action and compile cache scope of a project's jobs: "project:<name>",
// or "shared:<cache_scope>" for the projects of a scope an admin created.
// `pc` is the configuration as ProjectCache holds it, whose cache_scope is
// set only while that scope lists the project. The two namespaces keep a
// project from naming another's private scope.
std::string CacheScope(const std::string& project, const config::ProjectConfig& pc);

// The image a job asks for: its own, else its project's; "" for none. A
// reference to resolve (a manifest digest, "sha256:" optional).
std::string ImageAsked(const SubmitAsk& ask, const config::ProjectConfig& pc);

// The job to queue. `image` is the resolved manifest digest
// ("sha256:<hex>") of the job's image, else the project's, or "" for none
// (the caller resolves it and refuses an unknown one first).
queue::NewJob PlanSubmit(const SubmitAsk& ask, const config::ProjectConfig& pc, const std::string& image);

}  // namespace kiln::controller
