#include "controller/scopes.h"

#include "cas/digest.h"
#include "cas/tree_store.h"
#include "controller/guard.h"
#include "controller/project_cache.h"
#include "controller/submit_policy.h"

namespace kiln::controller {
namespace {

// The trees remembered hold at most this many hashes together (about 2 MB
// per 10,000); a bigger tree is computed on each call.
constexpr size_t kMaxCachedHashes = 500'000;

}  // namespace

Result<std::vector<std::string>> ContentScopes::ProjectScopes(const std::string& project) {
  auto pc = projects_.Get(project);
  if (!pc.ok()) return pc.status();
  std::vector<std::string> out{"project:" + project};
  std::string cache = CacheScope(project, *pc);
  if (cache != out[0]) out.push_back(cache);
  return out;
}

Result<std::vector<std::string>> ContentScopes::UploadTo(const Caller& c) {
  if (c.IsAdmin()) return std::vector<std::string>{};
  if (c.IsWorker()) return std::vector<std::string>{"worker:" + c.worker_id};
  std::vector<std::string> out;
  for (const auto& p : c.projects) {
    auto s = ProjectScopes(p);
    if (s.ok()) out.insert(out.end(), s->begin(), s->end());  // a project removed since sees nothing
  }
  return out;
}

Result<std::unordered_set<std::string>> ContentScopes::Seen(const Caller& c, const std::vector<std::string>& hashes) {
  if (c.IsAdmin()) return HashSet(hashes.begin(), hashes.end());
  if (c.IsWorker()) {
    if (lender_) {  // a remote action's inputs: no query
      HashSet lent;
      lender_(c.worker_id, hashes, lent);
      if (lent.size() == HashSet(hashes.begin(), hashes.end()).size()) return lent;
    }
    auto jobs = store_.WorkerJobs(c.worker_id);
    if (!jobs.ok()) return jobs.status();
    HashSet out;
    KILN_RETURN_IF_ERROR(SeenThrough(c.worker_id, *jobs, hashes, out));
    return out;
  }
  auto scopes = UploadTo(c);
  if (!scopes.ok()) return scopes.status();
  return store_.Members(*scopes, hashes);
}

Result<std::unordered_set<std::string>> ContentScopes::SeenThroughJob(const std::string& worker_id,
                                                                     const cas::ScopeStore::HeldJob& job,
                                                                     const std::vector<std::string>& hashes) {
  HashSet out;
  KILN_RETURN_IF_ERROR(SeenThrough(worker_id, {job}, hashes, out));
  return out;
}

Result<std::unordered_set<std::string>> ContentScopes::Unseen(const Caller& c, const std::vector<std::string>& hashes) {
  if (c.IsAdmin()) return HashSet();
  if (c.IsWorker()) {
    auto seen = Seen(c, hashes);
    if (!seen.ok()) return seen.status();
    HashSet out;
    for (const auto& h : hashes)
      if (!seen->count(h)) out.insert(h);
    return out;
  }
  auto scopes = UploadTo(c);
  if (!scopes.ok()) return scopes.status();
  return store_.NotMembers(*scopes, hashes);
}

Result<ContentScopes::HashSet> ContentScopes::Hashes(const std::string& root) {
  auto digest = cas::ParseDigest(root);
  if (!digest.ok()) return digest.status();
  auto reach = trees_.Reachable(*digest);
  if (!reach.ok()) return reach.status();
  HashSet set;
  for (const auto& [d, dir] : reach->nodes) {
    set.insert(d.hash);
    for (const auto& e : dir.entries)
      if (e.kind == cas::Kind::kFile) set.insert(e.digest.hash);
  }
  return set;
}

Result<std::shared_ptr<const ContentScopes::HashSet>> ContentScopes::TreeHashes(const std::string& root) {
  {
    std::lock_guard lock(mu_);
    auto it = by_root_.find(root);
    if (it != by_root_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
  }
  auto hashes = Hashes(root);
  if (!hashes.ok()) return hashes.status();
  auto set = std::make_shared<HashSet>(std::move(*hashes));
  // The empty tree's node need not be stored: it is its own content.
  set->insert(root.substr(0, root.find('/')));
  std::lock_guard lock(mu_);
  if (set->size() <= kMaxCachedHashes && !by_root_.count(root)) {
    lru_.emplace_front(root, set);
    by_root_[root] = lru_.begin();
    cached_hashes_ += set->size();
    while (cached_hashes_ > kMaxCachedHashes) {
      cached_hashes_ -= lru_.back().second->size();
      by_root_.erase(lru_.back().first);
      lru_.pop_back();
    }
  }
  return std::shared_ptr<const HashSet>(std::move(set));
}

Status ContentScopes::SeenThrough(const std::string& worker_id, const std::vector<cas::ScopeStore::HeldJob>& jobs,
                                  const std::vector<std::string>& hashes, HashSet& out) {
  std::vector<std::string> rest;
  std::vector<std::shared_ptr<const HashSet>> trees;
  for (const auto& j : jobs) {
    if (j.input_root.empty()) continue;
    auto t = TreeHashes(j.input_root);
    if (!t.ok()) return t.status();
    trees.push_back(std::move(*t));
  }
  for (const auto& h : hashes) {
    bool in_tree = false;
    for (size_t i = 0; !in_tree && i < trees.size(); ++i) in_tree = trees[i]->count(h) > 0;
    if (in_tree) out.insert(h);
    else rest.push_back(h);
  }
  if (!rest.empty() && lender_) {
    HashSet lent;
    lender_(worker_id, rest, lent);
    if (!lent.empty()) {
      std::erase_if(rest, [&](const std::string& h) { return lent.count(h) > 0; });
      out.insert(lent.begin(), lent.end());
    }
  }
  if (rest.empty()) return Status::Ok();
  std::vector<std::string> own{"worker:" + worker_id, "images"};
  auto mine = store_.Members(own, rest);
  if (!mine.ok()) return mine.status();
  std::vector<std::string> left;
  for (auto& h : rest) {
    if (mine->count(h)) out.insert(std::move(h));
    else left.push_back(std::move(h));
  }
  if (left.empty() || jobs.empty()) return Status::Ok();
  std::vector<std::string> scopes;
  for (const auto& j : jobs) scopes.insert(scopes.end(), j.scopes.begin(), j.scopes.end());
  auto objects = store_.CompileObjects(scopes, left);
  if (!objects.ok()) return objects.status();
  out.insert(objects->begin(), objects->end());
  return Status::Ok();
}

Result<std::vector<cas::ScopeStore::HeldJob>> ContentScopes::JobsRunning(const Caller& worker, int64_t job_id,
                                                                        int attempt, std::vector<std::string>& scopes) {
  auto jobs = store_.WorkerJobs(worker.worker_id);
  if (!jobs.ok()) return jobs.status();
  for (const auto& j : *jobs) {
    if (j.job_id != job_id || j.attempt != attempt) continue;
    scopes = j.scopes;
    return jobs;
  }
  return FailedPrecondition("job " + std::to_string(job_id) + " attempt " + std::to_string(attempt) +
                            " does not run on worker " + worker.worker_id);
}

Status ContentScopes::RecordOutputs(const Caller& worker, int64_t job_id, int attempt, const std::string& output_root) {
  std::vector<std::string> scopes;
  auto jobs = JobsRunning(worker, job_id, attempt, scopes);
  if (!jobs.ok()) return jobs.status();
  auto tree = Hashes(output_root);
  if (!tree.ok()) return tree.status();
  // What the worker sees, as its FindMissing answered: content it was told
  // is present was not uploaded again, and must join all the same.
  HashSet seen;
  KILN_RETURN_IF_ERROR(SeenThrough(worker.worker_id, *jobs, {tree->begin(), tree->end()}, seen));
  return store_.Add(scopes, {seen.begin(), seen.end()});
}

Status ContentScopes::RecordObject(const Caller& worker, int64_t job_id, int attempt, const std::string& hash) {
  std::vector<std::string> scopes;
  auto jobs = JobsRunning(worker, job_id, attempt, scopes);
  if (!jobs.ok()) return jobs.status();
  HashSet seen;
  KILN_RETURN_IF_ERROR(SeenThrough(worker.worker_id, *jobs, {hash}, seen));
  if (seen.empty()) return FailedPrecondition("object " + hash + " is not in CAS: upload it first");
  return store_.Add(scopes, {hash});
}

}  // namespace kiln::controller
