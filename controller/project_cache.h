#pragma once
// The in-memory copy of every project's configuration, refreshed by polling
// projects' updated_at and the cache scopes' members (and on NOTIFY
// kiln_config) from the catalog. A configuration's cache_scope is held as
// in effect: the scope's name if an admin created it listing the project,
// else "" (the project's own scope), whatever the document says.

#include <map>
#include <mutex>
#include <string>

#include "common/status.h"
#include "config/project_config.h"

namespace kiln::queue {
class CatalogStore;
}

namespace kiln::controller {

class ProjectCache {
 public:
  explicit ProjectCache(queue::CatalogStore& catalog) : catalog_(catalog) {}
  // Reloads if the version moved (or force). Returns the error of the read.
  Status Refresh(bool force);
  // The project's config, cache_scope as in effect; NotFound if it does not exist (after one reload),
  // InvalidArgument for a name no project can have (common/text.h).
  Result<config::ProjectConfig> Get(const std::string& project);
  // Every project's config as last loaded, by name.
  std::map<std::string, config::ProjectConfig> All();

 private:
  queue::CatalogStore& catalog_;
  std::mutex mu_;
  std::string version_;
  std::map<std::string, config::ProjectConfig> projects_;
};

}  // namespace kiln::controller
