#pragma once
// Schema migrations: the numbered files of sql/, applied in order.

#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::db {

struct MigrateReport {
  std::vector<std::string> applied;  // names applied by this call, in order
  int current_version = 0;           // schema version afterwards
};

// Applies every embedded migration the database lacks, all in one
// transaction under an advisory lock (so concurrent controllers serialize),
// recording each in kiln_schema_migrations. Re-running is a no-op.
// Fails with FailedPrecondition if the database is newer than this binary.
Result<MigrateReport> Migrate(const std::string& url);

// The highest applied version, 0 for an empty database.
Result<int> SchemaVersion(const std::string& url);

// The highest version this binary knows.
int LatestVersion();

}  // namespace kiln::db
