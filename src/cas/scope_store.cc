#include "cas/scope_store.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "db/pool.h"

namespace kiln::cas {
namespace {

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

// Known::trees' key: "<scopes>|<root>".
std::string TreeKey(const std::vector<std::string>& scopes, const std::string& root) {
  return Join(scopes) + "|" + root;
}

// Scopes and hashes travel comma-joined: none may hold a comma.
Status CheckList(const std::vector<std::string>& v) {
  for (const auto& s : v) {
    if (s.empty() || s.find(',') != std::string::npos) return InvalidArgument("invalid scope or hash \"" + s + "\"");
  }
  return Status::Ok();
}

std::vector<db::Statement> Statements() {
  // Lists travel as one comma-joined text: hashes are hex, scopes are names
  // of [A-Za-z0-9._:-] (no commas).
  return {
      {"scope_add",
       "INSERT INTO cas_scope_members (scope, hash)"
       " SELECT s, h FROM unnest(string_to_array($1, ',')) s, unnest(string_to_array($2, ',')) h"
       " ON CONFLICT DO NOTHING"},
      {"scope_members",
       "SELECT scope, hash FROM cas_scope_members"
       " WHERE scope = ANY (string_to_array($1, ',')) AND hash = ANY (string_to_array($2, ','))"},
      {"scope_worker_jobs",
       "SELECT j.id, j.attempt, coalesce(j.spec->>'input_root', ''), 'project:' || p.name, coalesce(j.cache_scope, '')"
       " FROM build_jobs j JOIN projects p ON p.id = j.project_id"
       " WHERE j.worker_id = $1 AND j.status IN ('setup', 'running')"},
      {"scope_compile_objects",
       "SELECT DISTINCT object_hash FROM compile_results"
       " WHERE object_hash = ANY (string_to_array($2, ',')) AND scope = ANY (string_to_array($1, ','))"},
      {"scope_forget", "DELETE FROM cas_scope_members WHERE hash = ANY (string_to_array($1, ','))"},
  };
}

// A hash as 32 bytes (half the memory of its hex); nullopt if not hex.
using Key = std::array<unsigned char, 32>;
std::optional<Key> KeyOf(const std::string& hex) {
  if (hex.size() != 64) return std::nullopt;
  Key k{};
  for (size_t i = 0; i < 64; ++i) {
    char c = hex[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return std::nullopt;
    k[i / 2] = static_cast<unsigned char>(k[i / 2] << 4 | v);
  }
  return k;
}
struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 0;
    for (size_t i = 0; i < sizeof h; ++i) h = h << 8 | k[i];
    return h;  // the bytes of a sha256: as good as any hash of them
  }
};

}  // namespace

// Memberships known to hold, per scope. A membership ends only when the
// content is removed (Forget); on another controller that removal is not
// seen here, so what is remembered is dropped every 10 minutes. At most
// 500,000 are kept (about 40 MB); past that everything is dropped.
struct ScopeStore::Known {
  static constexpr size_t kMax = 500'000;
  static constexpr size_t kMaxTrees = 10'000;
  static constexpr std::chrono::minutes kFor{10};
  std::mutex mu;
  std::unordered_map<std::string, std::unordered_set<Key, KeyHash>> by_scope;
  // "<scopes>|<root>": trees whose every node and file is a member of one
  // of the scopes (a tree's content never changes; removals drop them all).
  std::unordered_set<std::string> trees;
  size_t count = 0;
  std::chrono::steady_clock::time_point since = std::chrono::steady_clock::now();

  void ExpireLocked() {
    auto now = std::chrono::steady_clock::now();
    if (now - since < kFor && count <= kMax) return;
    by_scope.clear();
    trees.clear();
    count = 0;
    since = now;
  }
  void Remember(const std::string& scope, const std::string& hash) {
    auto k = KeyOf(hash);
    if (!k) return;
    std::lock_guard lock(mu);
    ExpireLocked();
    if (by_scope[scope].insert(*k).second) ++count;
  }
  // Of `hashes`, puts those known in one of `scopes` into `out` (if not
  // null); returns the rest.
  std::vector<std::string> Split(const std::vector<std::string>& scopes, const std::vector<std::string>& hashes,
                                 std::unordered_set<std::string>* out) {
    std::vector<std::string> rest;
    std::lock_guard lock(mu);
    ExpireLocked();
    std::vector<const std::unordered_set<Key, KeyHash>*> sets;
    for (const auto& s : scopes) {
      auto it = by_scope.find(s);
      if (it != by_scope.end()) sets.push_back(&it->second);
    }
    for (const auto& h : hashes) {
      auto k = KeyOf(h);
      bool known = false;
      for (size_t i = 0; k && !known && i < sets.size(); ++i) known = sets[i]->count(*k) > 0;
      if (!known) rest.push_back(h);
      else if (out != nullptr) out->insert(h);
    }
    return rest;
  }
  void Forget(const std::vector<std::string>& hashes) {
    std::lock_guard lock(mu);
    trees.clear();
    for (const auto& h : hashes) {
      auto k = KeyOf(h);
      if (!k) continue;
      for (auto& [scope, set] : by_scope) count -= set.erase(*k);
    }
  }
};

ScopeStore::ScopeStore(db::Pool& pool) : pool_(pool), known_(std::make_unique<Known>()) {
  pool_.AddStatements(Statements());
}

ScopeStore::~ScopeStore() = default;

Status ScopeStore::Add(const std::vector<std::string>& scopes, const std::vector<std::string>& hashes) {
  if (scopes.empty() || hashes.empty()) return Status::Ok();
  KILN_RETURN_IF_ERROR(CheckList(scopes));
  KILN_RETURN_IF_ERROR(CheckList(hashes));
  // Only what is not known yet: a resubmit's uploads are mostly known.
  std::vector<std::string> add;
  for (const auto& scope : scopes) {
    for (auto& h : known_->Split({scope}, hashes, nullptr)) add.push_back(std::move(h));
  }
  if (add.empty()) return Status::Ok();
  std::sort(add.begin(), add.end());
  add.erase(std::unique(add.begin(), add.end()), add.end());
  Status s = pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        tx.exec_prepared("scope_add", Join(scopes), Join(add));
        return Status::Ok();
      },
      "cannot record content scopes");
  if (!s.ok()) return s;
  for (const auto& scope : scopes)
    for (const auto& h : add) known_->Remember(scope, h);
  return s;
}

Result<std::unordered_set<std::string>> ScopeStore::Members(const std::vector<std::string>& scopes,
                                                            const std::vector<std::string>& hashes) {
  std::unordered_set<std::string> out;
  if (scopes.empty() || hashes.empty()) return out;
  KILN_RETURN_IF_ERROR(CheckList(scopes));
  KILN_RETURN_IF_ERROR(CheckList(hashes));
  out.reserve(hashes.size());
  std::vector<std::string> ask = known_->Split(scopes, hashes, &out);
  if (ask.empty()) return out;
  KILN_RETURN_IF_ERROR(AskMembers(scopes, ask, out));
  return out;
}

Result<std::unordered_set<std::string>> ScopeStore::NotMembers(const std::vector<std::string>& scopes,
                                                               const std::vector<std::string>& hashes) {
  if (scopes.empty()) return std::unordered_set<std::string>(hashes.begin(), hashes.end());
  if (hashes.empty()) return std::unordered_set<std::string>();
  KILN_RETURN_IF_ERROR(CheckList(scopes));
  KILN_RETURN_IF_ERROR(CheckList(hashes));
  // What memory does not know is asked; what PostgreSQL does not know either is the answer.
  std::vector<std::string> ask = known_->Split(scopes, hashes, nullptr);
  if (ask.empty()) return std::unordered_set<std::string>();
  std::unordered_set<std::string> members;
  KILN_RETURN_IF_ERROR(AskMembers(scopes, ask, members));
  std::unordered_set<std::string> out;
  for (auto& h : ask)
    if (!members.count(h)) out.insert(std::move(h));
  return out;
}

Status ScopeStore::AskMembers(const std::vector<std::string>& scopes, const std::vector<std::string>& ask,
                              std::unordered_set<std::string>& out) {
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        for (const auto& r : tx.exec_prepared("scope_members", Join(scopes), Join(ask))) {
          std::string hash = r[1].as<std::string>();
          known_->Remember(r[0].as<std::string>(), hash);
          out.insert(std::move(hash));
        }
        return Status::Ok();
      },
      "cannot read content scopes");
}

bool ScopeStore::TreeKnown(const std::vector<std::string>& scopes, const std::string& root) {
  std::string key = TreeKey(scopes, root);
  std::lock_guard lock(known_->mu);
  known_->ExpireLocked();
  return known_->trees.count(key) > 0;
}

void ScopeStore::RememberTree(const std::vector<std::string>& scopes, const std::string& root) {
  std::string key = TreeKey(scopes, root);
  std::lock_guard lock(known_->mu);
  known_->ExpireLocked();
  if (known_->trees.size() >= Known::kMaxTrees) known_->trees.clear();
  known_->trees.insert(std::move(key));
}

namespace {

ScopeStore::HeldJob RowToHeldJob(const pqxx::row& r) {
  ScopeStore::HeldJob j;
  j.job_id = r[0].as<int64_t>();
  j.attempt = r[1].as<int>();
  j.input_root = r[2].as<std::string>();
  j.scopes.push_back(r[3].as<std::string>());
  std::string cache = r[4].as<std::string>();
  if (!cache.empty() && cache != j.scopes[0]) j.scopes.push_back(std::move(cache));
  return j;
}

}  // namespace

Result<std::vector<ScopeStore::HeldJob>> ScopeStore::WorkerJobs(const std::string& worker_id) {
  return pool_.Query("cannot read the jobs of worker " + worker_id,
                     [&](pqxx::connection& c) -> Result<std::vector<HeldJob>> {
                       pqxx::nontransaction tx(c);
                       std::vector<HeldJob> out;
                       for (const auto& r : tx.exec_prepared("scope_worker_jobs", worker_id))
                         out.push_back(RowToHeldJob(r));
                       return out;
                     });
}

Result<std::unordered_set<std::string>> ScopeStore::CompileObjects(const std::vector<std::string>& scopes,
                                                                   const std::vector<std::string>& hashes) {
  std::unordered_set<std::string> out;
  if (scopes.empty() || hashes.empty()) return out;
  KILN_RETURN_IF_ERROR(CheckList(scopes));
  KILN_RETURN_IF_ERROR(CheckList(hashes));
  return pool_.Query("cannot read compile objects", [&](pqxx::connection& c) -> Result<std::unordered_set<std::string>> {
    pqxx::nontransaction tx(c);
    for (const auto& r : tx.exec_prepared("scope_compile_objects", Join(scopes), Join(hashes)))
      out.insert(r[0].as<std::string>());
    return out;
  });
}

Status ScopeStore::Forget(const std::vector<std::string>& hashes) {
  if (hashes.empty()) return Status::Ok();
  known_->Forget(hashes);
  Status s = pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        tx.exec_prepared("scope_forget", Join(hashes));
        return Status::Ok();
      },
      "cannot forget removed content");
  known_->Forget(hashes);  // and after: a read between the two may have remembered it
  return s;
}

}  // namespace kiln::cas
