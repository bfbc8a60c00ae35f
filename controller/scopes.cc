#include "controller/scopes.h"

#include "cas/digest.h"
#include "cas/scope_store.h"
#include "cas/tree_store.h"
#include "controller/guard.h"
#include "controller/project_cache.h"
#include "controller/submit_policy.h"

namespace kiln::controller {

Result<std::vector<std::string>> ContentScopes::ProjectScopes(const std::string& project) {
  auto pc = projects_.Get(project);
  if (!pc.ok()) return pc.status();
  std::vector<std::string> out{"project:" + project};
  std::string cache = CacheScope(project, *pc);
  if (cache != out[0]) out.push_back(cache);
  return out;
}

Result<std::optional<std::vector<std::string>>> ContentScopes::Visible(const Caller& c) {
  using Out = std::optional<std::vector<std::string>>;
  if (c.IsAdmin()) return Out();
  if (c.IsWorker()) {
    auto s = store_.WorkerScopes(c.worker_id);
    if (!s.ok()) return s.status();
    return Out(std::move(*s));
  }
  std::vector<std::string> out;
  for (const auto& p : c.projects) {
    auto s = ProjectScopes(p);
    if (s.ok()) out.insert(out.end(), s->begin(), s->end());  // a project removed since sees nothing
  }
  return Out(std::move(out));
}

Result<std::vector<std::string>> ContentScopes::UploadTo(const Caller& c) {
  if (c.IsAdmin()) return std::vector<std::string>{};
  if (c.IsWorker()) return std::vector<std::string>{"worker:" + c.worker_id};
  auto v = Visible(c);
  if (!v.ok()) return v.status();
  return std::move(**v);
}

Result<std::unordered_set<std::string>> ContentScopes::Seen(const Caller& c, const std::vector<std::string>& hashes) {
  auto v = Visible(c);
  if (!v.ok()) return v.status();
  if (!*v) return std::unordered_set<std::string>(hashes.begin(), hashes.end());
  return store_.Members(**v, hashes);
}

Status ContentScopes::RecordOutputs(const Caller& worker, int64_t job_id, int attempt, const std::string& output_root,
                                    cas::TreeStore& trees) {
  auto scopes = store_.RunningJobScopes(job_id, attempt, worker.worker_id);
  if (!scopes.ok()) return scopes.status();
  if (scopes->empty()) return FailedPrecondition("job " + std::to_string(job_id) + " attempt " +
                                                 std::to_string(attempt) + " does not run on worker " +
                                                 worker.worker_id);
  auto root = cas::ParseDigest(output_root);
  if (!root.ok()) return root.status();
  auto reach = trees.Reachable(*root);
  if (!reach.ok()) return reach.status();
  std::vector<std::string> hashes;
  for (const auto& [d, dir] : reach->nodes) {
    hashes.push_back(d.hash);
    for (const auto& e : dir.entries) {
      if (e.kind == cas::Kind::kFile) hashes.push_back(e.digest.hash);
    }
  }
  // What the worker uploaded itself, or what the job already had.
  std::vector<std::string> from = *scopes;
  from.push_back("worker:" + worker.worker_id);
  auto seen = store_.Members(from, hashes);
  if (!seen.ok()) return seen.status();
  return store_.Add(*scopes, std::vector<std::string>(seen->begin(), seen->end()));
}

Status ContentScopes::RecordObject(const Caller& worker, int64_t job_id, int attempt, const std::string& hash) {
  auto scopes = store_.RunningJobScopes(job_id, attempt, worker.worker_id);
  if (!scopes.ok()) return scopes.status();
  std::vector<std::string> from = *scopes;
  from.push_back("worker:" + worker.worker_id);
  auto seen = store_.Members(from, {hash});
  if (!seen.ok()) return seen.status();
  if (scopes->empty() || seen->empty())
    return FailedPrecondition("object " + hash + " is not in CAS: upload it first");
  return store_.Add(*scopes, {hash});
}

}  // namespace kiln::controller
