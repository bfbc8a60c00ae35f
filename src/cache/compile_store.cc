#include "cache/compile_store.h"

#include <nlohmann/json.hpp>

#include "cache/compile_json.h"
#include "cc/deps.h"
#include "cc/keys.h"
#include "common/util.h"
#include "db/pool.h"

namespace kiln::cache {
namespace {

using nlohmann::json;

Status NotRunning(const RunningJob& run) {
  return FailedPrecondition("job " + std::to_string(run.job_id) + " attempt " + std::to_string(run.attempt) +
                            " is not running in an image on worker " + run.worker_id +
                            " (its compile cache is closed to everyone else)");
}

// The scope of the job's compile cache while that attempt runs.
Result<std::string> RunningScope(pqxx::transaction_base& tx, const RunningJob& run) {
  auto r = tx.exec_prepared("cc_scope", run.job_id, run.attempt, run.worker_id);
  if (r.empty()) return NotRunning(run);
  return r[0][0].as<std::string>();
}

// Columns r.key .. r.compile_ms, from index `at`.
constexpr const char* kEntryColumns =
    "r.key, r.object_hash, r.object_size, encode(r.depfile, 'hex'), encode(r.stdout, 'hex'),"
    " encode(r.stderr, 'hex'), r.compile_ms";

cc::CompileResult Entry(const pqxx::row& row, int at) {
  cc::CompileResult e;
  e.key = row[at].as<std::string>();
  e.object.hash = row[at + 1].as<std::string>();
  e.object.size = row[at + 2].as<int64_t>();
  e.depfile = HexDecode(row[at + 3].as<std::string>()).value_or("");
  e.stdout = HexDecode(row[at + 4].as<std::string>()).value_or("");
  e.stderr = HexDecode(row[at + 5].as<std::string>()).value_or("");
  e.compile_ms = row[at + 6].as<int64_t>();
  return e;
}

// "counts" columns in CompileCounts order, from index `at`.
CompileCounts Counts(const pqxx::row& row, int at) {
  CompileCounts c;
  int64_t* fields[] = {&c.units,    &c.hits,       &c.hits_preprocessed, &c.misses,      &c.fallbacks,
                       &c.failed,   &c.saved_ms,   &c.compile_ms,        &c.bytes_served, &c.bytes_stored,
                       &c.remote,   &c.remote_ms};
  for (int i = 0; i < 12; ++i) *fields[i] = row[at + i].as<int64_t>();
  return c;
}

}  // namespace

const char* ImpactSql() {
  // The manifests naming the path first, on their own (MATERIALIZED): a
  // generic plan of the whole query, which PostgreSQL may choose after five
  // executions, would read the scope in source order to serve ORDER BY and
  // LIMIT, filtering every manifest; this way every plan starts from the
  // GIN index on deps.
  return "WITH hit AS MATERIALIZED (SELECT source, output, last_used FROM compile_manifests"
         "   WHERE scope = $1 AND deps ? $2)"
         " SELECT source, output, count(*), (extract(epoch FROM max(last_used)) * 1000)::bigint"
         " FROM hit GROUP BY source, output ORDER BY source, output LIMIT $3";
}

// The store's statements, named: the pool prepares each on a connection
// before its first use there (lookups and stores run once per translation
// unit: parsed once per connection rather than at every call).
std::vector<db::Statement> Statements() {
  std::vector<db::Statement> out;
  // The job's scope while attempt $2 of job $1 runs.
  const std::string scope =
      "SELECT cache_scope FROM build_jobs WHERE id = $1 AND attempt = $2 AND worker_id = $W"
      "   AND status IN ('setup', 'running') AND cache_scope IS NOT NULL";
  // $W: the worker running it, the statement's last parameter.
  auto with_worker = [](std::string sql, int n) {
    return sql.replace(sql.find("$W"), 2, "$" + std::to_string(n));
  };
  const std::string running = "WITH j AS (" + scope + ") ";  // $W still to replace
  // The job's scope, fenced by its attempt, and the key's manifests: one row
  // per manifest, or one with NULLs when there is none, or none at all when
  // that attempt does not run.
  out.push_back({"cc_lookup", with_worker(running, 5) +
                                  "SELECT j.cache_scope, x.* FROM j LEFT JOIN LATERAL ("
                                  "   SELECT m.id, m.deps_packed, " +
                                  kEntryColumns +
                                  "   FROM compile_manifests m JOIN compile_results r"
                                  "     ON r.scope = m.scope AND r.key = m.result_key"
                                  "   WHERE m.scope = j.cache_scope AND m.key = $3"
                                  "   ORDER BY m.last_used DESC, m.id DESC LIMIT $4) x ON true"});
  out.push_back(
      {"cc_lookup_result", with_worker(running, 4) + "SELECT r.scope IS NOT NULL, " + kEntryColumns +
                               " FROM j LEFT JOIN compile_results r ON r.scope = j.cache_scope AND r.key = $3"});
  out.push_back({"cc_previous",
                 "SELECT parts::text FROM compile_manifests WHERE scope = $1 AND source = $2"
                 " ORDER BY (output = $3) DESC, id DESC LIMIT $4"});
  // A store: the scope, the result (or a check that it is there), the
  // manifest, and the trim to the newest manifests of the key.
  out.push_back({"cc_scope", with_worker(scope, 3)});
  out.push_back({"cc_store_result",
                 "INSERT INTO compile_results (scope, key, object_hash, object_size, depfile, stdout, stderr,"
                 " compile_ms, job_id) VALUES ($1, $2, $3, $4, decode($5, 'hex'), decode($6, 'hex'),"
                 " decode($7, 'hex'), $8, $9) ON CONFLICT (scope, key) DO NOTHING"});
  out.push_back({"cc_result_exists", "SELECT 1 FROM compile_results WHERE scope = $1 AND key = $2"});
  out.push_back(
      {"cc_store_manifest",
       "INSERT INTO compile_manifests (scope, key, deps_digest, deps, deps_packed, result_key, source, output,"
       "   parts, job_id)"
       " SELECT $1, $2, $3, coalesce((SELECT hstore(array_agg(d.key), array_agg(d.value))"
       "                              FROM jsonb_each_text($4::jsonb) d), ''::hstore),"
       "   $5, $6, $7, $8, $9::jsonb, $10"
       " ON CONFLICT (scope, key, deps_digest) DO UPDATE SET last_used = now(), result_key = EXCLUDED.result_key"});
  out.push_back({"cc_record_job", "SELECT cache_scope FROM build_jobs WHERE id = $1 AND attempt = $2 AND worker_id = $3"});
  out.push_back(
      {"cc_record_stats",
       // hit_compile_ms (sql/016): the recorded compile time of the entries
       // served ($14, result keys in scope $13), what the cache saved the run.
       "INSERT INTO compile_stats (job_id, attempt, units, hits, hits_preprocessed, misses, fallbacks, failed,"
       " saved_ms, compile_ms, bytes_served, bytes_stored, hit_compile_ms, remote, remote_ms) VALUES ($1, $2, $3,"
       " $4, $5, $6, $7, $8, $9, $10, $11, $12, (SELECT coalesce(sum(r.compile_ms), 0) FROM compile_results r"
       "   WHERE r.scope = $13 AND r.key IN (SELECT jsonb_array_elements_text($14::jsonb))), $15, $16)"
       " ON CONFLICT (job_id) DO UPDATE SET attempt = EXCLUDED.attempt, units = EXCLUDED.units,"
       " hits = EXCLUDED.hits, hits_preprocessed = EXCLUDED.hits_preprocessed, misses = EXCLUDED.misses,"
       " fallbacks = EXCLUDED.fallbacks, failed = EXCLUDED.failed, saved_ms = EXCLUDED.saved_ms,"
       " compile_ms = EXCLUDED.compile_ms, bytes_served = EXCLUDED.bytes_served,"
       " bytes_stored = EXCLUDED.bytes_stored, hit_compile_ms = EXCLUDED.hit_compile_ms, remote = EXCLUDED.remote,"
       " remote_ms = EXCLUDED.remote_ms, recorded_at = now()"});
  out.push_back({"cc_record_clear_events", "DELETE FROM compile_events WHERE job_id = $1"});
  out.push_back({"cc_record_events",
                 "INSERT INTO compile_events (job_id, seq, source, output, outcome, reason, detail, remote_worker,"
                 "   remote_ms, remote_run_ms)"
                 " SELECT $1, t.ord, t.e->>'source', t.e->>'output', t.e->>'outcome', t.e->>'reason', t.e->>'detail',"
                 "   coalesce(t.e->>'remote_worker', ''), coalesce((t.e->>'remote_ms')::bigint, 0),"
                 "   coalesce((t.e->>'remote_run_ms')::bigint, 0)"
                 " FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS t(e, ord)"});
  out.push_back({"cc_touch_results",
                 "WITH l AS (SELECT r.key FROM compile_results r"
                 "   WHERE r.scope = $1 AND r.key IN (SELECT jsonb_array_elements_text($2::jsonb))"
                 "     AND r.last_used < now() - interval '10 minutes' ORDER BY r.key FOR UPDATE)"
                 " UPDATE compile_results r SET last_used = now() FROM l WHERE r.scope = $1 AND r.key = l.key"});
  out.push_back({"cc_touch_manifests",
                 "WITH l AS (SELECT m.id FROM compile_manifests m"
                 "   WHERE m.id IN (SELECT jsonb_array_elements_text($2::jsonb)::bigint) AND m.scope = $1"
                 "     AND m.last_used < now() - interval '10 minutes' ORDER BY m.id FOR UPDATE)"
                 " UPDATE compile_manifests m SET last_used = now() FROM l WHERE m.id = l.id"});
  out.push_back(
      {"cc_stats_totals",
       "SELECT count(*), coalesce(sum(units), 0), coalesce(sum(hits), 0), coalesce(sum(hits_preprocessed), 0),"
       " coalesce(sum(misses), 0), coalesce(sum(fallbacks), 0), coalesce(sum(failed), 0),"
       " coalesce(sum(saved_ms), 0), coalesce(sum(s.compile_ms), 0), coalesce(sum(bytes_served), 0),"
       " coalesce(sum(bytes_stored), 0), coalesce(sum(remote), 0), coalesce(sum(remote_ms), 0)"
       " FROM compile_stats s JOIN build_jobs j ON j.id = s.job_id JOIN projects p ON p.id = j.project_id"
       " WHERE p.name = $1 AND s.recorded_at >= to_timestamp($2)"});
  out.push_back(
      {"cc_stats_reasons",
       "SELECT e.outcome, e.reason, count(*) FROM compile_events e JOIN compile_stats s ON s.job_id = e.job_id"
       " JOIN build_jobs j ON j.id = e.job_id JOIN projects p ON p.id = j.project_id"
       " WHERE p.name = $1 AND s.recorded_at >= to_timestamp($2) AND e.outcome <> 'hit_preprocessed'"
       " GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 50"});
  out.push_back({"cc_stats_entries",
                 "SELECT (SELECT count(*) FROM compile_results WHERE scope = $1),"
                 " (SELECT coalesce(sum(object_size), 0) FROM compile_results WHERE scope = $1),"
                 " (SELECT count(*) FROM compile_manifests WHERE scope = $1)"});
  out.push_back({"cc_impact", ImpactSql()});
  out.push_back({"cc_job_stats",
                 "SELECT units, hits, hits_preprocessed, misses, fallbacks, failed, saved_ms, compile_ms, bytes_served,"
                 " bytes_stored, remote, remote_ms FROM compile_stats WHERE job_id = $1"});
  out.push_back({"cc_job_events",
                 "SELECT source, output, outcome, reason, detail, remote_worker FROM compile_events WHERE job_id = $1"
                 " ORDER BY outcome = 'hit_preprocessed', seq LIMIT $2"});
  out.push_back({"cc_expire", "DELETE FROM compile_results WHERE last_used < now() - make_interval(secs => $1)"});
  // SKIP LOCKED: concurrent stores of one key never wait for each other here.
  out.push_back(
      {"cc_trim_manifests",
       "DELETE FROM compile_manifests WHERE id IN (SELECT id FROM compile_manifests WHERE scope = $1 AND key = $2"
       " ORDER BY last_used DESC, id DESC OFFSET $3 FOR UPDATE SKIP LOCKED)"});
  return out;
}

CompileCacheStore::CompileCacheStore(std::string db_url, size_t pool_size)
    : pool_(std::make_unique<db::Pool>(std::move(db_url), pool_size)) {
  pool_->AddStatements(Statements());
}
CompileCacheStore::~CompileCacheStore() = default;

Result<CompileLookup> CompileCacheStore::Lookup(const RunningJob& run, const std::string& key,
                                                const std::string& source, const std::string& output) {
  return pool_->Query("cannot look up the compile cache", [&](pqxx::connection& c) -> Result<CompileLookup> {
    CompileLookup out;
    // One statement for a hit (this runs once per translation unit):
    // the job's scope, fenced by its attempt, and the key's manifests.
    pqxx::nontransaction tx(c);
    auto r = tx.exec_prepared("cc_lookup", run.job_id, run.attempt, key, kMaxManifestsPerKey, run.worker_id);
    if (r.empty())
      return NotRunning(run);
    const std::string scope = r[0][0].as<std::string>();
    out.scope = scope;
    for (const auto& row : r) {
      if (row[1].is_null()) break;  // no manifest
      cc::CompileManifest m;
      m.id = row[1].as<int64_t>();
      m.deps_packed = row[2].as<std::string>();
      m.result = Entry(row, 3);
      out.manifests.push_back(std::move(m));
    }
    if (out.manifests.empty()) {
      auto p = tx.exec_prepared("cc_previous", scope, source, output, kMaxManifestsPerKey);
      for (const auto& row : p) out.previous.push_back(PartsFromJson(row[0].as<std::string>()));
    }
    return out;
  });
}

Result<std::optional<cc::CompileResult>> CompileCacheStore::LookupResult(const RunningJob& run,
                                                                         const std::string& key) {
  using Found = std::optional<cc::CompileResult>;
  return pool_->Query("cannot look up the compile cache", [&](pqxx::connection& c) -> Result<Found> {
    Found out;
    pqxx::nontransaction tx(c);
    auto r = tx.exec_prepared("cc_lookup_result", run.job_id, run.attempt, key, run.worker_id);
    if (r.empty())
      return NotRunning(run);
    if (r[0][0].as<bool>()) out = Entry(r[0], 1);
    return out;
  });
}

Result<bool> CompileCacheStore::Store(const RunningJob& run, const cc::CompileEntry& st) {
  auto parts_json = PartsToJson(st.parts);
  if (!parts_json.ok()) return parts_json.status();
  std::string deps_json;
  try {
    deps_json = json(st.deps).dump();
  } catch (const json::exception&) {
    return InvalidArgument("a dependency path is not valid UTF-8");
  }
  const std::string digest = cc::ManifestDigest(st.deps);
  const std::string packed = cc::PackDeps(st.deps);
  return pool_->Query("cannot store a compile cache entry", [&](pqxx::connection& c) -> Result<bool> {
    bool fresh = false;
    pqxx::work tx(c);
    auto scope = RunningScope(tx, run);
    if (!scope.ok()) return scope.status();
    const cc::CompileResult& e = st.result;
    if (!st.manifest_only) {
      auto r = tx.exec_prepared("cc_store_result", *scope, e.key, e.object.hash, e.object.size, HexEncode(e.depfile),
                                HexEncode(e.stdout), HexEncode(e.stderr), e.compile_ms, run.job_id);
      fresh = r.affected_rows() == 1;
    } else if (tx.exec_prepared("cc_result_exists", *scope, e.key).empty()) {
      return NotFound("compile cache result " + e.key + " is gone");
    }
    tx.exec_prepared("cc_store_manifest", *scope, st.key, digest, deps_json, packed, e.key, st.parts.source,
                     st.parts.output, *parts_json, run.job_id);
    // The newest manifests of a key are kept.
    tx.exec_prepared("cc_trim_manifests", *scope, st.key, kMaxManifestsPerKey);
    tx.commit();
    return fresh;
  });
}

Status CompileCacheStore::Record(const std::string& worker_id, const JobCompileStats& rec) {
  json events = json::array();
  for (size_t i = 0; i < rec.events.size() && i < kMaxEventsPerJob; ++i) {
    const auto& e = rec.events[i];
    events.push_back({{"source", e.source}, {"output", e.output}, {"outcome", e.outcome}, {"reason", e.reason},
                      {"detail", e.detail}, {"remote_worker", e.remote_worker}, {"remote_ms", e.remote_ms},
                      {"remote_run_ms", e.remote_run_ms}});
  }
  std::string events_json, keys_json, ids_json;
  try {
    events_json = events.dump();
    keys_json = json(rec.hit_keys).dump();
    ids_json = json(rec.hit_manifests).dump();
  } catch (const json::exception&) {
    return InvalidArgument("a compile event is not valid UTF-8");
  }
  const CompileCounts& n = rec.counts;
  return pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        auto job = tx.exec_prepared("cc_record_job", rec.job_id, rec.attempt, worker_id);
        if (job.empty())
          return FailedPrecondition("job " + std::to_string(rec.job_id) + " is not at attempt " +
                                    std::to_string(rec.attempt) + " on worker " + worker_id);
        const std::string scope = job[0][0].is_null() ? std::string() : job[0][0].as<std::string>();
        tx.exec_prepared("cc_record_stats", rec.job_id, rec.attempt, n.units, n.hits, n.hits_preprocessed, n.misses,
                         n.fallbacks, n.failed, n.saved_ms, n.compile_ms, n.bytes_served, n.bytes_stored, scope,
                         keys_json, n.remote, n.remote_ms);
        tx.exec_prepared("cc_record_clear_events", rec.job_id);
        tx.exec_prepared("cc_record_events", rec.job_id, events_json);
        if (!scope.empty()) {
          // Uses are recorded at most every 10 minutes per entry, locked in
          // key order (concurrent records never deadlock).
          tx.exec_prepared("cc_touch_results", scope, keys_json);
          tx.exec_prepared("cc_touch_manifests", scope, ids_json);
        }
        tx.commit();
        return Status::Ok();
      },
      "cannot record the compile cache's statistics");
}

Result<CompileStatsReport> CompileCacheStore::Stats(const std::string& project, const std::string& scope,
                                                     int64_t since_ms) {
  const std::string what = "cannot read the compile cache's statistics";
  return pool_->Query(what, [&](pqxx::connection& c) -> Result<CompileStatsReport> {
    CompileStatsReport out;
    pqxx::read_transaction tx(c);
    const double since = static_cast<double>(since_ms) / 1000.0;
    auto t = tx.exec_prepared("cc_stats_totals", project, since);
    out.jobs = t[0][0].as<int64_t>();
    out.counts = Counts(t[0], 1);
    auto r = tx.exec_prepared("cc_stats_reasons", project, since);
    for (const auto& row : r)
      out.reasons.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<int64_t>()});
    auto e = tx.exec_prepared("cc_stats_entries", scope);
    out.results = e[0][0].as<int64_t>();
    out.object_bytes = e[0][1].as<int64_t>();
    out.manifests = e[0][2].as<int64_t>();
    return out;
  });
}

Result<std::vector<ImpactedUnit>> CompileCacheStore::Impact(const std::string& scope, const std::string& path,
                                                            int limit) {
  using Units = std::vector<ImpactedUnit>;
  return pool_->Query("cannot search the compile cache", [&](pqxx::connection& c) -> Result<Units> {
    Units out;
    pqxx::read_transaction tx(c);
    auto r = tx.exec_prepared("cc_impact", scope, path, limit);
    for (const auto& row : r)
      out.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<int64_t>(),
                     row[3].as<int64_t>()});
    return out;
  });
}

Result<JobCompiles> CompileCacheStore::ForJob(int64_t job_id, size_t max_events) {
  const std::string what = "cannot read the job's compile cache record";
  return pool_->Query(what, [&](pqxx::connection& c) -> Result<JobCompiles> {
    JobCompiles out;
    pqxx::read_transaction tx(c);
    auto t = tx.exec_prepared("cc_job_stats", job_id);
    if (t.empty()) return out;
    out.recorded = true;
    out.counts = Counts(t[0], 0);
    auto r = tx.exec_prepared("cc_job_events", job_id, static_cast<int64_t>(max_events) + 1);
    for (const auto& row : r) {
      if (out.events.size() == max_events) {
        out.truncated = true;
        break;
      }
      out.events.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<std::string>(),
                            row[3].as<std::string>(), row[4].as<std::string>(), row[5].as<std::string>(), 0, 0});
    }
    return out;
  });
}

Result<int64_t> CompileCacheStore::Expire(std::chrono::milliseconds max_age) {
  return db::DeleteUnused(*pool_, "cc_expire", max_age, "cannot expire compile cache entries");
}

}  // namespace kiln::cache
