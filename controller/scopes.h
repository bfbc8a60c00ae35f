#pragma once
// Which content a caller may see (sql/011_cas_scopes.sql): a token sees
// the scopes of its projects (their cache scopes), an admin token
// everything, a worker the scopes of the jobs it holds, its own uploads and
// the images. Uploads join the uploader's scopes; a job's outputs join its
// scope when its result is reported.

#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "common/status.h"

namespace kiln::cas {
class ScopeStore;
class TreeStore;
}

namespace kiln::controller {

struct Caller;
class ProjectCache;

class ContentScopes {
 public:
  ContentScopes(cas::ScopeStore& store, ProjectCache& projects) : store_(store), projects_(projects) {}

  // The scopes the caller sees; nullopt for an admin token (everything).
  Result<std::optional<std::vector<std::string>>> Visible(const Caller& c);
  // Where the caller's verified uploads go (none for an admin token, which
  // sees everything anyway).
  Result<std::vector<std::string>> UploadTo(const Caller& c);
  // Of `hashes`, those the caller sees.
  Result<std::unordered_set<std::string>> Seen(const Caller& c, const std::vector<std::string>& hashes);
  // A job's reported output tree joins the job's scope: every node and file
  // of it that the reporting worker sees (its own uploads, its jobs'
  // content), so a worker cannot pass another scope's digests off as output.
  // Only while that attempt runs on that worker.
  Status RecordOutputs(const Caller& worker, int64_t job_id, int attempt, const std::string& output_root,
                       cas::TreeStore& trees);
  // A compile object the worker stored for its job joins the job's scopes
  // (FailedPrecondition unless it uploaded it itself or it is the job's).
  Status RecordObject(const Caller& worker, int64_t job_id, int attempt, const std::string& hash);
  // The scopes of a project's content: "project:<name>", and its shared
  // cache scope when it has one.
  Result<std::vector<std::string>> ProjectScopes(const std::string& project);

  cas::ScopeStore& store() { return store_; }

 private:
  cas::ScopeStore& store_;
  ProjectCache& projects_;
};

}  // namespace kiln::controller
