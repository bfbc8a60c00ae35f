#include "queue/stats_store.h"

#include <algorithm>
#include <cmath>

#include "db/pool.h"

namespace kiln::queue {
namespace {

// pg_try_advisory_xact_lock key of the sampler and the partition
// maintenance: "kilnsmpl" in ASCII.
constexpr int64_t kSampleLock = 0x6b696c6e736d706c;

// The window of a stats statement: $1 project ('' for all), $2 seconds.
#define KILN_STATS_WINDOW(at) " " at " >= now() - make_interval(secs => $2) AND ($1 = '' OR project = $1)"

std::vector<db::Statement> Statements() {
  return {
      // synchronous_commit off for this transaction: a sample lost in a crash
      // costs a point on a graph, and the commit waits for no flush.
      {"sample_lock", "SELECT set_config('synchronous_commit', 'off', true), pg_try_advisory_xact_lock($1)"},
      // $1 interval in seconds, $2 CAS blobs, $3 CAS bytes (negative: unknown).
      {"sample_write",
       "WITH b AS (SELECT to_timestamp(floor(extract(epoch FROM now()) / $1::float8) * $1::float8) AS at),"
       " v (metric, cluster, project, value) AS ("
       "  SELECT 'queue_depth', c.name, p.name, count(j.id)::float8"
       "    FROM cluster_projects cp JOIN clusters c ON c.id = cp.cluster_id JOIN projects p ON p.id = cp.project_id"
       "    LEFT JOIN build_jobs j ON j.status = 'queued' AND j.project_id = cp.project_id"
       "      AND (j.cluster_id IS NULL OR j.cluster_id = cp.cluster_id)"
       "   GROUP BY c.name, p.name"
       "  UNION ALL"
       "  SELECT m.metric, c.name, '', CASE m.metric WHEN 'slots_total' THEN coalesce(sum(w.slots), 0)"
       "                                        ELSE count(w.id) END::float8"
       "    FROM clusters c CROSS JOIN (VALUES ('slots_total'), ('workers')) m(metric)"
       "    LEFT JOIN workers w ON w.cluster_id = c.id AND w.state IN ('connected', 'draining')"
       "   GROUP BY m.metric, c.name"
       "  UNION ALL"
       "  SELECT 'slots_busy', c.name, '', count(a.id)::float8 FROM clusters c"
       "    LEFT JOIN (build_jobs a JOIN workers w ON w.id = a.worker_id)"
       "      ON w.cluster_id = c.id AND a.status IN ('setup', 'running')"
       "   GROUP BY c.name"
       "  UNION ALL"
       "  SELECT x.metric, '', '', x.value FROM (SELECT count(*)::float8 AS n,"
       "      coalesce(sum(object_size), 0)::float8 AS bytes FROM compile_results) r,"
       "    LATERAL (VALUES ('compile_cache_entries', r.n), ('compile_cache_bytes', r.bytes)) x(metric, value)"
       "  UNION ALL"
       "  SELECT 'action_cache_entries', '', '', count(*)::float8 FROM action_cache"
       "  UNION ALL"
       "  SELECT x.metric, '', '', x.value FROM (VALUES ('cas_blobs', $2::float8), ('cas_bytes', $3::float8))"
       "    x(metric, value) WHERE x.value >= 0)"
       " INSERT INTO kiln_samples (at, metric, cluster, project, value)"
       " SELECT b.at, v.metric, v.cluster, v.project, v.value FROM b, v ON CONFLICT DO NOTHING"},
      // $1 days ahead, $2 retention in seconds (0: keep all).
      {"sample_maintain",
       "SELECT action || ' ' || partition FROM kiln_samples_maintain(now(), $1,"
       " CASE WHEN $2::float8 > 0 THEN make_interval(secs => $2::float8) END)"},
      {"stats_window", "SELECT (extract(epoch FROM now() - make_interval(secs => $1)) * 1000)::bigint,"
                       " (extract(epoch FROM now()) * 1000)::bigint"},
      {"stats_jobs",
       "SELECT count(*), count(*) FILTER (WHERE outcome = 'succeeded'), count(*) FILTER (WHERE outcome = 'failed'),"
       " count(*) FILTER (WHERE outcome = 'cancelled'), count(*) FILTER (WHERE outcome = 'lost'),"
       " count(*) FILTER (WHERE outcome = 'cached'), count(*) FILTER (WHERE cacheable),"
       " count(queue_wait_s), count(run_s),"
       " round(1000 * percentile_disc(0.5) WITHIN GROUP (ORDER BY queue_wait_s))::bigint,"
       " round(1000 * percentile_disc(0.95) WITHIN GROUP (ORDER BY queue_wait_s))::bigint,"
       " round(1000 * percentile_disc(0.99) WITHIN GROUP (ORDER BY queue_wait_s))::bigint,"
       " round(1000 * percentile_disc(0.5) WITHIN GROUP (ORDER BY run_s))::bigint,"
       " round(1000 * percentile_disc(0.95) WITHIN GROUP (ORDER BY run_s))::bigint,"
       " coalesce(sum(cc_units), 0), coalesce(sum(cc_hits), 0), coalesce(sum(cc_misses), 0),"
       " coalesce(sum(cc_failed), 0)"
       " FROM kiln_job_history WHERE" KILN_STATS_WINDOW("finished_at")},
      {"stats_saved",
       "SELECT round(1000 * coalesce(sum(action_cache_saved_s), 0))::bigint,"
       " round(1000 * coalesce(sum(compile_cache_saved_s), 0))::bigint"
       " FROM kiln_cache_savings WHERE" KILN_STATS_WINDOW("finished_at")},
      // With a project: the clusters that serve it.
      {"stats_clusters",
       "SELECT cluster, count(*), avg(slots_total), avg(slots_busy), sum(slots_busy) / nullif(sum(slots_total), 0)"
       " FROM kiln_worker_utilisation"
       " WHERE at >= now() - make_interval(secs => $2) AND ($1 = '' OR cluster IN (SELECT c.name"
       "   FROM cluster_projects cp JOIN clusters c ON c.id = cp.cluster_id JOIN projects p ON p.id = cp.project_id"
       "   WHERE p.name = $1))"
       " GROUP BY cluster ORDER BY cluster"},
      {"stats_slowest",
       "SELECT source, output, project, round(1000 * compile_s)::bigint FROM kiln_unit_compiles"
       " WHERE" KILN_STATS_WINDOW("created_at") " ORDER BY compile_s DESC, source, output LIMIT $3"},
      {"stats_missed",
       "SELECT source, count(*), (array_agg(reason ORDER BY recorded_at DESC, job_id DESC))[1]"
       " FROM kiln_unit_misses WHERE" KILN_STATS_WINDOW("recorded_at")
       " GROUP BY source ORDER BY count(*) DESC, source LIMIT $3"},
  };
}

std::optional<int64_t> OptMs(const pqxx::field& f) {
  if (f.is_null()) return std::nullopt;
  return f.as<int64_t>();
}

}  // namespace

StatsStore::StatsStore(db::Pool& pool) : pool_(pool) { pool_.AddStatements(Statements()); }

Result<int64_t> StatsStore::Sample(std::chrono::milliseconds interval, const SampleExtras& extras) {
  const double secs = std::max(0.001, static_cast<double>(interval.count()) / 1000.0);
  return pool_.Query("cannot write a sample of the farm's state", [&](pqxx::connection& c) -> Result<int64_t> {
    pqxx::work tx(c);
    if (!tx.exec_prepared("sample_lock", kSampleLock)[0][1].as<bool>()) return int64_t{0};
    try {
      auto r = tx.exec_prepared("sample_write", secs, extras.cas_blobs, extras.cas_bytes);
      tx.commit();
      return static_cast<int64_t>(r.affected_rows());
    } catch (const pqxx::check_violation&) {
      // "no partition of relation kiln_samples found for row" (SQLSTATE 23514).
      return FailedPrecondition("no partition of kiln_samples holds the time now: the partition maintenance "
                                "has not made it yet");
    }
  });
}

Result<std::vector<std::string>> StatsStore::Maintain(int days_ahead, std::chrono::milliseconds retention) {
  return pool_.Query("cannot maintain the partitions of kiln_samples",
                     [&](pqxx::connection& c) -> Result<std::vector<std::string>> {
                       std::vector<std::string> out;
                       pqxx::work tx(c);
                       if (!tx.exec_prepared("sample_lock", kSampleLock)[0][1].as<bool>()) return out;
                       auto r = tx.exec_prepared("sample_maintain", days_ahead,
                                                 static_cast<double>(retention.count()) / 1000.0);
                       for (const auto& row : r) out.push_back(row[0].as<std::string>());
                       tx.commit();
                       return out;
                     });
}

Result<StatsReport> StatsStore::Read(const StatsQuery& q) {
  const double window = static_cast<double>(q.window.count());
  return pool_.Query("cannot read the farm's history", [&](pqxx::connection& c) -> Result<StatsReport> {
    StatsReport out;
    // One snapshot for every part of the answer.
    pqxx::transaction<pqxx::repeatable_read, pqxx::read_only> tx(c);
    auto w = tx.exec_prepared("stats_window", window);
    out.from_ms = w[0][0].as<int64_t>();
    out.to_ms = w[0][1].as<int64_t>();
    auto j = tx.exec_prepared("stats_jobs", q.project, window)[0];
    int64_t* counts[] = {&out.jobs,      &out.succeeded, &out.failed, &out.cancelled, &out.lost,
                         &out.cached,    &out.cacheable, &out.waits,  &out.runs};
    int i = 0;
    for (int64_t* n : counts) *n = j[i++].as<int64_t>();
    out.wait_p50_ms = OptMs(j[i++]);
    out.wait_p95_ms = OptMs(j[i++]);
    out.wait_p99_ms = OptMs(j[i++]);
    out.run_p50_ms = OptMs(j[i++]);
    out.run_p95_ms = OptMs(j[i++]);
    out.cc_units = j[i++].as<int64_t>();
    out.cc_hits = j[i++].as<int64_t>();
    out.cc_misses = j[i++].as<int64_t>();
    out.cc_failed = j[i++].as<int64_t>();
    auto s = tx.exec_prepared("stats_saved", q.project, window)[0];
    out.action_saved_ms = s[0].as<int64_t>();
    out.compile_saved_ms = s[1].as<int64_t>();
    for (const auto& row : tx.exec_prepared("stats_clusters", q.project, window)) {
      ClusterUse u;
      u.cluster = row[0].as<std::string>();
      u.samples = row[1].as<int64_t>();
      u.slots_avg = row[2].as<double>();
      u.busy_avg = row[3].as<double>();
      if (!row[4].is_null()) u.utilisation = row[4].as<double>();
      out.clusters.push_back(std::move(u));
    }
    for (const auto& row : tx.exec_prepared("stats_slowest", q.project, window, q.top)) {
      out.slowest.push_back(
          {row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(), row[3].as<int64_t>()});
    }
    for (const auto& row : tx.exec_prepared("stats_missed", q.project, window, q.top)) {
      out.most_missed.push_back({row[0].as<std::string>(), row[1].as<int64_t>(),
                                 row[2].is_null() ? std::string() : row[2].as<std::string>()});
    }
    tx.commit();
    return out;
  });
}

}  // namespace kiln::queue
