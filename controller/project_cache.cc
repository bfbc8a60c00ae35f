#include "controller/project_cache.h"

#include <spdlog/spdlog.h>

#include "common/text.h"
#include "queue/catalog_store.h"

namespace kiln::controller {

Status ProjectCache::Refresh(bool force) {
  auto v = catalog_.ProjectsVersion();
  if (!v.ok()) return v.status();
  {
    std::lock_guard g(mu_);
    if (!force && *v == version_) return Status::Ok();
  }
  auto rows = catalog_.ListProjects();
  if (!rows.ok()) return rows.status();
  std::map<std::string, config::ProjectConfig> next;
  for (const auto& p : *rows) {
    auto c = config::ParseProjectConfig(p.config_json);
    if (!c.ok()) {
      // Written around the API (by SQL): keep defaults, say so.
      spdlog::warn("invalid configuration of project {} ignored: {}", p.name, c.status().message());
      next[p.name] = config::ProjectConfig{};
    } else {
      // The scope its jobs use: the one it names only if an admin created
      // that scope listing it (sql/010); else its own.
      if (c->cache_scope != p.shared_scope)
        spdlog::debug("cache scope not in effect project={} cache_scope={}", p.name, c->cache_scope);
      c->cache_scope = p.shared_scope;
      next[p.name] = *c;
    }
  }
  std::lock_guard g(mu_);
  projects_ = std::move(next);
  version_ = *v;
  spdlog::debug("project configuration loaded: {} projects", projects_.size());
  return Status::Ok();
}

Result<config::ProjectConfig> ProjectCache::Get(const std::string& project) {
  // A name that cannot exist is refused before it costs a reload.
  KILN_RETURN_IF_ERROR(CheckName("project", project));
  for (int pass = 0; pass < 2; ++pass) {
    {
      std::lock_guard g(mu_);
      auto it = projects_.find(project);
      if (it != projects_.end()) return it->second;
    }
    if (pass == 0) KILN_RETURN_IF_ERROR(Refresh(true));
  }
  return NotFound("project \"" + project + "\" does not exist; create it with: kiln projects create " + project);
}

std::map<std::string, config::ProjectConfig> ProjectCache::All() {
  std::lock_guard g(mu_);
  return projects_;
}

}  // namespace kiln::controller
