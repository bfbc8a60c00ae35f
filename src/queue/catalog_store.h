#pragma once
// The catalog: projects (with their jsonb configuration, updated_at kept by
// a trigger) and clusters, and which clusters serve which projects. None
// throws. Failures: Unavailable when the database cannot be reached,
// NotFound for unknown names, AlreadyExists for a name taken,
// InvalidArgument for a bad name, Internal otherwise.

#include <string>
#include <vector>

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
  Result<ProjectRow> CreateProject(const std::string& name, const std::string& config_json);
  Result<ProjectRow> SetProjectConfig(const std::string& name, const std::string& config_json);
  // Changes whenever any project row changes (max updated_at and count).
  Result<std::string> ProjectsVersion();

  Result<std::vector<ClusterRow>> ListClusters();
  Result<ClusterRow> CreateCluster(const std::string& name);
  Result<ClusterRow> MapProject(const std::string& cluster, const std::string& project, bool unmap);

 private:
  db::Pool& pool_;
};

}  // namespace kiln::queue
