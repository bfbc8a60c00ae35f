#include "audit/audit_store.h"

#include <algorithm>
#include <string>

#include "db/pool.h"

namespace kiln::audit {
namespace {

// Newest first by (at, id), so that an index serves it (the whole trail's
// or one project's);
// before_id pages on from that row's place (a row pruned meanwhile: from
// its id). $1 since (unix ms), $2 before_id (0: none), $3 limit, $4 project.
std::string ListSql(bool project) {
  return std::string(
             "WITH b AS (SELECT coalesce((SELECT at FROM audit_log WHERE id = $2), 'infinity') AS at,"
             "   CASE WHEN $2 > 0 THEN $2 ELSE 9223372036854775807 END AS id)"
             " SELECT a.id, (extract(epoch FROM a.at) * 1000)::bigint, a.actor, a.address, a.action,"
             " coalesce(a.project, ''), a.target, a.change::text FROM audit_log a, b"
             " WHERE a.at >= to_timestamp($1::bigint / 1000.0) AND (a.at, a.id) < (b.at, b.id)") +
         (project ? " AND a.project = $4" : "") + " ORDER BY a.at DESC, a.id DESC LIMIT $3";
}

}  // namespace

AuditStore::AuditStore(db::Pool& pool) : pool_(pool) {
  pool_.AddStatements({
      {"audit_list", ListSql(false)},
      {"audit_list_project", ListSql(true)},
      {"audit_prune", "DELETE FROM audit_log WHERE at < now() - make_interval(secs => $1)"},
  });
}

Result<std::vector<Record>> AuditStore::List(const Filter& f) {
  const int limit = std::clamp(f.limit, 1, kMaxLimit);
  return pool_.Query("cannot read the audit trail", [&](pqxx::connection& c) -> Result<std::vector<Record>> {
    // The pool plans generically (for the claim); here a custom plan sees
    // how rare the project is and takes its index instead of filtering the
    // whole trail's.
    pqxx::work tx(c);
    tx.exec0("SET LOCAL plan_cache_mode = force_custom_plan");
    std::vector<Record> out;
    const int64_t since = std::max<int64_t>(f.since_ms, 0);
    auto rows = f.project.empty() ? tx.exec_prepared("audit_list", since, f.before_id, limit)
                                  : tx.exec_prepared("audit_list_project", since, f.before_id, limit, f.project);
    for (const auto& r : rows) {
      Record rec;
      rec.id = r[0].as<int64_t>();
      rec.at_ms = r[1].as<int64_t>();
      rec.actor = r[2].as<std::string>();
      rec.address = r[3].as<std::string>();
      rec.action = r[4].as<std::string>();
      rec.project = r[5].as<std::string>();
      rec.target = r[6].as<std::string>();
      rec.change = r[7].as<std::string>();
      out.push_back(std::move(rec));
    }
    return out;
  });
}

Result<int64_t> AuditStore::Prune(std::chrono::milliseconds retention) {
  return db::DeleteUnused(pool_, "audit_prune", retention, "cannot prune the audit trail");
}

}  // namespace kiln::audit
