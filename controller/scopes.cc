#include "controller/scopes.h"

#include "cas/digest.h"
#include "cas/scope_store.h"
#include "cas/tree_store.h"
#include "controller/guard.h"
#include "controller/project_cache.h"
#include "controller/submit_policy.h"

namespace kiln::controller {

Result<std::string> ContentScopes::ProjectScope(const std::string& project) {
  auto pc = projects_.Get(project);
  if (!pc.ok()) return pc.status();
  return CacheScope(project, *pc);
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
    auto s = ProjectScope(p);
    if (s.ok()) out.push_back(*s);  // a project removed since the token was made sees nothing
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

Status ContentScopes::RecordOutputs(const Caller& worker, int64_t job_id, const std::string& output_root,
                                    cas::TreeStore& trees) {
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
  auto seen = Seen(worker, hashes);
  if (!seen.ok()) return seen.status();
  auto scope = store_.JobScope(job_id);
  if (!scope.ok()) return scope.status();
  return store_.Add({*scope}, std::vector<std::string>(seen->begin(), seen->end()));
}

}  // namespace kiln::controller
