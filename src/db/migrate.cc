#include "db/migrate.h"

#include <spdlog/spdlog.h>

#include "db/migrations_embedded.h"
#include "db/pool.h"

namespace kiln::db {
namespace {
// pg_advisory_xact_lock key: "kiln" in ASCII, so other tools can recognise it.
constexpr int64_t kMigrationLock = 0x6b696c6e;

const char* kCreateTable =
    "CREATE TABLE IF NOT EXISTS kiln_schema_migrations ("
    " version integer PRIMARY KEY, name text NOT NULL,"
    " applied_at timestamptz NOT NULL DEFAULT now())";
}  // namespace

int LatestVersion() {
  int v = 0;
  for (const auto& m : EmbeddedMigrations()) v = std::max(v, m.version);
  return v;
}

Result<MigrateReport> Migrate(const std::string& url) {
  auto conn = Connect(url);
  if (!conn.ok()) return conn.status();
  try {
    MigrateReport report;
    pqxx::work tx(**conn);
    tx.exec0("SET LOCAL lock_timeout = '60s'");
    tx.exec_params("SELECT pg_advisory_xact_lock($1)", kMigrationLock);
    tx.exec0(kCreateTable);
    int current = tx.exec1("SELECT coalesce(max(version), 0) FROM kiln_schema_migrations")[0].as<int>();
    if (current > LatestVersion()) {
      return FailedPrecondition("database schema version " + std::to_string(current) +
                                " is newer than this kiln (knows up to " + std::to_string(LatestVersion()) +
                                "); upgrade kiln before running it against this database");
    }
    for (const auto& m : EmbeddedMigrations()) {
      if (m.version <= current) continue;
      tx.exec0(m.sql);
      tx.exec_params0("INSERT INTO kiln_schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name);
      report.applied.push_back(m.name);
      current = m.version;
    }
    tx.commit();
    report.current_version = current;
    return report;
  } catch (const std::exception& e) {
    return FromException(e, "migration failed");
  }
}

Result<int> SchemaVersion(const std::string& url) {
  auto conn = Connect(url);
  if (!conn.ok()) return conn.status();
  try {
    pqxx::nontransaction tx(**conn);
    auto r = tx.exec1("SELECT to_regclass('kiln_schema_migrations') IS NOT NULL");
    if (!r[0].as<bool>()) return 0;
    return tx.exec1("SELECT coalesce(max(version), 0) FROM kiln_schema_migrations")[0].as<int>();
  } catch (const std::exception& e) {
    return FromException(e, "cannot read the schema version");
  }
}

}  // namespace kiln::db
