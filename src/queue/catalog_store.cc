#include "queue/catalog_store.h"

#include "common/text.h"
#include "db/pool.h"
#include "queue/job_rows.h"

namespace kiln::queue {
namespace {

constexpr const char* kProjectSelect =
    "SELECT p.name, p.config::text, " KILN_MS("p.updated_at") ","
    " (SELECT array_agg(c.name ORDER BY c.name) FROM cluster_projects cp JOIN clusters c ON c.id = cp.cluster_id"
    "  WHERE cp.project_id = p.id) FROM projects p ";

constexpr const char* kClusterSelect =
    "SELECT c.name, (SELECT array_agg(p.name ORDER BY p.name) FROM cluster_projects cp"
    "  JOIN projects p ON p.id = cp.project_id WHERE cp.cluster_id = c.id),"
    " (SELECT count(*) FROM workers w WHERE w.cluster_id = c.id AND w.state IN ('connected', 'draining'))"
    " FROM clusters c ";

std::vector<db::Statement> Statements() {
  return {
      {"list_projects", std::string(kProjectSelect) + "ORDER BY p.name"},
      {"get_project", std::string(kProjectSelect) + "WHERE p.name = $1"},
      {"create_project",
       "INSERT INTO projects (name, config) VALUES ($1, $2::jsonb) ON CONFLICT (name) DO NOTHING RETURNING id"},
      {"set_project_config", "UPDATE projects SET config = $2::jsonb WHERE name = $1"},
      {"projects_version", "SELECT coalesce(max(updated_at)::text, '') || '/' || count(*) FROM projects"},
      {"list_clusters", std::string(kClusterSelect) + "ORDER BY c.name"},
      {"get_cluster", std::string(kClusterSelect) + "WHERE c.name = $1"},
      {"create_cluster", "INSERT INTO clusters (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id"},
      {"cluster_and_project_ids",
       "SELECT (SELECT id FROM clusters WHERE name = $1), (SELECT id FROM projects WHERE name = $2)"},
      {"unmap_project", "DELETE FROM cluster_projects WHERE cluster_id = $1 AND project_id = $2"},
      {"map_project", "INSERT INTO cluster_projects VALUES ($1, $2) ON CONFLICT DO NOTHING"},
  };
}

std::vector<std::string> PgTextArray(const pqxx::field& f) {
  // Array of identifiers produced by array_agg(name): names are restricted
  // by CHECK constraints to [A-Za-z0-9._-], so no quoting occurs.
  std::vector<std::string> out;
  std::string s = f.is_null() ? "" : f.as<std::string>();
  if (s.size() < 2) return out;
  std::string cur;
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    if (s[i] == ',') {
      out.push_back(cur);
      cur.clear();
    } else if (s[i] != '"') {
      cur += s[i];
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

ProjectRow RowToProject(const pqxx::row& r) {
  ProjectRow p;
  p.name = r[0].as<std::string>();
  p.config_json = r[1].as<std::string>();
  p.updated_at_ms = r[2].as<int64_t>();
  p.clusters = PgTextArray(r[3]);
  return p;
}

ClusterRow RowToCluster(const pqxx::row& r) {
  ClusterRow c;
  c.name = r[0].as<std::string>();
  c.projects = PgTextArray(r[1]);
  c.workers = r[2].as<int>();
  return c;
}

Status ProjectNotFound(const std::string& name) {
  return NotFound("project \"" + name + "\" does not exist (see kiln projects list)");
}

}  // namespace

CatalogStore::CatalogStore(db::Pool& pool) : pool_(pool) { pool_.AddStatements(Statements()); }

Result<std::vector<ProjectRow>> CatalogStore::ListProjects() {
  return pool_.Query("cannot list projects", [&](pqxx::connection& c) -> Result<std::vector<ProjectRow>> {
    pqxx::nontransaction tx(c);
    std::vector<ProjectRow> out;
    for (const auto& row : tx.exec_prepared("list_projects")) out.push_back(RowToProject(row));
    return out;
  });
}

Result<ProjectRow> CatalogStore::GetProject(const std::string& name) {
  KILN_RETURN_IF_ERROR(CheckName("project", name));
  return pool_.Query("cannot read project " + name, [&](pqxx::connection& c) -> Result<ProjectRow> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_prepared("get_project", name);
    if (r.empty()) return ProjectNotFound(name);
    return RowToProject(r[0]);
  });
}

Result<ProjectRow> CatalogStore::CreateProject(const std::string& name, const std::string& config_json) {
  KILN_RETURN_IF_ERROR(CheckName("project", name));
  Status s = pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_prepared("create_project", name, config_json.empty() ? "{}" : config_json);
        if (r.empty()) return AlreadyExists("project \"" + name + "\" already exists");
        return Status::Ok();
      },
      "cannot create project " + name);
  if (!s.ok()) return s;
  return GetProject(name);
}

Result<ProjectRow> CatalogStore::SetProjectConfig(const std::string& name, const std::string& config_json) {
  KILN_RETURN_IF_ERROR(CheckName("project", name));
  Status s = pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_prepared("set_project_config", name, config_json);
        if (r.affected_rows() == 0) return ProjectNotFound(name);
        return Status::Ok();
      },
      "cannot update project " + name);
  if (!s.ok()) return s;
  return GetProject(name);
}

Result<std::string> CatalogStore::ProjectsVersion() {
  return pool_.Query("cannot poll project configuration", [&](pqxx::connection& c) -> Result<std::string> {
    pqxx::nontransaction tx(c);
    return tx.exec_prepared("projects_version")[0][0].as<std::string>();
  });
}

Result<std::vector<ClusterRow>> CatalogStore::ListClusters() {
  return pool_.Query("cannot list clusters", [&](pqxx::connection& c) -> Result<std::vector<ClusterRow>> {
    pqxx::nontransaction tx(c);
    std::vector<ClusterRow> out;
    for (const auto& row : tx.exec_prepared("list_clusters")) out.push_back(RowToCluster(row));
    return out;
  });
}

Result<ClusterRow> CatalogStore::CreateCluster(const std::string& name) {
  KILN_RETURN_IF_ERROR(CheckName("cluster", name));
  return pool_.Query("cannot create cluster " + name, [&](pqxx::connection& c) -> Result<ClusterRow> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_prepared("create_cluster", name);
    if (r.empty()) return AlreadyExists("cluster \"" + name + "\" already exists");
    return RowToCluster(tx.exec_prepared("get_cluster", name)[0]);
  });
}

Result<ClusterRow> CatalogStore::MapProject(const std::string& cluster, const std::string& project, bool unmap) {
  KILN_RETURN_IF_ERROR(CheckName("cluster", cluster));
  KILN_RETURN_IF_ERROR(CheckName("project", project));
  return pool_.Query("cannot map project " + project + " to cluster " + cluster,
                     [&](pqxx::connection& c) -> Result<ClusterRow> {
                       pqxx::work tx(c);
                       auto r = tx.exec_prepared("cluster_and_project_ids", cluster, project);
                       if (r[0][0].is_null())
                         return NotFound("cluster \"" + cluster + "\" does not exist (see kiln clusters list)");
                       if (r[0][1].is_null()) return ProjectNotFound(project);
                       tx.exec_prepared(unmap ? "unmap_project" : "map_project", r[0][0].as<int64_t>(),
                                        r[0][1].as<int64_t>());
                       auto out = RowToCluster(tx.exec_prepared("get_cluster", cluster)[0]);
                       tx.commit();
                       return out;
                     });
}

}  // namespace kiln::queue
