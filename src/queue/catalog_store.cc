#include "queue/catalog_store.h"

#include <optional>

#include <algorithm>

#include "common/text.h"
#include "common/util.h"
#include "audit/write.h"
#include "db/pool.h"
#include "queue/job_rows.h"

namespace kiln::queue {
namespace {

// The fifth column is the shared cache scope the project's jobs use: the one
// its configuration names, if that scope exists and lists the project.
constexpr const char* kProjectSelect =
    "SELECT p.name, p.config::text, " KILN_MS("p.updated_at") ","
    " (SELECT array_agg(c.name ORDER BY c.name) FROM cluster_projects cp JOIN clusters c ON c.id = cp.cluster_id"
    "  WHERE cp.project_id = p.id),"
    " (SELECT s.name FROM cache_scopes s WHERE s.name = p.config->>'cache_scope' AND p.name = ANY (s.projects))"
    " FROM projects p ";

constexpr const char* kScopeSelect =
    "SELECT name, array_to_string(projects, ','), created_by, " KILN_MS("created_at") ", " KILN_MS("updated_at")
    " FROM cache_scopes ";

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
      // The configuration a change replaces, and whether it is another.
      {"project_config_for_update",
       "SELECT config::text, config IS DISTINCT FROM $2::jsonb FROM projects WHERE name = $1 FOR UPDATE"},
      // Projects' rows and every scope's members: what the effective scopes depend on.
      {"projects_version",
       "SELECT coalesce(max(updated_at)::text, '') || '/' || count(*) || '/' ||"
       " (SELECT md5(coalesce(string_agg(name || '=' || array_to_string(projects, ','), ';' ORDER BY name), ''))"
       "  FROM cache_scopes) FROM projects"},
      {"list_cache_scopes", std::string(kScopeSelect) + "ORDER BY name"},
      {"get_cache_scope", std::string(kScopeSelect) + "WHERE name = $1"},
      {"cache_scope_for_update", std::string(kScopeSelect) + "WHERE name = $1 FOR UPDATE"},
      {"scope_missing_projects",
       "SELECT p FROM unnest(string_to_array($1, ',')) p WHERE NOT EXISTS (SELECT 1 FROM projects WHERE name = p)"},
      {"set_cache_scope",
       "INSERT INTO cache_scopes (name, projects, created_by) VALUES ($1, string_to_array($2, ',')::text[], $3)"
       " ON CONFLICT (name) DO UPDATE SET projects = EXCLUDED.projects"},
      {"remove_cache_scope", "DELETE FROM cache_scopes WHERE name = $1"},
      // Jobs not yet ended of projects the scope no longer lists ($2, comma
      // separated) leave it: their compiles and their result use their own
      // project's scope from now on.
      {"leave_cache_scope",
       "UPDATE build_jobs j SET cache_scope = 'project:' || p.name FROM projects p"
       " WHERE p.id = j.project_id AND j.cache_scope = 'shared:' || $1"
       "   AND j.status IN ('queued', 'setup', 'running')"
       "   AND NOT (p.name = ANY (string_to_array($2, ',')))"},
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
  p.shared_scope = r[4].is_null() ? "" : r[4].as<std::string>();
  return p;
}

CacheScopeRow RowToScope(const pqxx::row& r) {
  CacheScopeRow s;
  s.name = r[0].as<std::string>();
  s.projects = SplitList(r[1].as<std::string>());
  s.created_by = r[2].as<std::string>();
  s.created_at_ms = r[3].as<int64_t>();
  s.updated_at_ms = r[4].as<int64_t>();
  return s;
}

Status ScopeNotFound(const std::string& name) {
  return NotFound("cache scope \"" + name + "\" does not exist (see kiln cache scopes list)");
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

CatalogStore::CatalogStore(db::Pool& pool) : pool_(pool) {
  pool_.AddStatements(Statements());
  pool_.AddStatements({audit::InsertStatement()});
}

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

Result<ProjectRow> CatalogStore::CreateProject(const std::string& name, const std::string& config_json,
                                               const audit::Who& who) {
  KILN_RETURN_IF_ERROR(CheckName("project", name));
  const std::string config = config_json.empty() ? "{}" : config_json;
  Status s = pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        auto r = tx.exec_prepared("create_project", name, config);
        if (r.empty()) return AlreadyExists("project \"" + name + "\" already exists");
        audit::Write(tx, audit::Entry(who, "project.create", name, "project " + name).SetJson("config", config));
        tx.commit();
        return Status::Ok();
      },
      "cannot create project " + name);
  if (!s.ok()) return s;
  return GetProject(name);
}

Result<ProjectRow> CatalogStore::SetProjectConfig(const std::string& name, const std::string& config_json,
                                                  const audit::Who& who) {
  KILN_RETURN_IF_ERROR(CheckName("project", name));
  Status s = pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        auto old = tx.exec_prepared("project_config_for_update", name, config_json);
        if (old.empty()) return ProjectNotFound(name);
        tx.exec_prepared("set_project_config", name, config_json);
        if (old[0][1].as<bool>()) {
          audit::Write(tx, audit::Entry(who, "project.config", name, "project " + name)
                               .SetJson("old", old[0][0].as<std::string>())
                               .SetJson("new", config_json));
        }
        tx.commit();
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

Result<std::vector<CacheScopeRow>> CatalogStore::ListCacheScopes() {
  return pool_.Query("cannot list cache scopes", [&](pqxx::connection& c) -> Result<std::vector<CacheScopeRow>> {
    pqxx::nontransaction tx(c);
    std::vector<CacheScopeRow> out;
    for (const auto& row : tx.exec_prepared("list_cache_scopes")) out.push_back(RowToScope(row));
    return out;
  });
}

Result<CacheScopeRow> CatalogStore::GetCacheScope(const std::string& name) {
  KILN_RETURN_IF_ERROR(CheckName("cache scope", name));
  return pool_.Query("cannot read cache scope " + name, [&](pqxx::connection& c) -> Result<CacheScopeRow> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_prepared("get_cache_scope", name);
    if (r.empty()) return ScopeNotFound(name);
    return RowToScope(r[0]);
  });
}

Result<CacheScopeRow> CatalogStore::SetCacheScope(const std::string& name, std::vector<std::string> projects,
                                                  const audit::Who& who) {
  KILN_RETURN_IF_ERROR(CheckName("cache scope", name));
  if (projects.empty()) return InvalidArgument("cache scope " + name + ": give the projects that share it");
  if (projects.size() > kMaxScopeProjects)
    return InvalidArgument("cache scope " + name + ": at most " + std::to_string(kMaxScopeProjects) + " projects");
  for (const auto& p : projects) KILN_RETURN_IF_ERROR(CheckName("project", p));
  std::sort(projects.begin(), projects.end());
  projects.erase(std::unique(projects.begin(), projects.end()), projects.end());
  std::string list;
  for (const auto& p : projects) list += (list.empty() ? "" : ",") + p;
  return pool_.Query("cannot set cache scope " + name, [&](pqxx::connection& c) -> Result<CacheScopeRow> {
    pqxx::work tx(c);
    auto missing = tx.exec_prepared("scope_missing_projects", list);
    if (!missing.empty()) return ProjectNotFound(missing[0][0].as<std::string>());
    // The scope's row first: a concurrent change of it waits here.
    auto old = tx.exec_prepared("cache_scope_for_update", name);
    tx.exec_prepared("set_cache_scope", name, list, who.actor);
    tx.exec_prepared("leave_cache_scope", name, list);
    auto out = RowToScope(tx.exec_prepared("get_cache_scope", name)[0]);
    // A new scope, or other members (old_projects: what it listed before).
    std::optional<std::vector<std::string>> before;
    if (!old.empty()) before = RowToScope(old[0]).projects;
    if (before != out.projects) {
      audit::Entry e(who, "cache_scope.set", "", "cache scope " + name);
      e.Set("projects", out.projects);
      if (before) e.Set("old_projects", *before);
      audit::Write(tx, e);
    }
    tx.commit();
    return out;
  });
}

Result<CacheScopeRow> CatalogStore::RemoveCacheScope(const std::string& name, const audit::Who& who) {
  KILN_RETURN_IF_ERROR(CheckName("cache scope", name));
  return pool_.Query("cannot remove cache scope " + name, [&](pqxx::connection& c) -> Result<CacheScopeRow> {
    pqxx::work tx(c);
    auto r = tx.exec_prepared("get_cache_scope", name);
    if (r.empty()) return ScopeNotFound(name);
    auto out = RowToScope(r[0]);
    tx.exec_prepared("remove_cache_scope", name);
    tx.exec_prepared("leave_cache_scope", name, "");
    audit::Write(tx, audit::Entry(who, "cache_scope.remove", "", "cache scope " + name).Set("projects", out.projects));
    tx.commit();
    return out;
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

Result<ClusterRow> CatalogStore::CreateCluster(const std::string& name, const audit::Who& who) {
  KILN_RETURN_IF_ERROR(CheckName("cluster", name));
  return pool_.Query("cannot create cluster " + name, [&](pqxx::connection& c) -> Result<ClusterRow> {
    pqxx::work tx(c);
    auto r = tx.exec_prepared("create_cluster", name);
    if (r.empty()) return AlreadyExists("cluster \"" + name + "\" already exists");
    auto out = RowToCluster(tx.exec_prepared("get_cluster", name)[0]);
    audit::Write(tx, audit::Entry(who, "cluster.create", "", "cluster " + name));
    tx.commit();
    return out;
  });
}

Result<ClusterRow> CatalogStore::MapProject(const std::string& cluster, const std::string& project, bool unmap,
                                            const audit::Who& who) {
  KILN_RETURN_IF_ERROR(CheckName("cluster", cluster));
  KILN_RETURN_IF_ERROR(CheckName("project", project));
  return pool_.Query("cannot map project " + project + " to cluster " + cluster,
                     [&](pqxx::connection& c) -> Result<ClusterRow> {
                       pqxx::work tx(c);
                       auto r = tx.exec_prepared("cluster_and_project_ids", cluster, project);
                       if (r[0][0].is_null())
                         return NotFound("cluster \"" + cluster + "\" does not exist (see kiln clusters list)");
                       if (r[0][1].is_null()) return ProjectNotFound(project);
                       auto changed = tx.exec_prepared(unmap ? "unmap_project" : "map_project",
                                                       r[0][0].as<int64_t>(), r[0][1].as<int64_t>());
                       // Mapped already (or not mapped): nothing changed, nothing to record.
                       if (changed.affected_rows() > 0) {
                         audit::Write(tx, audit::Entry(who, unmap ? "cluster.unmap" : "cluster.map", project,
                                                       "cluster " + cluster));
                       }
                       auto out = RowToCluster(tx.exec_prepared("get_cluster", cluster)[0]);
                       tx.commit();
                       return out;
                     });
}

}  // namespace kiln::queue
