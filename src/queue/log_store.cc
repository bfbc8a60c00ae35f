#include "queue/log_store.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>

#include "db/pool.h"

namespace kiln::queue {
namespace {

using json = nlohmann::json;

// pg_try_advisory_xact_lock key of the pruning pass: "kilnlogs" in ASCII.
constexpr int64_t kPruneLock = 0x6b696c6e6c6f6773;
// Ended jobs counted per statement.
constexpr int kCountBatch = 1000;

// An ended job with a stored log: the predicate of the partial indexes
// build_jobs_log_kept and build_jobs_log_kept_age (sql/014).
#define KILN_LOG_KEPT "b.log_bytes > 0 AND b.log_removed_at IS NULL"
// Oldest first, with the bytes kept up to and including each job.
#define KILN_OLDEST_WITH_RUNNING_SUM                                                          \
  "SELECT b.id, b.log_bytes, b.finished_at,"                                                  \
  "       sum(b.log_bytes) OVER (ORDER BY b.finished_at, b.id) AS upto FROM build_jobs b"

std::vector<db::Statement> Statements() {
  return {
      // Ended jobs counted once: every attempt's chunks (octet_length reads
      // a TOASTed value's size without fetching it).
      {"log_count",
       "WITH c AS (SELECT id FROM build_jobs WHERE log_bytes IS NULL AND finished_at IS NOT NULL"
       "           AND status IN ('succeeded', 'failed', 'cancelled', 'lost')"
       "           ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
       " UPDATE build_jobs j SET log_bytes ="
       "   coalesce((SELECT sum(octet_length(l.data)) FROM job_logs l WHERE l.job_id = j.id), 0)"
       " FROM c WHERE j.id = c.id"},
      {"log_prune_lock", "SELECT pg_try_advisory_xact_lock($1)"},
      // $1: [{name, ms, why}], $2: at most this many jobs. Per project, an
      // index range scan of build_jobs_log_kept.
      {"log_past_retention",
       "SELECT o.id, o.log_bytes, s.why FROM jsonb_to_recordset($1::jsonb) AS s(name text, ms bigint, why text)"
       " JOIN projects p ON p.name = s.name"
       " CROSS JOIN LATERAL (SELECT b.id, b.log_bytes, b.finished_at FROM build_jobs b"
       "   WHERE b.project_id = p.id AND " KILN_LOG_KEPT
       "     AND b.finished_at < now() - make_interval(secs => s.ms / 1000.0)"
       "   ORDER BY b.finished_at, b.id LIMIT $2) o"
       " WHERE s.ms > 0 ORDER BY o.finished_at, o.id LIMIT $2"},
      // $1: [{name, max_bytes, why}], $2: at most this many jobs. A project
      // over its cap gives its oldest jobs until what they hold covers the
      // excess.
      {"log_over_project_cap",
       "WITH s AS MATERIALIZED (SELECT p.id, x.max_bytes, x.why,"
       "             (SELECT coalesce(sum(b.log_bytes), 0) FROM build_jobs b"
       "              WHERE b.project_id = p.id AND " KILN_LOG_KEPT ") AS total"
       "           FROM jsonb_to_recordset($1::jsonb) AS x(name text, max_bytes bigint, why text)"
       "           JOIN projects p ON p.name = x.name WHERE x.max_bytes > 0),"
       " over AS (SELECT * FROM s WHERE total > max_bytes)"
       " SELECT o.id, o.log_bytes, over.why FROM over"
       " CROSS JOIN LATERAL (" KILN_OLDEST_WITH_RUNNING_SUM
       "   WHERE b.project_id = over.id AND " KILN_LOG_KEPT " ORDER BY b.finished_at, b.id LIMIT $2) o"
       " WHERE o.upto - o.log_bytes < over.total - over.max_bytes"
       " ORDER BY o.finished_at, o.id LIMIT $2"},
      // $1: the farm's cap, $2: at most this many jobs, $3: why.
      {"log_over_total_cap",
       "WITH t AS MATERIALIZED (SELECT coalesce(sum(b.log_bytes), 0) AS total FROM build_jobs b WHERE " KILN_LOG_KEPT
       ")"
       " SELECT o.id, o.log_bytes, $3::text FROM t"
       " CROSS JOIN LATERAL (" KILN_OLDEST_WITH_RUNNING_SUM " WHERE " KILN_LOG_KEPT
       "   ORDER BY b.finished_at, b.id LIMIT $2) o"
       " WHERE t.total > $1 AND o.upto - o.log_bytes < t.total - $1 ORDER BY o.finished_at, o.id"},
      // $1: [{id, why}], $2: the rule. Marks the jobs and deletes their
      // chunks of every attempt; returns how many jobs and bytes.
      {"log_remove",
       "WITH c AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS c(id bigint, why text)),"
       " m AS (UPDATE build_jobs j SET log_removed_at = now(), log_removed_reason = $2, log_removed_detail = c.why"
       "       FROM c WHERE j.id = c.id AND j.log_bytes > 0 AND j.log_removed_at IS NULL"
       "       RETURNING j.id, j.log_bytes),"
       " d AS (DELETE FROM job_logs l USING m WHERE l.job_id = m.id)"
       " SELECT count(*), coalesce(sum(log_bytes), 0)::bigint FROM m"},
  };
}

}  // namespace

std::string LogPruneSql(const std::string& name) {
  for (const auto& st : Statements())
    if (st.name == name) return st.sql;
  return "";
}

LogStore::LogStore(db::Pool& pool) : pool_(pool) { pool_.AddStatements(Statements()); }

Result<LogPruneOutcome> LogStore::Prune(const LogPrunePlan& plan, const std::atomic<bool>& stop) {
  LogPruneOutcome out;
  while (!stop) {
    auto n = pool_.Query("cannot count the log bytes of ended jobs", [&](pqxx::connection& c) -> Result<int64_t> {
      pqxx::nontransaction tx(c);
      return static_cast<int64_t>(tx.exec_prepared("log_count", kCountBatch).affected_rows());
    });
    if (!n.ok()) return n.status();
    out.counted += *n;
    if (*n < kCountBatch) break;
  }

  json retention = json::array(), caps = json::array();
  for (const auto& p : plan.projects) {
    if (p.retention_ms > 0) retention.push_back({{"name", p.project}, {"ms", p.retention_ms}, {"why", p.retention_why}});
    if (p.max_bytes > 0) caps.push_back({{"name", p.project}, {"max_bytes", p.max_bytes}, {"why", p.max_bytes_why}});
  }
  const std::string retention_text = retention.dump(), caps_text = caps.dump();
  const int limit = std::max(plan.batch_jobs, 1);

  // One transaction: the lock, the oldest candidates of the rule (cut at
  // batch_bytes), their removal. Ok(false) when nothing is left to do (or
  // another controller holds the lock: out.busy).
  auto batch = [&](const char* reason, LogPruneOutcome::Removed& removed,
                   const std::function<pqxx::result(pqxx::work&)>& select) -> Result<bool> {
    return pool_.Query(std::string("cannot remove job logs (") + reason + ")",
                       [&](pqxx::connection& c) -> Result<bool> {
                         pqxx::work tx(c);
                         if (!tx.exec_prepared1("log_prune_lock", kPruneLock)[0].as<bool>()) {
                           out.busy = true;
                           return false;
                         }
                         json victims = json::array();
                         int64_t bytes = 0;
                         for (const auto& row : select(tx)) {
                           if (!victims.empty() && bytes >= plan.batch_bytes) break;
                           victims.push_back({{"id", row[0].as<int64_t>()}, {"why", row[2].as<std::string>()}});
                           bytes += row[1].as<int64_t>();
                         }
                         if (victims.empty()) return false;
                         auto r = tx.exec_prepared1("log_remove", victims.dump(), reason);
                         tx.commit();
                         removed.jobs += r[0].as<int64_t>();
                         removed.bytes += r[1].as<int64_t>();
                         return r[0].as<int64_t>() > 0;
                       });
  };
  auto phase = [&](const char* reason, LogPruneOutcome::Removed& removed,
                   const std::function<pqxx::result(pqxx::work&)>& select) -> Status {
    while (!stop && !out.busy) {
      auto more = batch(reason, removed, select);
      if (!more.ok()) return more.status();
      if (!*more) break;
    }
    return Status::Ok();
  };

  if (!retention.empty()) {
    KILN_RETURN_IF_ERROR(phase("retention", out.retention, [&](pqxx::work& tx) {
      return tx.exec_prepared("log_past_retention", retention_text, limit);
    }));
  }
  if (!caps.empty()) {
    KILN_RETURN_IF_ERROR(phase("project_log_max_bytes", out.project_cap, [&](pqxx::work& tx) {
      return tx.exec_prepared("log_over_project_cap", caps_text, limit);
    }));
  }
  if (plan.total_max_bytes > 0) {
    KILN_RETURN_IF_ERROR(phase("log_max_bytes", out.total_cap, [&](pqxx::work& tx) {
      return tx.exec_prepared("log_over_total_cap", plan.total_max_bytes, limit, plan.total_why);
    }));
  }
  return out;
}

}  // namespace kiln::queue
