#pragma once
// Project configuration: a jsonb document in projects.config, validated on
// every write. Known keys:
//   default_priority  integer -1000..1000
//   max_attempts      integer 1..100
//   timeout_s         integer 1..604800
//   env               object of string -> string, merged under the job's env
//   requirements      object of string -> string, merged under the job's
//   image             "sha256:<hex>": the image of jobs that name none
//   cache_scope       name of a shared action/compile cache scope that lists the project
//   compile_cache     false: no compile cache wrapper in this project's builds
//   workspace         "persistent": builds run in warm workspaces by default
//   log_retention     a duration, "1s".."3650d" ("30d", "12h"), or "0": the logs of
//                     jobs that ended longer ago are removed; "0" keeps them
//   log_max_bytes     a size ("10GiB", or a number of bytes): past it the oldest
//                     ended jobs' logs are removed; 0: no cap of the project's own
// (the last two: the controller's log_retention and project_log_max_bytes when unset)

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/status.h"

namespace kiln::config {

struct ProjectConfig {
  int default_priority = 0;
  int max_attempts = 3;
  int64_t timeout_s = 3600;
  std::map<std::string, std::string> env;
  std::map<std::string, std::string> requirements;
  std::string image;  // "sha256:<hex>" or empty
  // Action and compile cache entries are shared within a scope: the project's
  // own unless set. Projects share one only if an admin created the scope
  // listing them (kiln cache scopes set); the controller's project cache
  // holds "" here for a project the named scope does not list.
  std::string cache_scope;
  // Jobs in an image run with the compile cache's wrapper first on PATH.
  bool compile_cache = true;
  // "persistent": jobs run in warm workspaces unless they ask for "fresh".
  std::string workspace = "fresh";
  // Log quotas; unset: the controller's defaults.
  std::optional<int64_t> log_retention_ms;  // 0: logs kept for ever
  std::optional<int64_t> log_max_bytes;     // 0: no cap of the project's own
};

// log_retention's bounds (0 aside): short enough for tests, at most ten years.
constexpr int64_t kMinLogRetentionMs = 1000;
constexpr int64_t kMaxLogRetentionMs = 3650LL * 86'400'000;

// Parses and validates a project configuration document. InvalidArgument
// names the offending key and says what is allowed.
Result<ProjectConfig> ParseProjectConfig(const std::string& json_text);

// The cap on a configuration document as written (CreateProject,
// SetProjectConfig): every controller holds every project's in memory.
constexpr size_t kMaxProjectConfigBytes = 64 << 10;
// Ok, or InvalidArgument "project configuration too large: N bytes, at most 65536".
Status CheckProjectConfigSize(const std::string& json_text);

}  // namespace kiln::config
