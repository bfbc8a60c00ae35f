#include "queue/queue.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "db/pool.h"

namespace kiln::queue {
namespace {

using json = nlohmann::json;

// Columns of a job as Get and List return them; RowToJob reads them by index.
#define KILN_MS(col) "coalesce((extract(epoch FROM " col ") * 1000)::bigint, 0)"
constexpr const char* kJobColumns =
    "j.id, p.name, coalesce(c.name, ''), j.priority, j.status, j.attempt, j.max_attempts,"
    " coalesce(j.worker_id, ''), j.spec::text, j.requirements::text, coalesce(j.request_id, ''),"
    " " KILN_MS("j.submitted_at") ", " KILN_MS("j.queue_start_time") ", " KILN_MS("j.started_at") ","
    " " KILN_MS("j.finished_at") ", coalesce(j.result::text, ''), j.log_size, j.cancel_requested,"
    " coalesce((SELECT f.id FROM build_jobs f WHERE f.id = j.waits_for"
    "           AND f.status IN ('queued', 'setup', 'running')), 0)";
constexpr const char* kJobFrom =
    " FROM build_jobs j JOIN projects p ON p.id = j.project_id LEFT JOIN clusters c ON c.id = j.cluster_id ";

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

JobSpec SpecFromJson(const std::string& spec_text, const std::string& req_text) {
  JobSpec s;
  json j = json::parse(spec_text);
  s.argv = j.value("argv", std::vector<std::string>{});
  s.env = j.value("env", std::map<std::string, std::string>{});
  s.working_dir = j.value("working_dir", "");
  s.timeout_s = j.value("timeout_s", int64_t{0});
  s.input_root = j.value("input_root", "");
  s.outputs = j.value("outputs", std::vector<std::string>{});
  s.image = j.value("image", "");
  s.memory_bytes = j.value("memory_bytes", int64_t{0});
  s.pids = j.value("pids", 0);
  s.cpu_millis = j.value("cpu_millis", 0);
  s.no_compile_cache = j.value("no_compile_cache", false);
  s.workspace = j.value("workspace", "");
  s.workspace_name = j.value("workspace_name", "");
  if (!req_text.empty()) s.requirements = json::parse(req_text).get<std::map<std::string, std::string>>();
  return s;
}

std::string SpecToJson(const JobSpec& s) {
  json j = {{"argv", s.argv}, {"env", s.env}, {"working_dir", s.working_dir}, {"timeout_s", s.timeout_s}};
  if (!s.input_root.empty()) j["input_root"] = s.input_root;
  if (!s.outputs.empty()) j["outputs"] = s.outputs;
  if (!s.image.empty()) j["image"] = s.image;
  if (s.memory_bytes > 0) j["memory_bytes"] = s.memory_bytes;
  if (s.pids > 0) j["pids"] = s.pids;
  if (s.cpu_millis > 0) j["cpu_millis"] = s.cpu_millis;
  if (s.no_compile_cache) j["no_compile_cache"] = true;
  if (!s.workspace.empty()) j["workspace"] = s.workspace;
  if (!s.workspace_name.empty()) j["workspace_name"] = s.workspace_name;
  return j.dump();
}

json ResultToJson(const JobResult& r) {
  json j = {{"exit_code", r.exit_code}};
  if (r.term_signal != 0) j["term_signal"] = r.term_signal;
  if (!r.error.empty()) j["error"] = r.error;
  if (r.timed_out) j["timed_out"] = true;
  if (!r.output_root.empty()) j["output_root"] = r.output_root;
  if (!r.limit.empty()) j["limit"] = r.limit;
  if (r.cached_from != 0) j["cached_from"] = r.cached_from;
  return j;
}

JobResult ResultFromJson(const std::string& text) {
  json j = json::parse(text);
  JobResult r;
  r.exit_code = j.value("exit_code", -1);
  r.term_signal = j.value("term_signal", 0);
  r.error = j.value("error", "");
  r.timed_out = j.value("timed_out", false);
  r.output_root = j.value("output_root", "");
  r.limit = j.value("limit", "");
  r.cached_from = j.value("cached_from", int64_t{0});
  return r;
}

JobStatus StatusOf(const pqxx::field& f) {
  auto s = ParseJobStatus(f.c_str());
  if (!s) throw std::runtime_error(std::string("unknown job status in database: ") + f.c_str());
  return *s;
}

Job RowToJob(const pqxx::row& r) {
  Job j;
  j.id = r[0].as<int64_t>();
  j.project = r[1].as<std::string>();
  j.cluster = r[2].as<std::string>();
  j.priority = r[3].as<int>();
  j.status = StatusOf(r[4]);
  j.attempt = r[5].as<int>();
  j.max_attempts = r[6].as<int>();
  j.worker_id = r[7].as<std::string>();
  j.spec = SpecFromJson(r[8].as<std::string>(), r[9].as<std::string>());
  j.request_id = r[10].as<std::string>();
  j.submitted_ms = r[11].as<int64_t>();
  j.queued_ms = r[12].as<int64_t>();
  j.started_ms = r[13].as<int64_t>();
  j.finished_ms = r[14].as<int64_t>();
  std::string res = r[15].as<std::string>();
  if (!res.empty()) j.result = ResultFromJson(res);
  j.log_size = r[16].as<int64_t>();
  j.cancel_requested = r[17].as<bool>();
  j.waits_for = r[18].as<int64_t>();
  return j;
}

std::string Base64(const std::string& data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<size_t>(n));
  return out;
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

// The claim: see docs/architecture.md. MATERIALIZED keeps the planner from
// running the locking subquery more than once. FOR SHARE on the worker row
// serializes the session check with a re-registration or a drop of the
// worker. $1 worker, $2 session, $3 n.
constexpr const char* kClaimSql =
    "WITH w AS (SELECT id, cluster_id, properties FROM workers"
    "           WHERE id = $1 AND session = $2 AND state = 'connected' FOR SHARE),"
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
    "                          AND o.state = 'connected'))"
    // An identical job in flight: wait for its result (it becomes this one's).
    "    AND (j.waits_for IS NULL OR NOT EXISTS (SELECT 1 FROM build_jobs f WHERE f.id = j.waits_for"
    "                                            AND f.status IN ('queued', 'setup', 'running')))"
    "  ORDER BY j.priority DESC, j.queue_start_time, j.id"
    "  LIMIT $3 FOR UPDATE OF j SKIP LOCKED)"
    " UPDATE build_jobs b SET status = 'setup', worker_id = $1, attempt = b.attempt + 1,"
    "   started_at = NULL, finished_at = NULL, result = NULL, log_size = 0, waits_for = NULL"
    " FROM claimed, projects p WHERE b.id = claimed.id AND p.id = b.project_id"
    " RETURNING b.id, b.attempt, p.name, b.spec::text, b.requirements::text";

// Fenced worker reports: $1 is a JSON array of {id, attempt, status,
// result, started_ms, finished_ms, worker}.
// A success of a cacheable job also writes its action cache entry (only if
// its output tree's root node is stored: UploadTrees stores a tree whole, so
// the root stands for every node) and completes the jobs that wait for it
// (their log is its log): all in this one statement.
constexpr const char* kApplyUpdatesSql =
    "WITH upd AS (UPDATE build_jobs j SET"
    "  status = CASE WHEN u.status = 'queued' AND j.cancel_requested THEN 'cancelled' ELSE u.status END,"
    "  worker_id = CASE WHEN u.status = 'queued' AND NOT j.cancel_requested THEN NULL ELSE j.worker_id END,"
    "  result = CASE WHEN u.status IN ('succeeded', 'failed', 'cancelled') THEN u.result"
    "                WHEN u.status = 'queued' AND j.cancel_requested"
    "                  THEN '{\"exit_code\": -1, \"error\": \"cancelled\"}'::jsonb END,"
    "  started_at = CASE WHEN u.status = 'queued' AND NOT j.cancel_requested THEN NULL"
    "                    WHEN u.started_ms > 0 THEN to_timestamp(u.started_ms / 1000.0)"
    "                    ELSE j.started_at END,"
    "  finished_at = CASE WHEN u.status IN ('succeeded', 'failed', 'cancelled')"
    "                       OR (u.status = 'queued' AND j.cancel_requested)"
    "                     THEN coalesce(to_timestamp(nullif(u.finished_ms, 0) / 1000.0), now()) END"
    " FROM jsonb_to_recordset($1::jsonb)"
    "   AS u(id bigint, attempt int, status text, result jsonb, started_ms bigint, finished_ms bigint,"
    "        worker text)"
    " WHERE j.id = u.id AND j.attempt = u.attempt AND j.worker_id = u.worker"
    "   AND (j.status = 'setup' OR (j.status = 'running' AND u.status <> 'running'))"
    " RETURNING j.id, j.attempt, j.status, j.result, j.action_digest, j.cache_scope, j.log_size),"
    // DISTINCT ON: two identical successes in one batch write one entry (an
    // upsert may not touch a row twice in one statement).
    " cached AS (INSERT INTO action_cache (scope, digest, job_id, result)"
    "   SELECT DISTINCT ON (u.cache_scope, u.action_digest) u.cache_scope, u.action_digest, u.id, u.result"
    "   FROM upd u"
    "   WHERE u.status = 'succeeded' AND u.action_digest IS NOT NULL AND u.cache_scope IS NOT NULL"
    "     AND (u.result->>'exit_code')::int = 0"
    "     AND (NOT u.result ? 'output_root' OR EXISTS (SELECT 1 FROM cas_trees t"
    "          WHERE t.digest = split_part(u.result->>'output_root', '/', 1)))"
    "   ORDER BY u.cache_scope, u.action_digest, u.id DESC"
    "   ON CONFLICT (scope, digest) DO UPDATE SET job_id = excluded.job_id, result = excluded.result,"
    "     created_at = now(), last_used = now()"
    "   RETURNING job_id),"
    " waiters AS (UPDATE build_jobs w SET status = 'succeeded', waits_for = NULL,"
    "     result = u.result || jsonb_build_object('cached_from', u.id),"
    "     started_at = now(), finished_at = now(), log_size = u.log_size, log_from = u.id, log_from_attempt = u.attempt"
    "   FROM upd u WHERE w.waits_for = u.id AND w.status = 'queued' AND u.status = 'succeeded')"
    " SELECT id, attempt, status FROM upd";

void PrepareAll(pqxx::connection& c) {
  // With LIMIT $3, a custom plan for a small limit looks far cheaper than the
  // generic one, so PostgreSQL would re-plan the claim on every execution.
  // The generic plan is the same ordered scan of build_jobs_queued (checked by
  // QueueTest.DequeueIsAnIndexScanWhateverTheHistory), so keep it.
  {
    pqxx::nontransaction tx(c);
    tx.exec0("SET plan_cache_mode = force_generic_plan");
  }
  c.prepare("get_job", std::string("SELECT ") + kJobColumns + kJobFrom + "WHERE j.id = $1");
  // Inserts and returns the new job in the shape of get_job, in one statement.
  // With an action digest ($8, scope $9, $10 = no_cache): a cache hit
  // inserts the job already succeeded with the cached result, its log being
  // the producing run's (log_from; attempt 0: it never ran); else an
  // identical job in flight becomes the one it waits for.
  c.prepare("submit",
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
                        " ON CONFLICT (request_id) WHERE request_id IS NOT NULL DO NOTHING"
                        " RETURNING *),"
                        " used AS (UPDATE action_cache a SET last_used = now(), hits = a.hits + 1 FROM j"
                        "   WHERE j.status = 'succeeded' AND a.scope = $9 AND a.digest = $8)"
                        " SELECT ") + kJobColumns +
                " FROM j JOIN projects p ON p.id = j.project_id LEFT JOIN clusters c ON c.id = j.cluster_id");
  c.prepare("job_by_request", std::string("SELECT ") + kJobColumns +
                                  ", (j.spec = $2::jsonb AND j.requirements = $3::jsonb AND p.name = $4)" + kJobFrom +
                                  "WHERE j.request_id = $1");
  c.prepare("claim", kClaimSql);
  c.prepare("apply_logs",
            "WITH u AS (SELECT * FROM jsonb_to_recordset($1::jsonb)"
            "           AS u(id bigint, attempt int, off bigint, data text, worker text)),"
            " ok AS (SELECT u.id, u.attempt, u.off, decode(u.data, 'base64') AS data FROM u"
            "        JOIN build_jobs j ON j.id = u.id AND j.attempt = u.attempt AND j.worker_id = u.worker"
            "        AND j.status IN ('setup', 'running')),"
            " ins AS (INSERT INTO job_logs (job_id, attempt, off, data) SELECT id, attempt, off, data FROM ok"
            "         ON CONFLICT DO NOTHING RETURNING job_id, attempt, off + octet_length(data) AS e)"
            " UPDATE build_jobs j SET log_size = greatest(j.log_size, m.e)"
            " FROM (SELECT job_id, attempt, max(e) AS e FROM ins GROUP BY 1, 2) m"
            " WHERE j.id = m.job_id AND j.attempt = m.attempt");
  c.prepare("apply_updates", kApplyUpdatesSql);
  c.prepare("heartbeat",
            "UPDATE workers SET last_heartbeat = now(), lease_expires_at = now() + $3 * interval '1 millisecond',"
            " state = CASE WHEN $4 THEN 'draining' ELSE 'connected' END"
            " WHERE id = $1 AND session = $2");
  c.prepare("drop_worker",
            "WITH w AS (UPDATE workers SET state = 'disconnected', lease_expires_at = now()"
            "           WHERE id = $1 AND session = $2 RETURNING id)"
            " UPDATE build_jobs b SET" KILN_REQUEUE_SET("$3::text")
            " FROM w WHERE b.worker_id = w.id AND b.status IN ('setup', 'running')"
            " RETURNING b.id, b.status");
  c.prepare("reap",
            "WITH expired AS ("
            "  SELECT j.id, j.attempt FROM build_jobs j JOIN workers w ON w.id = j.worker_id"
            "  WHERE j.status IN ('setup', 'running') AND w.lease_expires_at < now()"
            "  FOR UPDATE OF j SKIP LOCKED)"
            " UPDATE build_jobs b SET" KILN_REQUEUE_SET("'its lease expired'")
            " FROM expired e WHERE b.id = e.id AND b.attempt = e.attempt"
            " RETURNING b.id, b.status");
  c.prepare("reap_workers",
            "UPDATE workers SET state = 'lost'"
            " WHERE state IN ('connected', 'draining', 'disconnected') AND lease_expires_at < now() - interval '1 minute'");
}

}  // namespace

const char* ClaimSql() { return kClaimSql; }
const char* ApplyUpdatesSql() { return kApplyUpdatesSql; }

Queue::Queue(std::unique_ptr<db::Pool> pool) : pool_(std::move(pool)) {}
Queue::~Queue() = default;

Result<std::unique_ptr<Queue>> Queue::Create(const std::string& url, size_t pool_size) {
  auto pool = std::make_unique<db::Pool>(url, pool_size, PrepareAll);
  // Fail early with a clear message if the database is unreachable.
  auto lease = pool->Acquire();
  if (!lease.ok()) return lease.status();
  return std::unique_ptr<Queue>(new Queue(std::move(pool)));
}

Result<SubmitOutcome> Queue::Submit(const NewJob& job) {
  if (job.spec.argv.empty()) return InvalidArgument("empty command: give the command to run after --");
  std::string spec = SpecToJson(job.spec);
  std::string req = json(job.spec.requirements).dump();
  SubmitOutcome out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        if (!job.cluster.empty()) {
          auto r = tx.exec_params(
              "SELECT EXISTS (SELECT 1 FROM clusters WHERE name = $1),"
              " EXISTS (SELECT 1 FROM cluster_projects cp JOIN clusters c ON c.id = cp.cluster_id"
              "         JOIN projects p ON p.id = cp.project_id WHERE c.name = $1 AND p.name = $2)",
              job.cluster, job.project);
          if (!r[0][0].as<bool>()) return NotFound("cluster \"" + job.cluster + "\" does not exist (see kiln clusters)");
          if (!r[0][1].as<bool>()) {
            return FailedPrecondition("cluster \"" + job.cluster + "\" does not serve project \"" + job.project +
                                      "\"; map it with: kiln clusters map " + job.cluster + " " + job.project);
          }
        }
        auto r = tx.exec_prepared("submit", job.project, job.cluster, job.priority, job.max_attempts,
                                  job.request_id, req, spec, job.action_digest, job.cache_scope, job.no_cache);
        if (!r.empty()) {
          out.job = RowToJob(r[0]);
          return Status::Ok();
        }
        if (!job.request_id.empty()) {
          auto e = tx.exec_prepared("job_by_request", job.request_id, spec, req, job.project);
          if (!e.empty()) {
            if (!e[0][19].as<bool>()) {
              return AlreadyExists("request id \"" + job.request_id + "\" already names job " +
                                   e[0][0].as<std::string>() +
                                   " with a different command or project; use a new request id");
            }
            out.job = RowToJob(e[0]);
            out.existing = true;
            return Status::Ok();
          }
        }
        return NotFound("project \"" + job.project + "\" does not exist; create it with: kiln projects create " +
                        job.project);
      },
      "cannot submit the job");
  if (!s.ok()) return s;
  return out;
}

Result<Job> Queue::Get(int64_t id) {
  Job job;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_prepared("get_job", id);
        if (r.empty()) return NotFound("job " + std::to_string(id) + " does not exist");
        job = RowToJob(r[0]);
        return Status::Ok();
      },
      "cannot read job " + std::to_string(id));
  if (!s.ok()) return s;
  return job;
}

Result<std::optional<Job>> Queue::PreviousWithCommand(int64_t id) {
  std::optional<Job> out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        // Among the project's last 10,000 earlier jobs (an index scan).
        auto r = tx.exec_params(std::string("WITH me AS (SELECT id, project_id, spec->'argv' AS argv FROM build_jobs"
                                            "            WHERE id = $1),"
                                            " recent AS (SELECT b.id FROM build_jobs b, me"
                                            "   WHERE b.project_id = me.project_id AND b.id < me.id"
                                            "   ORDER BY b.id DESC LIMIT 10000)"
                                            " SELECT ") +
                                    kJobColumns + kJobFrom +
                                    "JOIN recent ON recent.id = j.id, me WHERE j.spec->'argv' = me.argv"
                                    " ORDER BY j.id DESC LIMIT 1",
                                id);
        if (!r.empty()) out = RowToJob(r[0]);
        return Status::Ok();
      },
      "cannot look up earlier jobs of job " + std::to_string(id));
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<Job>> Queue::List(const ListFilter& f) {
  std::vector<Job> jobs;
  std::string statuses = "{";
  for (size_t i = 0; i < f.statuses.size(); ++i) statuses += (i ? "," : "") + std::string(ToString(f.statuses[i]));
  statuses += "}";
  int limit = f.limit <= 0 ? 50 : std::min(f.limit, 1000);
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_params(std::string("SELECT ") + kJobColumns + kJobFrom +
                                    "WHERE ($1 = '' OR p.name = $1) AND (cardinality($2::text[]) = 0 OR j.status = ANY($2::text[]))"
                                    " AND ($3 = 0 OR j.id < $3) ORDER BY j.id DESC LIMIT $4",
                                f.project, statuses, f.before_id, limit);
        for (const auto& row : r) jobs.push_back(RowToJob(row));
        return Status::Ok();
      },
      "cannot list jobs");
  if (!s.ok()) return s;
  return jobs;
}

Result<Job> Queue::Cancel(int64_t id, const std::string& reason) {
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_params(
            "UPDATE build_jobs SET cancel_requested = true,"
            " status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,"
            " finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,"
            " result = CASE WHEN status = 'queued' THEN jsonb_build_object('exit_code', -1, 'error',"
            "   'cancelled before it started' || CASE WHEN $2 <> '' THEN ': ' || $2 ELSE '' END) ELSE result END"
            " WHERE id = $1 AND status IN ('queued', 'setup', 'running') RETURNING id, status, attempt, worker_id",
            id, reason);
        if (!r.empty()) {
          // Every request reaches the holder, not only the first: a cancel
          // lost on the way (a reconnecting worker) can be asked again.
          if (r[0][1].as<std::string>() != "cancelled") {
            tx.exec_params("SELECT pg_notify('kiln_cancel', $1 || ' ' || $2 || ' ' || $3)", id, r[0][2].as<int>(),
                           r[0][3].as<std::string>());
          }
          return Status::Ok();
        }
        auto e = tx.exec_params("SELECT status FROM build_jobs WHERE id = $1", id);
        if (e.empty()) return NotFound("job " + std::to_string(id) + " does not exist");
        return FailedPrecondition("job " + std::to_string(id) + " already ended (" + e[0][0].as<std::string>() +
                                  "); nothing to cancel");
      },
      "cannot cancel job " + std::to_string(id));
  if (!s.ok()) return s;
  return Get(id);
}

Result<LogSlice> Queue::ReadLog(int64_t id, int attempt, int64_t offset, int64_t max_bytes, bool skip_gaps) {
  LogSlice out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        int a = attempt;
        int64_t from = id;  // whose log rows to read
        int from_attempt = attempt;
        if (a <= 0) {
          auto r = tx.exec_params("SELECT attempt, log_from, log_from_attempt FROM build_jobs WHERE id = $1", id);
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
        // Chunks ending after offset, contiguous from offset (or, skipping a
        // gap, from the first stored chunk after it).
        auto r = tx.exec_params(
            "SELECT off, data FROM job_logs WHERE job_id = $1 AND attempt = $2"
            " AND off + octet_length(data) > $3 AND off < $3 + $4 + 65536 ORDER BY off",
            from, from_attempt, offset, max_bytes);
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
        return Status::Ok();
      },
      "cannot read the log of job " + std::to_string(id));
  if (!s.ok()) return s;
  return out;
}

Result<std::string> Queue::Unsatisfiable(int64_t id) {
  std::string why;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_params(
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
            " WHERE j.id = $1 GROUP BY j.id, p.name",
            id);
        if (r.empty()) return NotFound("job " + std::to_string(id) + " does not exist");
        int64_t eligible = r[0][0].as<int64_t>(), matching = r[0][1].as<int64_t>();
        if (eligible == 0) {
          why = "no connected worker belongs to a cluster that serves project \"" + r[0][3].as<std::string>() +
                "\" (see kiln clusters and kiln workers)";
        } else if (matching == 0 && r[0][5].as<bool>()) {
          why = "it names no image and no connected worker runs plain processes: submit with --image "
                "(or set the project's image), or start a trusted worker with allow_plain_jobs = true";
        } else if (matching == 0) {
          why = "no connected worker satisfies the job's requirements " + r[0][2].as<std::string>() +
                "; workers offer " + (r[0][4].is_null() ? std::string("nothing") : r[0][4].as<std::string>());
        }
        return Status::Ok();
      },
      "cannot check job " + std::to_string(id));
  if (!s.ok()) return s;
  return why;
}

Status Queue::NotifyJobs() {
  return pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        tx.exec0("SET LOCAL synchronous_commit = off");
        tx.exec0("NOTIFY kiln_jobs");
        tx.commit();
        return Status::Ok();
      },
      "cannot notify other controllers");
}

Result<std::vector<Claimed>> Queue::Claim(const std::string& worker_id, const std::string& session, int n,
                                          std::chrono::milliseconds workspace_grace) {
  std::vector<Claimed> out;
  if (n <= 0) return out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_prepared("claim", worker_id, session, n,
                                  static_cast<double>(workspace_grace.count()) / 1000.0);
        out.reserve(r.size());
        for (const auto& row : r) {
          Claimed cl;
          cl.id = row[0].as<int64_t>();
          cl.attempt = row[1].as<int>();
          cl.project = row[2].as<std::string>();
          cl.spec = SpecFromJson(row[3].as<std::string>(), row[4].as<std::string>());
          out.push_back(std::move(cl));
        }
        return Status::Ok();
      },
      "cannot claim jobs");
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<UpdateOutcome>> Queue::Apply(const std::vector<Update>& updates,
                                                const std::vector<LogAppend>& logs) {
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
                {"started_ms", u.started_ms}, {"finished_ms", u.finished_ms}, {"worker", u.worker_id}};
    if (u.result) row["result"] = ResultToJson(*u.result);
    ups.push_back(std::move(row));
    outcomes.push_back({u.job_id, u.attempt, false, u.status});
  }
  json lg = json::array();
  for (const auto& l : logs) {
    lg.push_back({{"id", l.job_id}, {"attempt", l.attempt}, {"off", l.offset}, {"data", Base64(l.data)},
                  {"worker", l.worker_id}});
  }
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        auto run = [&](pqxx::transaction_base& tx) {
          if (!lg.empty()) tx.exec_prepared("apply_logs", lg.dump());
          if (ups.empty()) return;
          auto r = tx.exec_prepared("apply_updates", ups.dump());
          std::map<std::pair<int64_t, int>, JobStatus> applied;
          for (const auto& row : r) applied[{row[0].as<int64_t>(), row[1].as<int>()}] = StatusOf(row[2]);
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
        return Status::Ok();
      },
      "cannot apply worker updates");
  if (!s.ok()) return s;
  return outcomes;
}

Status Queue::RegisterWorker(const WorkerRegistration& w, std::chrono::milliseconds lease) {
  json props = w.labels;
  props["arch"] = w.arch;
  props["os"] = w.os;
  return pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_params(
            "INSERT INTO workers (id, cluster_id, hostname, properties, slots, state, controller_id, session,"
            "                     version, lease_expires_at)"
            " SELECT $1, c.id, $3, $4::jsonb, $5, CASE WHEN $9 THEN 'draining' ELSE 'connected' END, $6, $7, $8,"
            "        now() + $10 * interval '1 millisecond'"
            " FROM clusters c WHERE c.name = $2"
            " ON CONFLICT (id) DO UPDATE SET cluster_id = excluded.cluster_id, hostname = excluded.hostname,"
            "   properties = excluded.properties, slots = excluded.slots, state = excluded.state,"
            "   controller_id = excluded.controller_id, session = excluded.session, version = excluded.version,"
            "   last_heartbeat = now(), lease_expires_at = excluded.lease_expires_at"
            " RETURNING id",
            w.id, w.cluster, w.hostname, props.dump(), w.slots, w.controller_id, w.session, w.version, w.draining,
            static_cast<int64_t>(lease.count()));
        if (r.empty()) {
          return NotFound("cluster \"" + w.cluster + "\" does not exist; create it with: kiln clusters create " +
                          w.cluster);
        }
        return Status::Ok();
      },
      "cannot register worker " + w.id);
}

Status Queue::Heartbeat(const std::string& worker_id, const std::string& session, std::chrono::milliseconds lease,
                        bool draining) {
  return pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_prepared("heartbeat", worker_id, session, static_cast<int64_t>(lease.count()), draining);
        if (r.affected_rows() == 0) {
          return NotFound("worker " + worker_id + " registered again elsewhere; this session is stale");
        }
        return Status::Ok();
      },
      "cannot record heartbeat of worker " + worker_id);
}

namespace {
RequeueOutcome ToRequeueOutcome(const pqxx::result& r) {
  RequeueOutcome o;
  for (const auto& row : r) {
    o.job_ids.push_back(row[0].as<int64_t>());
    auto st = StatusOf(row[1]);
    if (st == JobStatus::kQueued) ++o.requeued;
    else if (st == JobStatus::kLost) ++o.lost;
    else ++o.cancelled;
  }
  return o;
}
}  // namespace

Result<RequeueOutcome> Queue::DropWorker(const std::string& worker_id, const std::string& session,
                                         const std::string& why) {
  RequeueOutcome out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        out = ToRequeueOutcome(tx.exec_prepared("drop_worker", worker_id, session, why));
        tx.commit();
        return Status::Ok();
      },
      "cannot requeue the jobs of worker " + worker_id);
  if (!s.ok()) return s;
  return out;
}

Result<RequeueOutcome> Queue::Reap() {
  RequeueOutcome out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        out = ToRequeueOutcome(tx.exec_prepared("reap"));
        tx.exec_prepared("reap_workers");
        return Status::Ok();
      },
      "cannot reap expired leases");
  if (!s.ok()) return s;
  return out;
}

Result<int64_t> Queue::ExpireActionCache(std::chrono::milliseconds max_age) {
  int64_t n = 0;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_params("DELETE FROM action_cache WHERE last_used < now() - make_interval(secs => $1)",
                                static_cast<double>(max_age.count()) / 1000.0);
        n = r.affected_rows();
        return Status::Ok();
      },
      "cannot expire action cache entries");
  if (!s.ok()) return s;
  return n;
}

Result<bool> Queue::ReportWorkspace(const std::string& worker_id, const WorkspaceRow& w, bool present) {
  bool removed = false;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        if (!present) {
          tx.exec_params(
              "DELETE FROM workspaces h USING projects p WHERE p.id = h.project_id AND p.name = $1 AND h.name = $2"
              " AND h.worker_id = $3",
              w.project, w.name, worker_id);
        } else {
          auto r = tx.exec_params(
              "INSERT INTO workspaces (project_id, name, worker_id, root, bytes)"
              " SELECT id, $2, $3, $4, $5 FROM projects WHERE name = $1"
              " ON CONFLICT (project_id, name, worker_id) DO UPDATE SET root = EXCLUDED.root, bytes = EXCLUDED.bytes,"
              "   updated_at = now()"
              " RETURNING removed",
              w.project, w.name, worker_id, w.root, w.bytes);
          removed = !r.empty() && r[0][0].as<bool>();
        }
        tx.commit();
        return Status::Ok();
      },
      "cannot record a workspace");
  if (!s.ok()) return s;
  return removed;
}

Result<std::vector<WorkspaceRow>> Queue::ReplaceWorkspaces(const std::string& worker_id,
                                                           const std::vector<WorkspaceRow>& held) {
  std::vector<WorkspaceRow> removed;
  json list = json::array();
  for (const auto& w : held) list.push_back({{"project", w.project}, {"name", w.name}, {"root", w.root}, {"bytes", w.bytes}});
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        auto r = tx.exec_params(
            "WITH held AS (SELECT p.id AS project_id, h.name, h.root, h.bytes"
            "   FROM jsonb_to_recordset($2::jsonb) AS h(project text, name text, root text, bytes bigint)"
            "   JOIN projects p ON p.name = h.project WHERE h.name <> ''),"
            // A worker process that is gone on this host (a restart has a new
            // id): its rows are this one's now, removals included.
            " dead AS (DELETE FROM workspaces w USING workers o"
            "   WHERE o.id = w.worker_id AND o.id <> $1 AND o.state IN ('disconnected', 'lost')"
            "     AND o.hostname = (SELECT hostname FROM workers WHERE id = $1)"
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
            " SELECT p.name, up.name FROM up JOIN projects p ON p.id = up.project_id WHERE up.removed",
            worker_id, list.dump());
        for (const auto& row : r) {
          WorkspaceRow w;
          w.project = row[0].as<std::string>();
          w.name = row[1].as<std::string>();
          removed.push_back(std::move(w));
        }
        tx.commit();
        return Status::Ok();
      },
      "cannot record the worker's workspaces");
  if (!s.ok()) return s;
  return removed;
}

Result<std::vector<WorkspaceRow>> Queue::ListWorkspaces(const std::string& project) {
  std::vector<WorkspaceRow> out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::read_transaction tx(c);
        auto r = tx.exec_params(
            "SELECT p.name, h.name, h.worker_id, w.state, h.root, h.bytes,"
            " " KILN_MS("h.updated_at") ", h.removed"
            " FROM workspaces h JOIN projects p ON p.id = h.project_id JOIN workers w ON w.id = h.worker_id"
            " WHERE $1 = '' OR p.name = $1 ORDER BY p.name, h.name, h.worker_id",
            project);
        for (const auto& row : r) {
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
        return Status::Ok();
      },
      "cannot list workspaces");
  if (!s.ok()) return s;
  return out;
}

Result<int> Queue::RemoveWorkspace(const std::string& project, const std::string& name) {
  int n = 0;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        // One statement: each holder is told (NOTIFY on commit).
        auto r = tx.exec_params(
            "WITH removed AS (UPDATE workspaces h SET removed = true FROM projects p"
            " WHERE p.id = h.project_id AND p.name = $1 AND h.name = $2 RETURNING h.worker_id)"
            " SELECT count(pg_notify('kiln_workspace', worker_id || ' ' || $1 || ' ' || $2)) FROM removed",
            project, name);
        n = r[0][0].as<int>();
        tx.commit();
        return Status::Ok();
      },
      "cannot remove a workspace");
  if (!s.ok()) return s;
  if (n == 0)
    return NotFound("no worker holds workspace \"" + name + "\" of project " + project +
                    " (kiln workspace list shows what there is)");
  return n;
}

Result<std::vector<JobRef>> Queue::Adopt(const std::string& worker_id, const std::vector<JobRef>& running) {
  std::vector<JobRef> stop;  // not the worker's any more, or cancelled: stop them
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        auto r = tx.exec_params(
            "SELECT id, attempt, cancel_requested FROM build_jobs"
            " WHERE worker_id = $1 AND status IN ('setup', 'running') FOR UPDATE",
            worker_id);
        std::map<int64_t, int> owned;
        std::set<int64_t> cancelling;
        for (const auto& row : r) {
          owned[row[0].as<int64_t>()] = row[1].as<int>();
          if (row[2].as<bool>()) cancelling.insert(row[0].as<int64_t>());
        }
        std::map<int64_t, int> reported;
        for (const auto& ref : running) {
          reported[ref.job_id] = ref.attempt;
          auto it = owned.find(ref.job_id);
          // Not its own any more, or a cancel it may have missed.
          if (it == owned.end() || it->second != ref.attempt || cancelling.count(ref.job_id)) stop.push_back(ref);
        }
        for (const auto& [id, attempt] : owned) {
          auto it = reported.find(id);
          if (it != reported.end() && it->second == attempt) continue;
          // The worker no longer runs it: back in line.
          tx.exec_params(std::string("UPDATE build_jobs b SET") +
                             KILN_REQUEUE_SET("'the worker reconnected without it'") +
                             "WHERE b.id = $1 AND b.attempt = $2 AND b.status IN ('setup', 'running')",
                         id, attempt);
        }
        tx.commit();
        return Status::Ok();
      },
      "cannot reconcile the jobs of worker " + worker_id);
  if (!s.ok()) return s;
  return stop;
}

Result<std::vector<WorkerRow>> Queue::ListWorkers(bool include_gone) {
  std::vector<WorkerRow> out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_params(
            "SELECT w.id, w.hostname, c.name, CASE WHEN w.state IN ('connected', 'draining')"
            "   AND w.lease_expires_at < now() THEN 'silent' ELSE w.state END,"
            " w.version, w.properties::text, w.slots,"
            " (SELECT count(*) FROM build_jobs j WHERE j.worker_id = w.id AND j.status IN ('setup', 'running')),"
            " " KILN_MS("w.last_heartbeat")
            " FROM workers w JOIN clusters c ON c.id = w.cluster_id"
            " WHERE $1 OR w.state IN ('connected', 'draining') ORDER BY c.name, w.hostname, w.id",
            include_gone);
        for (const auto& row : r) {
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
          out.push_back(std::move(w));
        }
        return Status::Ok();
      },
      "cannot list workers");
  if (!s.ok()) return s;
  return out;
}

namespace {
constexpr const char* kProjectSelect =
    "SELECT p.name, p.config::text, " KILN_MS("p.updated_at") ","
    " (SELECT array_agg(c.name ORDER BY c.name) FROM cluster_projects cp JOIN clusters c ON c.id = cp.cluster_id"
    "  WHERE cp.project_id = p.id) FROM projects p ";

ProjectRow RowToProject(const pqxx::row& r) {
  ProjectRow p;
  p.name = r[0].as<std::string>();
  p.config_json = r[1].as<std::string>();
  p.updated_at_ms = r[2].as<int64_t>();
  p.clusters = PgTextArray(r[3]);
  return p;
}

constexpr const char* kClusterSelect =
    "SELECT c.name, (SELECT array_agg(p.name ORDER BY p.name) FROM cluster_projects cp"
    "  JOIN projects p ON p.id = cp.project_id WHERE cp.cluster_id = c.id),"
    " (SELECT count(*) FROM workers w WHERE w.cluster_id = c.id AND w.state IN ('connected', 'draining'))"
    " FROM clusters c ";

ClusterRow RowToCluster(const pqxx::row& r) {
  ClusterRow c;
  c.name = r[0].as<std::string>();
  c.projects = PgTextArray(r[1]);
  c.workers = r[2].as<int>();
  return c;
}

Status CheckName(const std::string& kind, const std::string& name) {
  bool ok = !name.empty() && name.size() <= 63 && std::isalnum(static_cast<unsigned char>(name[0]));
  for (char ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.' && ch != '_' && ch != '-') ok = false;
  }
  if (!ok) {
    return InvalidArgument("invalid " + kind + " name \"" + name +
                           "\": use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit");
  }
  return Status::Ok();
}
}  // namespace

Result<std::vector<ProjectRow>> Queue::ListProjects() {
  std::vector<ProjectRow> out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        for (const auto& row : tx.exec(std::string(kProjectSelect) + "ORDER BY p.name")) out.push_back(RowToProject(row));
        return Status::Ok();
      },
      "cannot list projects");
  if (!s.ok()) return s;
  return out;
}

Result<ProjectRow> Queue::GetProject(const std::string& name) {
  ProjectRow out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_params(std::string(kProjectSelect) + "WHERE p.name = $1", name);
        if (r.empty()) return NotFound("project \"" + name + "\" does not exist (see kiln projects list)");
        out = RowToProject(r[0]);
        return Status::Ok();
      },
      "cannot read project " + name);
  if (!s.ok()) return s;
  return out;
}

Result<ProjectRow> Queue::CreateProject(const std::string& name, const std::string& config_json) {
  KILN_RETURN_IF_ERROR(CheckName("project", name));
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_params(
            "INSERT INTO projects (name, config) VALUES ($1, $2::jsonb) ON CONFLICT (name) DO NOTHING RETURNING id",
            name, config_json.empty() ? "{}" : config_json);
        if (r.empty()) return AlreadyExists("project \"" + name + "\" already exists");
        return Status::Ok();
      },
      "cannot create project " + name);
  if (!s.ok()) return s;
  return GetProject(name);
}

Result<ProjectRow> Queue::SetProjectConfig(const std::string& name, const std::string& config_json) {
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_params("UPDATE projects SET config = $2::jsonb WHERE name = $1", name, config_json);
        if (r.affected_rows() == 0) return NotFound("project \"" + name + "\" does not exist (see kiln projects list)");
        return Status::Ok();
      },
      "cannot update project " + name);
  if (!s.ok()) return s;
  return GetProject(name);
}

Result<std::string> Queue::ProjectsVersion() {
  std::string v;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        v = tx.exec("SELECT coalesce(max(updated_at)::text, '') || '/' || count(*) FROM projects")[0][0]
                .as<std::string>();
        return Status::Ok();
      },
      "cannot poll project configuration");
  if (!s.ok()) return s;
  return v;
}

Result<std::vector<ClusterRow>> Queue::ListClusters() {
  std::vector<ClusterRow> out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        for (const auto& row : tx.exec(std::string(kClusterSelect) + "ORDER BY c.name")) out.push_back(RowToCluster(row));
        return Status::Ok();
      },
      "cannot list clusters");
  if (!s.ok()) return s;
  return out;
}

Result<ClusterRow> Queue::CreateCluster(const std::string& name) {
  KILN_RETURN_IF_ERROR(CheckName("cluster", name));
  ClusterRow out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        auto r = tx.exec_params("INSERT INTO clusters (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id", name);
        if (r.empty()) return AlreadyExists("cluster \"" + name + "\" already exists");
        out = RowToCluster(tx.exec_params(std::string(kClusterSelect) + "WHERE c.name = $1", name)[0]);
        return Status::Ok();
      },
      "cannot create cluster " + name);
  if (!s.ok()) return s;
  return out;
}

Result<ClusterRow> Queue::MapProject(const std::string& cluster, const std::string& project, bool unmap) {
  ClusterRow out;
  Status s = pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        auto r = tx.exec_params("SELECT (SELECT id FROM clusters WHERE name = $1), (SELECT id FROM projects WHERE name = $2)",
                                cluster, project);
        if (r[0][0].is_null()) return NotFound("cluster \"" + cluster + "\" does not exist (see kiln clusters list)");
        if (r[0][1].is_null()) return NotFound("project \"" + project + "\" does not exist (see kiln projects list)");
        if (unmap) {
          tx.exec_params("DELETE FROM cluster_projects WHERE cluster_id = $1 AND project_id = $2", r[0][0].as<int64_t>(),
                         r[0][1].as<int64_t>());
        } else {
          tx.exec_params("INSERT INTO cluster_projects VALUES ($1, $2) ON CONFLICT DO NOTHING", r[0][0].as<int64_t>(),
                         r[0][1].as<int64_t>());
        }
        out = RowToCluster(tx.exec_params(std::string(kClusterSelect) + "WHERE c.name = $1", cluster)[0]);
        tx.commit();
        return Status::Ok();
      },
      "cannot map project " + project + " to cluster " + cluster);
  if (!s.ok()) return s;
  return out;
}

}  // namespace kiln::queue
