#pragma once
// The SQL migrations of sql/, compiled into the binary (see sql/embed.cmake).
#include <vector>

namespace kiln::db {

struct EmbeddedMigration {
  int version;          // numeric prefix of the file name
  const char* name;     // file name without extension
  const char* sql;
};

const std::vector<EmbeddedMigration>& EmbeddedMigrations();

}  // namespace kiln::db
