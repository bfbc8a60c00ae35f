#pragma once
// Which scopes each piece of content (blob or directory node, by hash)
// belongs to: the CAS answers a caller only about content in its scopes
// (sql/011_cas_scopes.sql). Free of libpqxx.

#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/status.h"

namespace kiln::db {
class Pool;
}

namespace kiln::cas {

class ScopeStore {
 public:
  explicit ScopeStore(db::Pool& pool);

  // Adds every hash to every scope (existing memberships are kept).
  Status Add(const std::vector<std::string>& scopes, const std::vector<std::string>& hashes);
  // The hashes (of those given) that belong to at least one of the scopes.
  Result<std::unordered_set<std::string>> Members(const std::vector<std::string>& scopes,
                                                  const std::vector<std::string>& hashes);
  // A worker's scopes: those of the jobs it holds (setup or running: their
  // projects' and cache scopes), its own uploads and the images.
  Result<std::vector<std::string>> WorkerScopes(const std::string& worker_id);
  // The scopes of a job's content (its project's, and its cache scope when
  // it has one) while that attempt runs on that worker; empty otherwise.
  Result<std::vector<std::string>> RunningJobScopes(int64_t job_id, int attempt, const std::string& worker_id);
  // Forgets removed content in every scope.
  Status Forget(const std::vector<std::string>& hashes);

 private:
  db::Pool& pool_;
};

}  // namespace kiln::cas
