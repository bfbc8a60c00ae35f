#include "queue/dispatch_store.h"

#include <openssl/evp.h>

#include <map>
#include <set>
#include <tuple>

#include "common/util.h"
#include "db/pool.h"
#include "queue/job_rows.h"

namespace kiln::queue {
namespace {

using json = nlohmann::json;
using rows::StatusOf;

// What happens to a job whose worker is gone: back in line (same
// queue_start_time), or lost when its attempts are used up, or cancelled when
// a cancel was pending. $reason is spliced by the caller as a parameter.
#define KILN_REQUEUE_SET(reason)                                                                        \
  " status = CASE WHEN b.cancel_requested THEN 'cancelled'"                                             \
  "               WHEN b.attempt >= b.max_attempts THEN 'lost' ELSE 'queued' END,"                      \
  " worker_id = CASE WHEN b.cancel_requested OR b.attempt >= b.max_attempts THEN b.worker_id END,"      \
  " finished_at = CASE WHEN b.cancel_requested OR b.attempt >= b.max_attempts THEN now() END,"          \
  " started_at = CASE WHEN b.cancel_requested OR b.attempt >= b.max_attempts THEN b.started_at END,"    \
  " result = CASE WHEN b.cancel_requested THEN jsonb_build_object('exit_code', -1, 'error',"            \
  "                 'cancelled; worker ' || b.worker_id || ' went away: ' || " reason ")"               \
  "               WHEN b.attempt >= b.max_attempts THEN jsonb_build_object('exit_code', -1, 'error',"   \
  "                 format('lost: attempt %s of %s was lost with worker %s: %s', b.attempt,"            \
  "                        b.max_attempts, b.worker_id, " reason "))"                                   \
  "          END "

std::string Base64(const std::string& data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// The claim: see docs/architecture.md. MATERIALIZED keeps the planner from
// running the locking subquery more than once. FOR SHARE on the worker row
// serializes the session check with a re-registration or a drop of the
// worker. $1 worker, $2 session, $3 n.
constexpr const char* kClaimSql =
    "WITH w AS (SELECT id, cluster_id, properties FROM workers"
    "           WHERE id = $1 AND session = $2 AND state = 'connected' AND health = 'healthy' FOR SHARE),"
    " claimed AS MATERIALIZED ("
    "  SELECT j.id FROM build_jobs j, w"
    "  WHERE j.status = 'queued'"
    "    AND j.project_id IN (SELECT cp.project_id FROM cluster_projects cp WHERE cp.cluster_id = w.cluster_id)"
    "    AND (j.cluster_id IS NULL OR j.cluster_id = w.cluster_id)"
    "    AND j.requirements <@ w.properties"
    // A warm workspace's job waits, up to the grace ($4 s after it was
    // queued), for a connected worker that holds the workspace.
    "    AND (j.workspace IS NULL OR j.queue_start_time < now() - make_interval(secs => $4)"
    "         OR EXISTS (SELECT 1 FROM workspaces h WHERE h.project_id = j.project_id AND h.name = j.workspace"
    "                    AND h.worker_id = $1 AND NOT h.removed)"
    "         OR NOT EXISTS (SELECT 1 FROM workspaces h JOIN workers o ON o.id = h.worker_id"
    "                        WHERE h.project_id = j.project_id AND h.name = j.workspace AND NOT h.removed"
    "                          AND o.state = 'connected' AND o.health = 'healthy'))"
    // Back after a worker's infrastructure failure: another worker first,
    // the same one again only after the grace.
    "    AND (j.result IS NULL OR j.result->>'infra_worker' IS DISTINCT FROM $1"
    "         OR (j.result->>'infra_at')::timestamptz < now() - make_interval(secs => $4))"
    // An identical job in flight: wait for its result (it becomes this one's).
    "    AND (j.waits_for IS NULL OR NOT EXISTS (SELECT 1 FROM build_jobs f WHERE f.id = j.waits_for"
    "                                            AND f.status IN ('queued', 'setup', 'running')))"
    "  ORDER BY j.priority DESC, j.queue_start_time, j.id"
    "  LIMIT $3 FOR UPDATE OF j SKIP LOCKED)"
    " UPDATE build_jobs b SET status = 'setup', worker_id = $1, attempt = b.attempt + 1,"
    "   started_at = NULL, finished_at = NULL, result = NULL, log_size = 0, waits_for = NULL, assigned_at = now()"
    " FROM claimed, projects p WHERE b.id = claimed.id AND p.id = b.project_id"
    " RETURNING b.id, b.attempt, p.name, b.spec::text, b.requirements::text,"
    "   (SELECT encode(s.sealed, 'hex') FROM job_secrets s WHERE s.job_id = b.id),"
    "   extract(epoch FROM now() - b.submitted_at)::float8,"
    "   extract(epoch FROM now() - coalesce(b.requeued_at, b.submitted_at))::float8";

// Fenced worker reports: $1 is a JSON array of {id, attempt, status,
// result, started_ms, finished_ms, worker, cert, timings}.
// A final report's timings (sql/016) are stored in job_timings in this
// same statement: the farm's history costs no round trip per job.
// A success of a cacheable job also writes its action cache entry (only if
// its output tree's root node is stored, with the size the report states:
// UploadTrees stores a tree whole, so the root stands for every node) and completes the jobs that wait for it
// (their log is its log): all in this one statement.
// A worker's infrastructure failure (result.infrastructure) of an attempt
// that is not the job's last goes back in line instead (sql/001's
// max_attempts counts it), remembering the worker and when: the claim gives
// it to another worker first (see kClaimSql).
constexpr const char* kApplyUpdatesSql =
    "WITH u AS (SELECT r.id, r.attempt,"
    "   CASE WHEN r.status = 'failed' AND coalesce((r.result->>'infrastructure')::boolean, false)"
    "          AND b.attempt < b.max_attempts THEN 'queued' ELSE r.status END AS status,"
    "   r.result, r.started_ms, r.finished_ms, r.worker, r.cert, r.timings"
    " FROM jsonb_to_recordset($1::jsonb)"
    "   AS r(id bigint, attempt int, status text, result jsonb, started_ms bigint, finished_ms bigint,"
    "        worker text, cert text, timings jsonb)"
    " LEFT JOIN build_jobs b ON b.id = r.id),"
    " upd AS (UPDATE build_jobs j SET"
    "  status = CASE WHEN u.status = 'queued' AND j.cancel_requested THEN 'cancelled' ELSE u.status END,"
    "  worker_id = CASE WHEN u.status = 'queued' AND NOT j.cancel_requested THEN NULL ELSE j.worker_id END,"
    "  result = CASE WHEN u.status IN ('succeeded', 'failed', 'cancelled') THEN u.result"
    "                WHEN u.status = 'queued' AND j.cancel_requested"
    "                  THEN '{\"exit_code\": -1, \"error\": \"cancelled\"}'::jsonb"
    "                WHEN u.status = 'queued' AND coalesce((u.result->>'infrastructure')::boolean, false)"
    "                  THEN u.result || jsonb_build_object('infra_worker', u.worker, 'infra_at', now()) END,"
    "  started_at = CASE WHEN u.status = 'queued' AND NOT j.cancel_requested THEN NULL"
    "                    WHEN u.started_ms > 0 THEN to_timestamp(u.started_ms / 1000.0)"
    "                    ELSE j.started_at END,"
    "  finished_at = CASE WHEN u.status IN ('succeeded', 'failed', 'cancelled')"
    "                       OR (u.status = 'queued' AND j.cancel_requested)"
    "                     THEN coalesce(to_timestamp(nullif(u.finished_ms, 0) / 1000.0), now()) END"
    " FROM u"
    " WHERE j.id = u.id AND j.attempt = u.attempt AND j.worker_id = u.worker"
    "   AND (j.status = 'setup' OR (j.status = 'running' AND u.status <> 'running'))"
    " RETURNING j.id, j.attempt, j.status, j.result, j.action_digest, j.cache_scope, j.log_size, j.worker_id,"
    "   nullif(u.cert, '') AS cert, j.spec->>'image' AS image, u.timings, j.queue_start_time, j.assigned_at,"
    "   j.started_at, j.finished_at),"
    " timed AS (INSERT INTO job_timings (job_id, attempt, worker_id, cluster, queued_at, assigned_at, received_at,"
    "     inputs_at, image_at, running_at, ended_at, finished_at, input_bytes, output_bytes, log_bytes)"
    "   SELECT u.id, u.attempt, u.worker_id, c.name, u.queue_start_time, u.assigned_at,"
    "     kiln_ms((u.timings->>'received_ms')::bigint), kiln_ms((u.timings->>'inputs_ms')::bigint),"
    "     kiln_ms((u.timings->>'image_ms')::bigint), u.started_at, kiln_ms((u.timings->>'ended_ms')::bigint),"
    "     u.finished_at, (u.timings->>'input_bytes')::bigint, (u.timings->>'output_bytes')::bigint,"
    "     (u.timings->>'log_bytes')::bigint"
    "   FROM upd u JOIN workers w ON w.id = u.worker_id JOIN clusters c ON c.id = w.cluster_id"
    "   WHERE u.timings IS NOT NULL AND u.status IN ('succeeded', 'failed', 'cancelled')"
    "   ON CONFLICT (job_id) DO NOTHING),"
    // DISTINCT ON: two identical successes in one batch write one entry (an
    // upsert may not touch a row twice in one statement).
    // The entry names its producer: the worker, its certificate and the image.
    " cached AS (INSERT INTO action_cache (scope, digest, job_id, result, worker_id, worker_cert, image)"
    "   SELECT DISTINCT ON (u.cache_scope, u.action_digest) u.cache_scope, u.action_digest, u.id, u.result,"
    "          u.worker_id, u.cert, u.image"
    "   FROM upd u"
    "   WHERE u.status = 'succeeded' AND u.action_digest IS NOT NULL AND u.cache_scope IS NOT NULL"
    "     AND (u.result->>'exit_code')::int = 0"
    "     AND (NOT u.result ? 'output_root' OR EXISTS (SELECT 1 FROM cas_trees t"
    "          WHERE t.digest = split_part(u.result->>'output_root', '/', 1)"
    "            AND t.size::text = split_part(u.result->>'output_root', '/', 2)))"
    "   ORDER BY u.cache_scope, u.action_digest, u.id DESC"
    "   ON CONFLICT (scope, digest) DO UPDATE SET job_id = excluded.job_id, result = excluded.result,"
    "     worker_id = excluded.worker_id, worker_cert = excluded.worker_cert, image = excluded.image,"
    "     created_at = now(), last_used = now()"
    "   RETURNING job_id),"
    " waiters AS (UPDATE build_jobs w SET status = 'succeeded', waits_for = NULL,"
    "     result = u.result || jsonb_build_object('cached_from', u.id),"
    "     started_at = now(), finished_at = now(), log_size = u.log_size, log_from = u.id, log_from_attempt = u.attempt"
    "   FROM upd u WHERE w.waits_for = u.id AND w.status = 'queued' AND u.status = 'succeeded'"
    "   RETURNING w.id, w.attempt, w.status, (SELECT name FROM projects p WHERE p.id = w.project_id) AS project)"
    // The reports' rows, then the waiters they completed (with their project).
    " SELECT id, attempt, status, NULL::text AS project FROM upd"
    " UNION ALL SELECT id, attempt, status, project FROM waiters";

std::vector<db::Statement> Statements() {
  return {
      {"claim", kClaimSql},
      // NOTIFY kiln_jobs, not waited for: a lost one is covered by polling.
      {"notify_jobs", "SELECT set_config('synchronous_commit', 'off', true), pg_notify('kiln_jobs', '')"},
      {"apply_logs",
       "WITH u AS (SELECT * FROM jsonb_to_recordset($1::jsonb)"
       "           AS u(id bigint, attempt int, off bigint, data text, worker text)),"
       " ok AS (SELECT u.id, u.attempt, u.off, decode(u.data, 'base64') AS data FROM u"
       "        JOIN build_jobs j ON j.id = u.id AND j.attempt = u.attempt AND j.worker_id = u.worker"
       "        AND j.status IN ('setup', 'running')),"
       " ins AS (INSERT INTO job_logs (job_id, attempt, off, data) SELECT id, attempt, off, data FROM ok"
       "         ON CONFLICT DO NOTHING RETURNING job_id, attempt, off + octet_length(data) AS e)"
       " UPDATE build_jobs j SET log_size = greatest(j.log_size, m.e)"
       " FROM (SELECT job_id, attempt, max(e) AS e FROM ins GROUP BY 1, 2) m"
       " WHERE j.id = m.job_id AND j.attempt = m.attempt"},
      {"apply_updates", kApplyUpdatesSql},
      {"drop_fenced", "SELECT NOT EXISTS (SELECT 1 FROM workers WHERE id = $1 AND session = $2)"},
      {"drop_worker",
       // The jobs first (as reap takes them: no deadlock between the two),
       // then the worker: a loss with jobs in it counts once against the
       // worker (sql/023), whatever the number of jobs (a job that kills
       // its worker charges each worker once, not once per job), and jobs
       // a reap took meanwhile are neither requeued nor counted again.
       "WITH w AS (SELECT id FROM workers WHERE id = $1 AND session = $2 FOR UPDATE),"
       " requeued AS (UPDATE build_jobs b SET" KILN_REQUEUE_SET("$3::text")
       "   FROM w WHERE b.worker_id = w.id AND b.status IN ('setup', 'running')"
       "   RETURNING b.id, b.status, (SELECT name FROM projects p WHERE p.id = b.project_id) AS project),"
       " marked AS (UPDATE workers SET state = 'disconnected', lease_expires_at = now(),"
       "   infra_failures = kiln_infra_append(infra_failures, least((SELECT count(*) FROM requeued), 1)),"
       "   infra_last = CASE WHEN EXISTS (SELECT 1 FROM requeued) THEN 'jobs lost: ' || $3::text ELSE infra_last END"
       "   WHERE id IN (SELECT id FROM w))"
       " SELECT id, status, project FROM requeued"},
      {"reap",
       "WITH expired AS ("
       "  SELECT j.id, j.attempt FROM build_jobs j JOIN workers w ON w.id = j.worker_id"
       "  WHERE j.status IN ('setup', 'running') AND w.lease_expires_at < now() AND NOT ($1::jsonb ? w.id)"
       "  FOR UPDATE OF j SKIP LOCKED)"
       // Not counted against the worker: a lease also expires when the
       // controllers or the database are away (a restart, a failover),
       // which is no worker's doing.
       " UPDATE build_jobs b SET" KILN_REQUEUE_SET("'its lease expired'")
       " FROM expired e WHERE b.id = e.id AND b.attempt = e.attempt"
       " RETURNING b.id, b.status, (SELECT name FROM projects p WHERE p.id = b.project_id)"},
      {"reap_workers",
       "UPDATE workers SET state = 'lost'"
       " WHERE state IN ('connected', 'draining', 'disconnected') AND lease_expires_at < now() - interval '1 minute'"},
      {"adopt_lost",
       "UPDATE workers SET infra_failures = kiln_infra_append(infra_failures, 1),"
       " infra_last = 'jobs lost: the worker registered again without them (it restarted while they ran)'"
       " WHERE id = $1"},
      {"adopt_owned",
       "SELECT id, attempt, cancel_requested, status = 'running' FROM build_jobs"
       " WHERE worker_id = $1 AND status IN ('setup', 'running') FOR UPDATE"},
      // The worker no longer runs it: back in line.
      {"adopt_requeue", "UPDATE build_jobs b SET" KILN_REQUEUE_SET("'the worker reconnected without it'")
                        "WHERE b.id = $1 AND b.attempt = $2 AND b.status IN ('setup', 'running')"
                        " RETURNING b.id, b.status, (SELECT name FROM projects p WHERE p.id = b.project_id)"},
  };
}

// Rows of (id, status, project) of requeue_set statements.
RequeueOutcome ToRequeueOutcome(const pqxx::result& r) {
  RequeueOutcome o;
  for (const auto& row : r) {
    o.job_ids.push_back(row[0].as<int64_t>());
    auto st = StatusOf(row[1]);
    if (st == JobStatus::kQueued) ++o.requeued;
    else if (st == JobStatus::kLost) ++o.lost;
    else ++o.cancelled;
    if (st != JobStatus::kQueued) o.ended.push_back({row[0].as<int64_t>(), row[2].as<std::string>(""), st});
  }
  return o;
}

}  // namespace

const char* ClaimSql() { return kClaimSql; }
const char* ApplyUpdatesSql() { return kApplyUpdatesSql; }

DispatchStore::DispatchStore(db::Pool& pool, bool record_timings) : pool_(pool), record_timings_(record_timings) {
  pool_.AddStatements(Statements());
}

Status DispatchStore::NotifyJobs() {
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        tx.exec_prepared("notify_jobs");
        tx.commit();
        return Status::Ok();
      },
      "cannot notify other controllers");
}

Result<std::vector<Claimed>> DispatchStore::Claim(const std::string& worker_id, const std::string& session, int n,
                                                  std::chrono::milliseconds workspace_grace) {
  if (n <= 0) return std::vector<Claimed>{};
  return pool_.Query("cannot claim jobs", [&](pqxx::connection& c) -> Result<std::vector<Claimed>> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_prepared("claim", worker_id, session, n, static_cast<double>(workspace_grace.count()) / 1000.0);
    std::vector<Claimed> out;
    out.reserve(r.size());
    for (const auto& row : r) {
      Claimed cl;
      cl.id = row[0].as<int64_t>();
      cl.attempt = row[1].as<int>();
      cl.project = row[2].as<std::string>();
      cl.spec = rows::SpecFromJson(row[3].as<std::string>(), row[4].as<std::string>());
      if (!row[5].is_null()) {
        cl.sealed_secrets = HexDecode(row[5].as<std::string>()).value_or("");
      }
      cl.since_submit_s = row[6].as<double>();
      cl.since_queued_s = row[7].as<double>();
      out.push_back(std::move(cl));
    }
    return out;
  });
}

Result<std::vector<UpdateOutcome>> DispatchStore::Apply(const std::vector<Update>& updates,
                                                        const std::vector<LogAppend>& logs,
                                                        std::vector<EndedJob>* completed) {
  // Collapse to the last update per (worker, job, attempt): an UPDATE ... FROM
  // applies only one source row per target row.
  std::map<std::tuple<std::string, int64_t, int>, size_t> last;
  for (size_t i = 0; i < updates.size(); ++i) last[{updates[i].worker_id, updates[i].job_id, updates[i].attempt}] = i;
  json ups = json::array();
  std::vector<UpdateOutcome> outcomes;
  for (size_t i = 0; i < updates.size(); ++i) {
    const Update& u = updates[i];
    if (last[{u.worker_id, u.job_id, u.attempt}] != i) continue;
    json row = {{"id", u.job_id},          {"attempt", u.attempt},         {"status", ToString(u.status)},
                {"started_ms", u.started_ms}, {"finished_ms", u.finished_ms}, {"worker", u.worker_id},
                {"cert", u.worker_cert}};
    if (u.result) row["result"] = rows::ResultToJson(*u.result);
    if (u.timings && record_timings_) {
      const JobTimings& t = *u.timings;
      row["timings"] = {{"received_ms", t.received_ms}, {"inputs_ms", t.inputs_ms},     {"image_ms", t.image_ms},
                        {"ended_ms", t.ended_ms},       {"input_bytes", t.input_bytes}, {"output_bytes", t.output_bytes},
                        {"log_bytes", t.log_bytes}};
    }
    ups.push_back(std::move(row));
    outcomes.push_back({u.job_id, u.attempt, false, u.status});
  }
  json lg = json::array();
  for (const auto& l : logs) {
    lg.push_back({{"id", l.job_id}, {"attempt", l.attempt}, {"off", l.offset}, {"data", Base64(l.data)},
                  {"worker", l.worker_id}});
  }
  return pool_.Query("cannot apply worker updates", [&](pqxx::connection& c) -> Result<std::vector<UpdateOutcome>> {
        auto run = [&](pqxx::transaction_base& tx) {
          if (completed != nullptr) completed->clear();  // (a retry starts over)
          if (!lg.empty()) tx.exec_prepared("apply_logs", lg.dump());
          if (ups.empty()) return;
          auto r = tx.exec_prepared("apply_updates", ups.dump());
          std::map<std::pair<int64_t, int>, JobStatus> applied;
          for (const auto& row : r) {
            if (row[3].is_null()) applied[{row[0].as<int64_t>(), row[1].as<int>()}] = StatusOf(row[2]);
            else if (completed != nullptr) completed->push_back({row[0].as<int64_t>(), row[3].as<std::string>(), StatusOf(row[2])});
          }
          for (auto& o : outcomes) {
            auto it = applied.find({o.job_id, o.attempt});
            o.applied = it != applied.end();
            if (o.applied) o.status = it->second;
          }
        };
        if (!lg.empty() && !ups.empty()) {
          pqxx::work tx(c);
          run(tx);
          tx.commit();
        } else {
          pqxx::nontransaction tx(c);
          run(tx);
        }
        return outcomes;
  });
}

Result<RequeueOutcome> DispatchStore::DropWorker(const std::string& worker_id, const std::string& session,
                                                 const std::string& why) {
  return pool_.Query("cannot requeue the jobs of worker " + worker_id,
                     [&](pqxx::connection& c) -> Result<RequeueOutcome> {
                       pqxx::work tx(c);
                       if (tx.exec_prepared1("drop_fenced", worker_id, session)[0].as<bool>()) {
                         RequeueOutcome fenced;
                         fenced.fenced = true;
                         return fenced;
                       }
                       auto out = ToRequeueOutcome(tx.exec_prepared("drop_worker", worker_id, session, why));
                       tx.commit();
                       return out;
                     });
}

Result<RequeueOutcome> DispatchStore::Reap(const std::vector<std::string>& skip) {
  const std::string skipped = json(skip).dump();
  return pool_.Query("cannot reap expired leases", [&](pqxx::connection& c) -> Result<RequeueOutcome> {
    pqxx::nontransaction tx(c);
    auto out = ToRequeueOutcome(tx.exec_prepared("reap", skipped));
    tx.exec_prepared("reap_workers");
    return out;
  });
}

Result<std::vector<JobRef>> DispatchStore::Adopt(const std::string& worker_id, const std::vector<JobRef>& running,
                                                 std::vector<EndedJob>* ended, int* lost_jobs) {
  return pool_.Query("cannot reconcile the jobs of worker " + worker_id,
                     [&](pqxx::connection& c) -> Result<std::vector<JobRef>> {
                       pqxx::work tx(c);
                       if (ended != nullptr) ended->clear();  // (a retry starts over)
                       std::vector<JobRef> stop;  // not the worker's any more, or cancelled: stop them
                       std::map<int64_t, int> owned;
                       std::set<int64_t> cancelling;
                       std::set<int64_t> confirmed;  // running: the worker said it started them
                       for (const auto& row : tx.exec_prepared("adopt_owned", worker_id)) {
                         owned[row[0].as<int64_t>()] = row[1].as<int>();
                         if (row[2].as<bool>()) cancelling.insert(row[0].as<int64_t>());
                         if (row[3].as<bool>()) confirmed.insert(row[0].as<int64_t>());
                       }
                       std::map<int64_t, int> reported;
                       for (const auto& ref : running) {
                         reported[ref.job_id] = ref.attempt;
                         auto it = owned.find(ref.job_id);
                         // Not its own any more, or a cancel it may have missed.
                         if (it == owned.end() || it->second != ref.attempt || cancelling.count(ref.job_id))
                           stop.push_back(ref);
                       }
                       int lost = 0;  // jobs it held and does not know of any more
                       for (const auto& [id, attempt] : owned) {
                         auto it = reported.find(id);
                         if (it != reported.end() && it->second == attempt) continue;
                         auto r = ToRequeueOutcome(tx.exec_prepared("adopt_requeue", id, attempt));
                         if (ended != nullptr) ended->insert(ended->end(), r.ended.begin(), r.ended.end());
                         // Lost by the worker: one it had started (an assignment that never
                         // reached it, still in setup, is the network's or a controller's).
                         if (it == reported.end() && !r.job_ids.empty() && confirmed.count(id)) ++lost;
                       }
                       // A worker back without its jobs lost them (it restarted within
                       // the reconnect grace): counted once, as a dropped stream's loss.
                       if (lost > 0) tx.exec_prepared("adopt_lost", worker_id);
                       if (lost_jobs != nullptr) *lost_jobs = lost;
                       tx.commit();
                       return stop;
                     });
}

}  // namespace kiln::queue
