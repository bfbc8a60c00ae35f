#pragma once
// The catalog: projects (with their jsonb configuration, updated_at kept by
// a trigger) and clusters, and which clusters serve which projects; the
// shared cache scopes and the projects each lists. None throws. Failures:
// Unavailable when the database cannot be reached, NotFound for unknown
// names, AlreadyExists for a name taken, InvalidArgument for a bad name,
// Internal otherwise. Each change is recorded in the audit trail as made by
// `who`, in its own transaction; a call that changes nothing (a mapping
// that exists, the same configuration or members again) records nothing.

#include <string>
#include <vector>

#include "audit/entry.h"
#include "common/status.h"
#include "queue/types.h"

namespace kiln::db {
class Pool;
}

namespace kiln::queue {

class CatalogStore {
 public:
  // Registers its statements with the pool, which must outlive the store.
  explicit CatalogStore(db::Pool& pool);

  Result<std::vector<ProjectRow>> ListProjects();
  Result<ProjectRow> GetProject(const std::string& name);
  // config_json must already be validated (config::ParseProjectConfig).
  // Recorded as project.create (the configuration) and project.config (the
  // old and the new one).
  Result<ProjectRow> CreateProject(const std::string& name, const std::string& config_json, const audit::Who& who);
  Result<ProjectRow> SetProjectConfig(const std::string& name, const std::string& config_json,
                                      const audit::Who& who);
  // Changes whenever any project row changes (max updated_at and count) or
  // any cache scope's members do.
  Result<std::string> ProjectsVersion();

  // Shared cache scopes, by name.
  Result<std::vector<CacheScopeRow>> ListCacheScopes();
  // NotFound if there is no such scope.
  Result<CacheScopeRow> GetCacheScope(const std::string& name);
  // Creates the scope or replaces its member list (created_by, who.actor
  // at its creation, is kept). Every project must exist (NotFound names the
  // first that does not); at least one, at most kMaxScopeProjects
  // (InvalidArgument). Jobs not yet ended of projects it no longer lists
  // leave the scope. Recorded as cache_scope.set (projects, old_projects).
  Result<CacheScopeRow> SetCacheScope(const std::string& name, std::vector<std::string> projects,
                                      const audit::Who& who);
  // Removes the scope and returns what it was; its members' jobs not yet
  // ended leave it. NotFound if there is no such scope. Recorded as
  // cache_scope.remove.
  Result<CacheScopeRow> RemoveCacheScope(const std::string& name, const audit::Who& who);
  static constexpr size_t kMaxScopeProjects = 1000;

  Result<std::vector<ClusterRow>> ListClusters();
  // Recorded as cluster.create; cluster.map or cluster.unmap (the project's).
  Result<ClusterRow> CreateCluster(const std::string& name, const audit::Who& who);
  Result<ClusterRow> MapProject(const std::string& cluster, const std::string& project, bool unmap,
                                const audit::Who& who);

 private:
  db::Pool& pool_;
};

}  // namespace kiln::queue
