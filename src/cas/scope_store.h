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
  ~ScopeStore();

  // Adds every hash to every scope (existing memberships are kept).
  Status Add(const std::vector<std::string>& scopes, const std::vector<std::string>& hashes);
  // The hashes (of those given) that belong to at least one of the scopes.
  // Memberships this controller added or read in the last 10 minutes are
  // answered from memory (a resubmit of a large tree asks PostgreSQL only
  // about what is new); memberships end only when content is removed.
  Result<std::unordered_set<std::string>> Members(const std::vector<std::string>& scopes,
                                                  const std::vector<std::string>& hashes);
  // The hashes (of those given) that belong to none of the scopes: the
  // same answer, cheaper when most are members (nothing is copied for them).
  Result<std::unordered_set<std::string>> NotMembers(const std::vector<std::string>& scopes,
                                                     const std::vector<std::string>& hashes);
  // Whether the tree `root` ("<hex>/<size>") was found, in the last 10
  // minutes, to lie wholly in `scopes` (RememberTree): its check need not
  // be made again. Forgotten with any removal of content, like memberships.
  bool TreeKnown(const std::vector<std::string>& scopes, const std::string& root);
  void RememberTree(const std::vector<std::string>& scopes, const std::string& root);
  // A job a worker holds (setup or running): what it may read for it.
  struct HeldJob {
    int64_t job_id = 0;
    int attempt = 0;
    std::string input_root;           // "<hex>/<size>", empty for a job without inputs
    std::vector<std::string> scopes;  // its project's, and its cache scope when it has one
  };
  // The jobs worker `worker_id` holds.
  Result<std::vector<HeldJob>> WorkerJobs(const std::string& worker_id);
  // The hashes (of those given) that are objects of compile results in one of the scopes.
  Result<std::unordered_set<std::string>> CompileObjects(const std::vector<std::string>& scopes,
                                                         const std::vector<std::string>& hashes);
  // Forgets removed content in every scope.
  Status Forget(const std::vector<std::string>& hashes);

 private:
  // Asks PostgreSQL which of `ask` are members of `scopes`; remembers and
  // adds them to `out`.
  Status AskMembers(const std::vector<std::string>& scopes, const std::vector<std::string>& ask,
                    std::unordered_set<std::string>& out);

  db::Pool& pool_;
  struct Known;  // the memberships remembered
  std::unique_ptr<Known> known_;
};

}  // namespace kiln::cas
