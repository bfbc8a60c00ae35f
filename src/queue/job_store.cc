#include "queue/job_store.h"

#include "audit/write.h"
#include "common/util.h"
#include "db/pool.h"
#include "queue/job_rows.h"

namespace kiln::queue {
namespace {

using rows::kJobColumns;
using rows::kJobFrom;
using rows::RowToJob;

std::string JobSelect(const std::string& rest) { return std::string("SELECT ") + kJobColumns + kJobFrom + rest; }

constexpr const char* kSubmitAction = "job.submit";
constexpr size_t kAuditArgvBytes = 1024;

// What the audit trail records of a submit: the request id, image, cluster,
// priority, the command (its first KiB) and the NAMES of its environment
// variables and secrets — never their values.
std::string SubmitChange(const NewJob& job) {
  audit::Entry e({}, kSubmitAction, job.project, "");
  std::vector<std::string> argv, env;
  size_t bytes = 0;
  for (const auto& a : job.spec.argv) {
    if (bytes + a.size() > kAuditArgvBytes) {
      argv.push_back(a.substr(0, kAuditArgvBytes - bytes) + "...");
      e.SetJson("argv_cut", "true");
      break;
    }
    argv.push_back(a);
    bytes += a.size();
  }
  for (const auto& [name, value] : job.spec.env) env.push_back(name);
  e.Set("request_id", job.request_id).Set("image", job.spec.image).Set("cluster", job.cluster);
  e.Set("priority", int64_t{job.priority}).Set("argv", argv).Set("env", env);
  if (!job.spec.secret_names.empty()) e.Set("secret_env", job.spec.secret_names);
  return e.change();
}

std::vector<db::Statement> Statements() {
  return {
      {"get_job", JobSelect("WHERE j.id = $1")},
      // Inserts and returns the new job in the shape of get_job, in one
      // statement. With an action digest ($8, scope $9, $10 = no_cache): a
      // cache hit inserts the job already succeeded with the cached result,
      // its log being the producing run's (log_from; attempt 0: it never
      // ran); else an identical job in flight becomes the one it waits for.
      // The same statement writes the audit trail's row: no round trip more.
      {"submit",
       std::string("WITH hit AS (SELECT a.job_id, a.result, s.attempt, s.log_size FROM action_cache a"
                   "   JOIN build_jobs s ON s.id = a.job_id"
                   "   WHERE a.scope = $9 AND a.digest = $8 AND NOT $10),"
                   // A leader that any worker able to run this job could run, at
                   // no lower priority: waiting for it never waits longer.
                   " leader AS (SELECT f.id FROM build_jobs f"
                   "   WHERE f.cache_scope = $9 AND f.action_digest = $8 AND NOT $10"
                   "     AND f.status IN ('queued', 'setup', 'running') AND f.waits_for IS NULL"
                   "     AND f.project_id = (SELECT id FROM projects WHERE name = $1)"
                   "     AND f.cluster_id IS NOT DISTINCT FROM (SELECT id FROM clusters WHERE name = $2)"
                   "     AND (f.status <> 'queued' OR f.priority >= $3)"
                   "     AND NOT EXISTS (SELECT 1 FROM hit) ORDER BY f.id LIMIT 1),"
                   " j AS (INSERT INTO build_jobs (project_id, cluster_id, priority, max_attempts,"
                   "   request_id, requirements, spec, action_digest, cache_scope, waits_for, status, result,"
                   "   started_at, finished_at, log_size, log_from, log_from_attempt, workspace)"
                   " SELECT p.id, (SELECT id FROM clusters WHERE name = $2), $3, $4, nullif($5, ''), $6::jsonb,"
                   "   $7::jsonb, nullif($8, ''), nullif($9, ''), (SELECT id FROM leader),"
                   "   CASE WHEN h.job_id IS NULL THEN 'queued' ELSE 'succeeded' END,"
                   "   h.result || jsonb_build_object('cached_from', h.job_id),"
                   "   CASE WHEN h.job_id IS NOT NULL THEN now() END, CASE WHEN h.job_id IS NOT NULL THEN now() END,"
                   "   coalesce(h.log_size, 0), h.job_id, h.attempt,"
                   "   CASE WHEN $7::jsonb->>'workspace' = 'persistent' THEN $7::jsonb->>'workspace_name' END"
                   " FROM projects p LEFT JOIN hit h ON true WHERE p.name = $1"
                   " ON CONFLICT (project_id, request_id) WHERE request_id IS NOT NULL DO NOTHING"
                   " RETURNING *),"
                   " used AS (UPDATE action_cache a SET last_used = now(), hits = a.hits + 1 FROM j"
                   "   WHERE j.status = 'succeeded' AND a.scope = $9 AND a.digest = $8),"
                   // The audit trail's row, only when a job was inserted (a
                   // repeated request id changes nothing): $11 actor, $12
                   // address, $13 action, $14 the change.
                   " audit AS (INSERT INTO audit_log (actor, address, action, project, target, change)"
                   "   SELECT $11, $12, $13, $1, 'job ' || j.id, $14::jsonb FROM j),"
                   // Sealed secret env ($15, hex; sql/013): only with a new job.
                   " sec AS (INSERT INTO job_secrets (job_id, sealed) SELECT id, decode($15, 'hex') FROM j"
                   "   WHERE $15 <> '')"
                   " SELECT ") +
           kJobColumns + " FROM j JOIN projects p ON p.id = j.project_id LEFT JOIN clusters c ON c.id = j.cluster_id"},
      // The job a request id names in project $4 (request ids are unique per
      // project: sql/008), and whether it is the same submit.
      {"job_by_request", std::string("SELECT ") + kJobColumns +
                             ", (j.spec = $2::jsonb AND j.requirements = $3::jsonb)" + kJobFrom +
                             "WHERE j.request_id = $1 AND p.name = $4"},
      // Whether cluster $1 exists and serves project $2.
      {"submit_cluster_check",
       "SELECT EXISTS (SELECT 1 FROM clusters WHERE name = $1),"
       " EXISTS (SELECT 1 FROM cluster_projects cp JOIN clusters c ON c.id = cp.cluster_id"
       "         JOIN projects p ON p.id = cp.project_id WHERE c.name = $1 AND p.name = $2)"},
      // Among the project's last 10,000 earlier jobs (an index scan).
      {"previous_with_command",
       std::string("WITH me AS (SELECT id, project_id, spec->'argv' AS argv FROM build_jobs WHERE id = $1),"
                   " recent AS (SELECT b.id FROM build_jobs b, me"
                   "   WHERE b.project_id = me.project_id AND b.id < me.id"
                   "   ORDER BY b.id DESC LIMIT 10000)"
                   " SELECT ") +
           kJobColumns + kJobFrom +
           "JOIN recent ON recent.id = j.id, me WHERE j.spec->'argv' = me.argv ORDER BY j.id DESC LIMIT 1"},
      {"list_jobs",
       JobSelect("WHERE ($1 = '' OR p.name = $1) AND (cardinality($2::text[]) = 0 OR j.status = ANY($2::text[]))"
                 " AND ($3 = 0 OR j.id < $3) ORDER BY j.id DESC LIMIT $4")},
      {"cancel_job",
       "UPDATE build_jobs SET cancel_requested = true,"
       " status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,"
       " finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,"
       " result = CASE WHEN status = 'queued' THEN jsonb_build_object('exit_code', -1, 'error',"
       "   'cancelled before it started' || CASE WHEN $2 <> '' THEN ': ' || $2 ELSE '' END) ELSE result END"
       " WHERE id = $1 AND status IN ('queued', 'setup', 'running') RETURNING id, status, attempt, worker_id,"
       " (SELECT name FROM projects p WHERE p.id = build_jobs.project_id)"},
      {"notify_cancel", "SELECT pg_notify('kiln_cancel', $1 || ' ' || $2 || ' ' || $3)"},
      {"job_status", "SELECT status FROM build_jobs WHERE id = $1"},
      {"job_log_source", "SELECT attempt, log_from, log_from_attempt FROM build_jobs WHERE id = $1"},
      // Chunks ending after offset $3, up to $4 bytes (and a chunk) past it.
      {"read_log",
       "SELECT off, data FROM job_logs WHERE job_id = $1 AND attempt = $2"
       " AND off + octet_length(data) > $3 AND off < $3 + $4 + 65536 ORDER BY off"},
      {"unsatisfiable",
       "SELECT count(w.id), count(w.id) FILTER (WHERE w.properties @> j.requirements),"
       "       j.requirements::text, p.name,"
       "       (SELECT string_agg(DISTINCT w2.properties::text, ', ') FROM workers w2"
       "        WHERE w2.state IN ('connected', 'draining')),"
       "       j.requirements @> '{\"plain\": \"yes\"}' AND"
       "       NOT coalesce(bool_or(w.properties @> '{\"plain\": \"yes\"}'), false)"
       " FROM build_jobs j JOIN projects p ON p.id = j.project_id"
       " LEFT JOIN workers w ON w.state IN ('connected', 'draining')"
       "   AND w.cluster_id IN (SELECT cluster_id FROM cluster_projects WHERE project_id = j.project_id)"
       "   AND (j.cluster_id IS NULL OR w.cluster_id = j.cluster_id)"
       " WHERE j.id = $1 GROUP BY j.id, p.name"},
  };
}

}  // namespace

JobStore::JobStore(db::Pool& pool) : pool_(pool) {
  pool_.AddStatements(Statements());
  pool_.AddStatements({audit::InsertStatement()});
}

Result<SubmitOutcome> JobStore::Submit(const NewJob& job, const audit::Who& who) {
  if (job.spec.argv.empty()) return InvalidArgument("empty command: give the command to run after --");
  std::string spec = rows::SpecToJson(job.spec);
  std::string req = rows::RequirementsToJson(job.spec);
  const std::string change = SubmitChange(job);
  return pool_.Query("cannot submit the job", [&](pqxx::connection& c) -> Result<SubmitOutcome> {
    pqxx::nontransaction tx(c);
    if (!job.cluster.empty()) {
      auto r = tx.exec_prepared("submit_cluster_check", job.cluster, job.project);
      if (!r[0][0].as<bool>()) return NotFound("cluster \"" + job.cluster + "\" does not exist (see kiln clusters)");
      if (!r[0][1].as<bool>()) {
        return FailedPrecondition("cluster \"" + job.cluster + "\" does not serve project \"" + job.project +
                                  "\"; map it with: kiln clusters map " + job.cluster + " " + job.project);
      }
    }
    SubmitOutcome out;
    auto r = tx.exec_prepared("submit", job.project, job.cluster, job.priority, job.max_attempts, job.request_id,
                              req, spec, job.action_digest, job.cache_scope, job.no_cache, who.actor, who.address,
                              kSubmitAction, change, HexEncode(job.sealed_secrets));
    if (!r.empty()) {
      out.job = RowToJob(r[0]);
      return out;
    }
    if (!job.request_id.empty()) {
      auto e = tx.exec_prepared("job_by_request", job.request_id, spec, req, job.project);
      if (!e.empty()) {
        if (!e[0][rows::kJobColumnCount].as<bool>()) {
          return AlreadyExists("request id \"" + job.request_id + "\" already names job " +
                               e[0][0].as<std::string>() + " of project " + job.project +
                               " with a different command; use a new request id");
        }
        out.job = RowToJob(e[0]);
        out.existing = true;
        return out;
      }
    }
    return NotFound("project \"" + job.project + "\" does not exist; create it with: kiln projects create " +
                    job.project);
  });
}

Result<Job> JobStore::Get(int64_t id) {
  return pool_.Query("cannot read job " + std::to_string(id), [&](pqxx::connection& c) -> Result<Job> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_prepared("get_job", id);
    if (r.empty()) return NotFound("job " + std::to_string(id) + " does not exist");
    return RowToJob(r[0]);
  });
}

Result<std::optional<Job>> JobStore::PreviousWithCommand(int64_t id) {
  return pool_.Query("cannot look up earlier jobs of job " + std::to_string(id),
                     [&](pqxx::connection& c) -> Result<std::optional<Job>> {
                       pqxx::nontransaction tx(c);
                       auto r = tx.exec_prepared("previous_with_command", id);
                       if (r.empty()) return std::optional<Job>();
                       return std::optional<Job>(RowToJob(r[0]));
                     });
}

Result<std::vector<Job>> JobStore::List(const ListFilter& f) {
  std::string statuses = "{";
  for (size_t i = 0; i < f.statuses.size(); ++i) statuses += (i ? "," : "") + std::string(ToString(f.statuses[i]));
  statuses += "}";
  int limit = f.limit <= 0 ? 50 : std::min(f.limit, 1000);
  return pool_.Query("cannot list jobs", [&](pqxx::connection& c) -> Result<std::vector<Job>> {
    pqxx::nontransaction tx(c);
    std::vector<Job> jobs;
    for (const auto& row : tx.exec_prepared("list_jobs", f.project, statuses, f.before_id, limit))
      jobs.push_back(RowToJob(row));
    return jobs;
  });
}

Result<Job> JobStore::Cancel(int64_t id, const std::string& reason, const audit::Who& who, bool* ended_now) {
  Status s = pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        auto r = tx.exec_prepared("cancel_job", id, reason);
        if (!r.empty()) {
          // Every request reaches the holder, not only the first: a cancel
          // lost on the way (a reconnecting worker) can be asked again.
          const std::string status = r[0][1].as<std::string>();
          if (ended_now != nullptr) *ended_now = status == "cancelled";
          if (status != "cancelled") {
            tx.exec_prepared("notify_cancel", id, r[0][2].as<int>(), r[0][3].as<std::string>());
          }
          // Only a queued job is cancelled at once; any other keeps its status.
          audit::Entry e(who, "job.cancel", r[0][4].as<std::string>(), "job " + std::to_string(id));
          e.Set("reason", reason).Set("status", status == "cancelled" ? "queued" : status);
          audit::Write(tx, e);
          tx.commit();
          return Status::Ok();
        }
        auto e = tx.exec_prepared("job_status", id);
        if (e.empty()) return NotFound("job " + std::to_string(id) + " does not exist");
        return FailedPrecondition("job " + std::to_string(id) + " already ended (" + e[0][0].as<std::string>() +
                                  "); nothing to cancel");
      },
      "cannot cancel job " + std::to_string(id));
  if (!s.ok()) return s;
  return Get(id);
}

Result<LogSlice> JobStore::ReadLog(int64_t id, int attempt, int64_t offset, int64_t max_bytes, bool skip_gaps) {
  return pool_.Query("cannot read the log of job " + std::to_string(id), [&](pqxx::connection& c) -> Result<LogSlice> {
    pqxx::nontransaction tx(c);
    LogSlice out;
    int a = attempt;
    int64_t from = id;  // whose log rows to read
    int from_attempt = attempt;
    if (a <= 0) {
      auto r = tx.exec_prepared("job_log_source", id);
      if (r.empty()) return NotFound("job " + std::to_string(id) + " does not exist");
      a = from_attempt = r[0][0].as<int>();
      // Served from the cache (attempt 0): the producing run's log.
      if (a == 0 && !r[0][1].is_null()) {
        from = r[0][1].as<int64_t>();
        from_attempt = r[0][2].as<int>();
      }
    }
    out.attempt = a;
    out.offset = offset;
    // Contiguous from offset (or, skipping a gap, from the first stored
    // chunk after it).
    auto r = tx.exec_prepared("read_log", from, from_attempt, offset, max_bytes);
    int64_t pos = offset;
    for (const auto& row : r) {
      int64_t off = row[0].as<int64_t>();
      pqxx::binarystring b(row[1]);
      if (off > pos && skip_gaps && out.data.empty()) {
        pos = off;  // bytes [offset, off) were lost with a connection
        out.offset = off;
      }
      if (off > pos) break;  // a gap: a chunk not stored yet
      size_t skip = static_cast<size_t>(pos - off);
      if (skip >= b.size()) continue;
      out.data.append(b.get() + skip, b.size() - skip);
      pos = off + static_cast<int64_t>(b.size());
    }
    if (static_cast<int64_t>(out.data.size()) > max_bytes) out.data.resize(static_cast<size_t>(max_bytes));
    return out;
  });
}

Result<std::string> JobStore::Unsatisfiable(int64_t id) {
  return pool_.Query("cannot check job " + std::to_string(id), [&](pqxx::connection& c) -> Result<std::string> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_prepared("unsatisfiable", id);
    if (r.empty()) return NotFound("job " + std::to_string(id) + " does not exist");
    int64_t eligible = r[0][0].as<int64_t>(), matching = r[0][1].as<int64_t>();
    if (eligible == 0) {
      return "no connected worker belongs to a cluster that serves project \"" + r[0][3].as<std::string>() +
             "\" (see kiln clusters and kiln workers)";
    }
    if (matching == 0 && r[0][5].as<bool>()) {
      return std::string(
          "it names no image and no connected worker runs plain processes: submit with --image "
          "(or set the project's image), or start a trusted worker with allow_plain_jobs = true");
    }
    if (matching == 0) {
      return "no connected worker satisfies the job's requirements " + r[0][2].as<std::string>() +
             "; workers offer " + (r[0][4].is_null() ? std::string("nothing") : r[0][4].as<std::string>());
    }
    return std::string();
  });
}

}  // namespace kiln::queue
