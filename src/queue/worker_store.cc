#include "queue/worker_store.h"

#include "audit/write.h"
#include "common/util.h"
#include "db/pool.h"
#include "queue/job_rows.h"

namespace kiln::queue {
namespace {

using json = nlohmann::json;

std::vector<db::Statement> Statements() {
  return {
      {"register_worker",
       "INSERT INTO workers (id, cluster_id, hostname, properties, slots, state, controller_id, session,"
       "                     version, lease_expires_at, work_dir)"
       " SELECT $1, c.id, $3, $4::jsonb, $5, CASE WHEN $9 THEN 'draining' ELSE 'connected' END, $6, $7, $8,"
       "        now() + $10 * interval '1 millisecond', $11"
       " FROM clusters c WHERE c.name = $2"
       " ON CONFLICT (id) DO UPDATE SET cluster_id = excluded.cluster_id, hostname = excluded.hostname,"
       "   properties = excluded.properties, slots = excluded.slots, state = excluded.state,"
       "   controller_id = excluded.controller_id, session = excluded.session, version = excluded.version,"
       "   last_heartbeat = now(), lease_expires_at = excluded.lease_expires_at, work_dir = excluded.work_dir"
       " RETURNING health"},
      {"heartbeat",
       "UPDATE workers SET last_heartbeat = now(), lease_expires_at = now() + $3 * interval '1 millisecond',"
       " state = CASE WHEN $4 THEN 'draining' ELSE 'connected' END,"
       // The health checker's: $5 the last report ('' : none), $6 a new
       // health ('' : unchanged), $7 its reason (when $6 or $8).
       " health_report = CASE WHEN $5 = '' THEN health_report ELSE $5::jsonb END,"
       " health_since = CASE WHEN $6 <> '' AND $6 <> health THEN now() ELSE health_since END,"
       " health_reason = CASE WHEN $6 <> '' OR $8 THEN $7 ELSE health_reason END,"
       " health = CASE WHEN $6 = '' THEN health ELSE $6 END"
       " WHERE id = $1 AND session = $2"},
      {"worker_infra_failure",
       "UPDATE workers SET infra_failures = kiln_infra_append(infra_failures, 1), infra_last = $2 WHERE id = $1"},
      {"worker_infra_failures",
       "SELECT array_to_string(infra_failures, ','), infra_last, (extract(epoch FROM now()) * 1000)::bigint"
       " FROM workers WHERE id = $1"},
      {"list_workers",
       "SELECT w.id, w.hostname, c.name, CASE WHEN w.state IN ('connected', 'draining')"
       "   AND w.lease_expires_at < now() THEN 'silent' ELSE w.state END,"
       " w.version, w.properties::text, w.slots,"
       " (SELECT count(*) FROM build_jobs j WHERE j.worker_id = w.id AND j.status IN ('setup', 'running')),"
       " " KILN_MS("w.last_heartbeat") ", w.health, w.health_reason, " KILN_MS("w.health_since")
       " FROM workers w JOIN clusters c ON c.id = w.cluster_id"
       " WHERE $1 OR w.state IN ('connected', 'draining') ORDER BY c.name, w.hostname, w.id"},
      {"workspace_gone",
       "DELETE FROM workspaces h USING projects p WHERE p.id = h.project_id AND p.name = $1 AND h.name = $2"
       " AND h.worker_id = $3"},
      {"workspace_held",
       "INSERT INTO workspaces (project_id, name, worker_id, root, bytes)"
       " SELECT id, $2, $3, $4, $5 FROM projects WHERE name = $1"
       " ON CONFLICT (project_id, name, worker_id) DO UPDATE SET root = EXCLUDED.root, bytes = EXCLUDED.bytes,"
       "   updated_at = now()"
       " RETURNING removed"},
      {"replace_workspaces",
       "WITH held AS (SELECT p.id AS project_id, h.name, h.root, h.bytes"
       "   FROM jsonb_to_recordset($2::jsonb) AS h(project text, name text, root text, bytes bigint)"
       "   JOIN projects p ON p.name = h.project WHERE h.name <> ''),"
       // A worker process that is gone on this host and worked in this
       // work directory (a restart has a new id): its rows are this one's
       // now, removals included. Keyed by work_dir, so that of several
       // workers on one host each takes over only its own.
       " me AS (SELECT hostname, work_dir FROM workers WHERE id = $1),"
       " dead AS (DELETE FROM workspaces w USING workers o, me"
       "   WHERE o.id = w.worker_id AND o.id <> $1 AND o.state IN ('disconnected', 'lost')"
       "     AND o.hostname = me.hostname AND o.work_dir = me.work_dir"
       "   RETURNING w.project_id, w.name, w.removed),"
       " gone AS (DELETE FROM workspaces w WHERE w.worker_id = $1"
       "   AND NOT EXISTS (SELECT 1 FROM held WHERE held.project_id = w.project_id AND held.name = w.name)),"
       " up AS (INSERT INTO workspaces (project_id, name, worker_id, root, bytes, removed)"
       "   SELECT h.project_id, h.name, $1, h.root, h.bytes,"
       "     EXISTS (SELECT 1 FROM dead d WHERE d.project_id = h.project_id AND d.name = h.name AND d.removed)"
       "   FROM held h"
       "   ON CONFLICT (project_id, name, worker_id) DO UPDATE SET root = EXCLUDED.root, bytes = EXCLUDED.bytes,"
       "     updated_at = now(), removed = workspaces.removed OR EXCLUDED.removed"
       "   RETURNING project_id, name, removed)"
       " SELECT p.name, up.name FROM up JOIN projects p ON p.id = up.project_id WHERE up.removed"},
      {"list_workspaces",
       "SELECT p.name, h.name, h.worker_id, w.state, h.root, h.bytes,"
       " " KILN_MS("h.updated_at") ", h.removed"
       " FROM workspaces h JOIN projects p ON p.id = h.project_id JOIN workers w ON w.id = h.worker_id"
       " WHERE $1 = '' OR p.name = $1 ORDER BY p.name, h.name, h.worker_id"},
      // One statement: each holder is told (NOTIFY on commit).
      {"remove_workspace",
       "WITH removed AS (UPDATE workspaces h SET removed = true FROM projects p"
       " WHERE p.id = h.project_id AND p.name = $1 AND h.name = $2 RETURNING h.worker_id)"
       " SELECT count(pg_notify('kiln_workspace', worker_id || ' ' || $1 || ' ' || $2)) FROM removed"},
  };
}

}  // namespace

WorkerStore::WorkerStore(db::Pool& pool) : pool_(pool) {
  pool_.AddStatements(Statements());
  pool_.AddStatements({audit::InsertStatement()});
}

Result<std::string> WorkerStore::Register(const WorkerRegistration& w, std::chrono::milliseconds lease) {
  json props = w.labels;
  props["arch"] = w.arch;
  props["os"] = w.os;
  return pool_.Query(
      "cannot register worker " + w.id, [&](pqxx::connection& c) -> Result<std::string> {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_prepared("register_worker", w.id, w.cluster, w.hostname, props.dump(), w.slots,
                                  w.controller_id, w.session, w.version, w.draining,
                                  static_cast<int64_t>(lease.count()), w.work_dir);
        if (r.empty()) {
          return NotFound("cluster \"" + w.cluster + "\" does not exist; create it with: kiln clusters create " +
                          w.cluster);
        }
        return r[0][0].as<std::string>();
      });
}

Status WorkerStore::Heartbeat(const std::string& worker_id, const std::string& session,
                              std::chrono::milliseconds lease, bool draining, const HealthRecord& health) {
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_prepared("heartbeat", worker_id, session, static_cast<int64_t>(lease.count()), draining,
                                  health.report_json, health.health, health.reason, health.reason_changed);
        if (r.affected_rows() == 0) {
          return NotFound("worker " + worker_id + " registered again elsewhere; this session is stale");
        }
        return Status::Ok();
      },
      "cannot record heartbeat of worker " + worker_id);
}

Status WorkerStore::NoteInfraFailure(const std::string& worker_id, const std::string& what) {
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        tx.exec_prepared("worker_infra_failure", worker_id, what.substr(0, 300));
        return Status::Ok();
      },
      "cannot record an infrastructure failure of worker " + worker_id);
}

Result<InfraFailures> WorkerStore::InfraFailuresOf(const std::string& worker_id) {
  return pool_.Query("cannot read the infrastructure failures of worker " + worker_id,
                     [&](pqxx::connection& c) -> Result<InfraFailures> {
                       pqxx::nontransaction tx(c);
                       auto r = tx.exec_prepared("worker_infra_failures", worker_id);
                       if (r.empty()) return NotFound("no worker " + worker_id);
                       InfraFailures f;
                       for (const auto& ms : SplitList(r[0][0].as<std::string>(), ','))
                         f.at_ms.push_back(std::stoll(ms));
                       f.last = r[0][1].as<std::string>();
                       f.now_ms = r[0][2].as<int64_t>();
                       return f;
                     });
}

Result<std::vector<WorkerRow>> WorkerStore::List(bool include_gone) {
  return pool_.Query("cannot list workers", [&](pqxx::connection& c) -> Result<std::vector<WorkerRow>> {
    pqxx::nontransaction tx(c);
    std::vector<WorkerRow> out;
    for (const auto& row : tx.exec_prepared("list_workers", include_gone)) {
      WorkerRow w;
      w.id = row[0].as<std::string>();
      w.hostname = row[1].as<std::string>();
      w.cluster = row[2].as<std::string>();
      w.state = row[3].as<std::string>();
      w.version = row[4].as<std::string>();
      w.properties = json::parse(row[5].as<std::string>()).get<std::map<std::string, std::string>>();
      w.slots = row[6].as<int>();
      w.running = row[7].as<int>();
      w.last_heartbeat_ms = row[8].as<int64_t>();
      w.health = row[9].as<std::string>();
      w.health_reason = row[10].as<std::string>();
      w.health_since_ms = row[11].as<int64_t>();
      out.push_back(std::move(w));
    }
    return out;
  });
}

Result<bool> WorkerStore::ReportWorkspace(const std::string& worker_id, const WorkspaceRow& w, bool present) {
  return pool_.Query("cannot record a workspace", [&](pqxx::connection& c) -> Result<bool> {
    pqxx::work tx(c);
    bool removed = false;
    if (!present) {
      tx.exec_prepared("workspace_gone", w.project, w.name, worker_id);
    } else {
      auto r = tx.exec_prepared("workspace_held", w.project, w.name, worker_id, w.root, w.bytes);
      removed = !r.empty() && r[0][0].as<bool>();
    }
    tx.commit();
    return removed;
  });
}

Result<std::vector<WorkspaceRow>> WorkerStore::ReplaceWorkspaces(const std::string& worker_id,
                                                                 const std::vector<WorkspaceRow>& held) {
  json list = json::array();
  for (const auto& w : held)
    list.push_back({{"project", w.project}, {"name", w.name}, {"root", w.root}, {"bytes", w.bytes}});
  return pool_.Query("cannot record the worker's workspaces",
                     [&](pqxx::connection& c) -> Result<std::vector<WorkspaceRow>> {
                       pqxx::work tx(c);
                       std::vector<WorkspaceRow> removed;
                       for (const auto& row : tx.exec_prepared("replace_workspaces", worker_id, list.dump())) {
                         WorkspaceRow w;
                         w.project = row[0].as<std::string>();
                         w.name = row[1].as<std::string>();
                         removed.push_back(std::move(w));
                       }
                       tx.commit();
                       return removed;
                     });
}

Result<std::vector<WorkspaceRow>> WorkerStore::ListWorkspaces(const std::string& project) {
  return pool_.Query("cannot list workspaces", [&](pqxx::connection& c) -> Result<std::vector<WorkspaceRow>> {
    pqxx::read_transaction tx(c);
    std::vector<WorkspaceRow> out;
    for (const auto& row : tx.exec_prepared("list_workspaces", project)) {
      WorkspaceRow w;
      w.project = row[0].as<std::string>();
      w.name = row[1].as<std::string>();
      w.worker_id = row[2].as<std::string>();
      w.worker_state = row[3].as<std::string>();
      w.root = row[4].as<std::string>();
      w.bytes = row[5].as<int64_t>();
      w.updated_ms = row[6].as<int64_t>();
      w.removed = row[7].as<bool>();
      out.push_back(std::move(w));
    }
    return out;
  });
}

Result<int> WorkerStore::RemoveWorkspace(const std::string& project, const std::string& name,
                                         const audit::Who& who) {
  auto n = pool_.Query("cannot remove a workspace", [&](pqxx::connection& c) -> Result<int> {
    pqxx::work tx(c);
    int held = tx.exec_prepared("remove_workspace", project, name)[0][0].as<int>();
    if (held > 0) {
      audit::Write(tx, audit::Entry(who, "workspace.remove", project, "workspace " + name).Set("workers", held));
    }
    tx.commit();
    return held;
  });
  if (n.ok() && *n == 0)
    return NotFound("no worker holds workspace \"" + name + "\" of project " + project +
                    " (kiln workspace list shows what there is)");
  return n;
}

}  // namespace kiln::queue
