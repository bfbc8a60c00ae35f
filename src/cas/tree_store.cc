#include "cas/tree_store.h"

#include <algorithm>
#include <ctime>
#include <unordered_map>

#include "db/pool.h"

namespace kiln::cas {

namespace {

// Every node reachable from the roots selected by ROOTS (a query giving
// "<hex>/<size>" or "<hex>" values).
#define KILN_WALK(ROOTS)                                                                                  \
  "WITH RECURSIVE walk(digest) AS ("                                                                   \
  "  SELECT split_part(r, '/', 1) FROM (" ROOTS ") AS roots(r)"                                       \
  "  UNION"                                                                                             \
  "  SELECT split_part(substr(v, 3), '/', 1) FROM walk w JOIN cas_trees t ON t.digest = w.digest,"    \
  "    LATERAL svals(t.entries) v WHERE left(v, 2) = 'd:') "

std::string ArrayLiteral(const std::vector<Digest>& ds) {
  std::string s = "{";
  for (size_t i = 0; i < ds.size(); ++i) {
    if (i) s += ',';
    s += ds[i].hash;  // checked hex: needs no quoting
  }
  return s + "}";
}

// The stored nodes among `want` (the others are not in the result), in
// digest order, their entries in name order.
Result<std::vector<std::pair<Digest, Directory>>> ReadNodes(pqxx::transaction_base& tx,
                                                           const std::vector<Digest>& want) {
  auto r = tx.exec_prepared("read_tree_nodes", ArrayLiteral(want));
  std::vector<std::pair<Digest, Directory>> out;
  for (const auto& row : r) {
    std::string h = row[0].as<std::string>();
    if (out.empty() || out.back().first.hash != h) out.emplace_back(Digest{h, row[1].as<int64_t>()}, Directory{});
    if (row[2].is_null()) continue;  // an empty directory
    auto e = EntryFromValue(row[2].as<std::string>(), row[3].as<std::string>());
    if (!e.ok()) return e.status();
    out.back().second.entries.push_back(std::move(*e));
  }
  return out;
}

// Every statement but the batched insert (a VALUES list as long as the
// batch; its names and values quoted by libpqxx).
std::vector<db::Statement> Statements() {
  return {
      {"read_tree_nodes",
       "SELECT t.digest, t.size, e.key, e.value FROM cas_trees t LEFT JOIN LATERAL each(t.entries) e ON true"
       " WHERE t.digest = ANY($1::text[]) ORDER BY t.digest, e.key COLLATE \"C\""},
      {"stored_tree_nodes", "SELECT digest FROM cas_trees WHERE digest = ANY($1::text[])"},
      // In digest order, so that concurrent touches never deadlock.
      {"touch_tree_nodes",
       "WITH stale AS (SELECT digest FROM cas_trees WHERE digest = ANY($1::text[])"
       "   AND last_used < now() - make_interval(secs => $2) ORDER BY digest FOR UPDATE)"
       " UPDATE cas_trees t SET last_used = now() FROM stale WHERE t.digest = stale.digest"},
      {"live_cas_hashes",
       KILN_WALK("SELECT * FROM kiln_cas_live_roots(make_interval(secs => $1))")
       "SELECT digest FROM walk UNION"
       " SELECT split_part(substr(v, 3), '/', 1) FROM walk w JOIN cas_trees t ON t.digest = w.digest,"
       "   LATERAL svals(t.entries) v WHERE left(v, 2) IN ('f:', 'x:')"
       " UNION SELECT * FROM kiln_cas_live_blobs()"},
      {"old_tree_nodes", "SELECT digest FROM cas_trees WHERE last_used < now() - make_interval(secs => $1)"},
      {"delete_tree_nodes",
       "DELETE FROM cas_trees WHERE digest = ANY($1::text[]) AND last_used < now() - make_interval(secs => $2)"},
  };
}

// Nodes kept in memory: a bound (the next reads go to the database), far
// above what the trees in use need (PostgreSQL's source has 585).
constexpr size_t kMaxKnown = 50'000;

}  // namespace

void TreeStore::Remember(const std::vector<std::pair<Digest, Directory>>& nodes, bool confirmed) {
  const int64_t now = ::time(nullptr);
  std::lock_guard g(known_mu_);
  if (known_.size() + nodes.size() > kMaxKnown) known_.clear();
  for (const auto& [d, dir] : nodes) {
    Known& k = known_[d.hash];
    if (!k.dir) {
      k.digest = d;
      k.dir = std::make_shared<const Directory>(dir);
    }
    if (confirmed) k.confirmed_s = now;
  }
}

void TreeStore::Confirm(const std::vector<Digest>& nodes) {
  const int64_t now = ::time(nullptr);
  std::lock_guard g(known_mu_);
  for (const auto& d : nodes)
    if (auto it = known_.find(d.hash); it != known_.end()) it->second.confirmed_s = now;
}

const TreeStore::Known* TreeStore::KnownStoredLocked(const std::string& hash, int64_t now) const {
  auto it = known_.find(hash);
  return it != known_.end() && it->second.confirmed_s >= now - touch_after_s_ ? &it->second : nullptr;
}

TreeStore::TreeStore(std::string db_url, size_t pool_size, int64_t touch_after_s)
    : pool_(std::make_unique<db::Pool>(std::move(db_url), pool_size)), touch_after_s_(touch_after_s) {
  pool_->AddStatements(Statements());
}
TreeStore::~TreeStore() = default;

Result<std::vector<Digest>> TreeStore::FindMissing(const std::vector<Digest>& nodes) {
  std::vector<Digest> missing;
  if (nodes.empty()) return missing;
  for (const auto& d : nodes)
    if (!IsHash(d.hash)) return InvalidArgument("bad tree digest '" + d.hash.substr(0, 80) + "'");
  std::unordered_set<std::string> present;
  std::vector<Digest> ask;  // those not known to be stored now
  {
    const int64_t now = ::time(nullptr);
    std::lock_guard g(known_mu_);
    for (const auto& d : nodes) {
      if (KnownStoredLocked(d.hash, now) != nullptr) present.insert(d.hash);
      else ask.push_back(d);
    }
  }
  if (ask.empty()) return missing;
  std::vector<Digest> found;
  auto stored = pool_->Query("cannot look up tree nodes", [&](pqxx::connection& c) -> Result<std::vector<std::string>> {
    pqxx::nontransaction tx(c);
    std::vector<std::string> hashes;
    for (const auto& row : tx.exec_prepared("stored_tree_nodes", ArrayLiteral(ask)))
      hashes.push_back(row[0].as<std::string>());
    return hashes;
  });
  if (!stored.ok()) return stored.status();
  present.insert(stored->begin(), stored->end());
  for (const auto& d : ask)
    if (present.count(d.hash)) found.push_back(d);
  if (auto t = Touch(found); !t.ok()) return t;
  for (const auto& d : nodes)
    if (!present.count(d.hash)) missing.push_back(d);
  return missing;
}

Status TreeStore::Touch(const std::vector<Digest>& nodes) {
  if (nodes.empty()) return Status::Ok();
  return pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        tx.exec_prepared("touch_tree_nodes", ArrayLiteral(nodes), static_cast<double>(touch_after_s_));
        tx.commit();
        Confirm(nodes);
        return Status::Ok();
      },
      "cannot mark tree nodes used");
}

Status TreeStore::Insert(std::vector<std::pair<Digest, Directory>> nodes) {
  if (nodes.empty()) return Status::Ok();
  // Sorted and unique: rows are locked in one order by every inserter (no
  // deadlock), and no row is affected twice by one statement.
  std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) { return a.first.hash < b.first.hash; });
  nodes.erase(std::unique(nodes.begin(), nodes.end(),
                          [](const auto& a, const auto& b) { return a.first.hash == b.first.hash; }),
              nodes.end());
  return pool_->Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        constexpr size_t kBatch = 500;
        for (size_t i = 0; i < nodes.size(); i += kBatch) {
          std::string sql = "INSERT INTO cas_trees (digest, size, entries) VALUES ";
          for (size_t k = i; k < std::min(nodes.size(), i + kBatch); ++k) {
            const auto& [d, dir] = nodes[k];
            if (k > i) sql += ',';
            sql += "('" + d.hash + "'," + std::to_string(d.size) + ",hstore(ARRAY[";
            for (size_t e = 0; e < dir.entries.size(); ++e) sql += (e ? "," : "") + tx.quote(dir.entries[e].name);
            sql += "]::text[],ARRAY[";
            for (size_t e = 0; e < dir.entries.size(); ++e)
              sql += (e ? "," : "") + tx.quote(EntryValue(dir.entries[e]));
            sql += "]::text[]))";
          }
          sql += " ON CONFLICT (digest) DO UPDATE SET last_used = now()";
          tx.exec(sql);
        }
        tx.commit();
        Remember(nodes, /*confirmed=*/true);
        return Status::Ok();
      },
      "cannot store tree nodes");
}

// Level by level from the root: the nodes known to be stored come from
// memory, the others from one query per level.
Result<TreeStore::Reach> TreeStore::Reachable(const Digest& root) {
  Reach out;
  std::unordered_set<std::string> visited{root.hash};
  std::vector<std::string> level{root.hash};
  // Flatten refuses trees nested deeper than 512 levels: one more level
  // lets it say so, and bounds the queries a hostile tree can cause.
  constexpr int kLevels = 514;
  for (int depth = 0; !level.empty() && depth < kLevels; ++depth) {
    std::vector<std::pair<Digest, std::shared_ptr<const Directory>>> got;
    std::vector<Digest> ask;
    {
      const int64_t now = ::time(nullptr);
      std::lock_guard g(known_mu_);
      for (const auto& h : level) {
        if (const Known* k = KnownStoredLocked(h, now)) got.emplace_back(k->digest, k->dir);
        else ask.push_back(Digest{h, 0});
      }
    }
    if (!ask.empty()) {
      auto got_nodes = pool_->Query("cannot read tree " + root.ToString(),
                                    [&](pqxx::connection& c) -> Result<std::vector<std::pair<Digest, Directory>>> {
                                      pqxx::nontransaction tx(c);
                                      return ReadNodes(tx, ask);
                                    });
      if (!got_nodes.ok()) return got_nodes.status();
      std::vector<std::pair<Digest, Directory>> read = std::move(got_nodes).value();
      Remember(read, /*confirmed=*/false);
      std::unordered_set<std::string> stored;
      for (auto& [d, dir] : read) {
        stored.insert(d.hash);
        got.emplace_back(d, std::make_shared<const Directory>(std::move(dir)));
      }
      for (const auto& d : ask)
        if (!stored.count(d.hash)) out.missing.push_back(d);
    }
    std::vector<std::string> next;
    for (auto& [d, dir] : got) {
      for (const auto& e : dir->entries)
        if (e.kind == Kind::kDir && visited.insert(e.digest.hash).second) next.push_back(e.digest.hash);
      out.nodes.emplace_back(d, *dir);
    }
    level = std::move(next);
  }
  // In digest order, as pages of GetTree count them.
  std::sort(out.nodes.begin(), out.nodes.end(), [](const auto& a, const auto& b) { return a.first.hash < b.first.hash; });
  std::sort(out.missing.begin(), out.missing.end(), [](const Digest& a, const Digest& b) { return a.hash < b.hash; });
  return out;
}

Result<TreeStore::TreeDiff> TreeStore::Diff(const Digest& before, const Digest& after, size_t max_changes) {
  auto diffed = pool_->Query(
      "cannot compare trees " + before.ToString() + " and " + after.ToString(),
      [&](pqxx::connection& c) -> Result<TreeDiff> {
        pqxx::read_transaction tx(c);
        TreeDiff out;
        std::vector<std::tuple<std::string, Digest, Digest>> level;
        if (before.hash != after.hash) level.emplace_back("", before, after);
        while (!level.empty()) {
          std::vector<Digest> want;
          for (const auto& [p, a, b] : level) {
            want.push_back(a);
            want.push_back(b);
          }
          auto read = ReadNodes(tx, want);
          if (!read.ok()) return read.status();
          std::unordered_map<std::string, Directory> nodes;
          nodes[DigestOf(Directory{}).hash] = Directory{};  // stored or not
          for (auto& [d, dir] : *read) nodes[d.hash] = std::move(dir);
          std::vector<std::tuple<std::string, Digest, Digest>> next;
          for (const auto& [p, a, b] : level) {
            auto ia = nodes.find(a.hash), ib = nodes.find(b.hash);
            if (ia == nodes.end() || ib == nodes.end()) {
              return NotFound("directory node " + (ia == nodes.end() ? a : b).ToString() + " of '" +
                              (p.empty() ? std::string(".") : p) + "' is not stored (collected?)");
            }
            DiffDirectories(p, ia->second, ib->second, &out.changes, &next);
            if (out.changes.size() > max_changes) {
              out.changes.resize(max_changes);
              out.truncated = true;
              return out;
            }
          }
          level = std::move(next);
        }
        return out;
      });
  if (!diffed.ok()) return diffed;
  // Breadth-first order: sort for reading.
  std::sort(diffed->changes.begin(), diffed->changes.end(),
            [](const Change& x, const Change& y) { return x.path < y.path; });
  return diffed;
}

Result<std::unordered_set<std::string>> TreeStore::LiveHashes(int64_t output_retention_s) {
  return pool_->Query("cannot list the live CAS trees",
                      [&](pqxx::connection& c) -> Result<std::unordered_set<std::string>> {
                        pqxx::read_transaction tx(c);
                        std::unordered_set<std::string> live;
                        for (const auto& row :
                             tx.exec_prepared("live_cas_hashes", static_cast<double>(output_retention_s)))
                          live.insert(row[0].as<std::string>());
                        return live;
                      });
}

Result<int64_t> TreeStore::DeleteUnreachable(const std::unordered_set<std::string>& live, int64_t min_age_s) {
  return pool_->Query("cannot collect tree nodes", [&](pqxx::connection& c) -> Result<int64_t> {
    pqxx::work tx(c);
    std::vector<Digest> dead;
    for (const auto& row : tx.exec_prepared("old_tree_nodes", static_cast<double>(min_age_s))) {
      std::string h = row[0].as<std::string>();
      if (!live.count(h)) dead.push_back(Digest{h, 0});
    }
    int64_t n = 0;
    if (!dead.empty()) {
      auto d = tx.exec_prepared("delete_tree_nodes", ArrayLiteral(dead), static_cast<double>(min_age_s));
      n = static_cast<int64_t>(d.affected_rows());
      std::lock_guard g(known_mu_);
      for (const auto& x : dead) known_.erase(x.hash);
    }
    tx.commit();
    return n;
  });
}

}  // namespace kiln::cas
