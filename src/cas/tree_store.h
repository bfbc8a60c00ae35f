#pragma once
// Directory nodes in PostgreSQL (table cas_trees, hstore entries), and the
// reachability queries the CAS service and its collector need.

#include <memory>
#include <mutex>
#include <unordered_map>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "cas/tree.h"

namespace kiln::db {
class Pool;
}

namespace kiln::cas {

class TreeStore {
 public:
  // Node uses are recorded when older than `touch_after_s`. Nodes are
  // immutable (named by their content): the store keeps those it read or
  // wrote in memory, and takes one it knows as stored for touch_after_s
  // after it last confirmed it (read, stored or marked used), since nodes
  // are collected only after far longer unused.
  explicit TreeStore(std::string db_url, size_t pool_size = 4, int64_t touch_after_s = 600);
  ~TreeStore();

  // The nodes not stored; marks the stored ones as used now.
  Result<std::vector<Digest>> FindMissing(const std::vector<Digest>& nodes);
  // Stores checked nodes (existing ones are marked used).
  Status Insert(std::vector<std::pair<Digest, Directory>> nodes);
  // Marks nodes used (a submit that names them).
  Status Touch(const std::vector<Digest>& nodes);

  struct Reach {
    std::vector<std::pair<Digest, Directory>> nodes;  // stored nodes reachable from the root
    std::vector<Digest> missing;                      // referenced but not stored
  };
  Result<Reach> Reachable(const Digest& root);

  // What changed from tree `before` to tree `after`, reading only the nodes
  // on differing paths (one query per level). At most `max_changes` are
  // returned; `truncated` says there were more. NotFound if a node is missing.
  struct TreeDiff {
    std::vector<Change> changes;
    bool truncated = false;
  };
  Result<TreeDiff> Diff(const Digest& before, const Digest& after, size_t max_changes);

  // Hashes of every node and blob reachable from kiln_cas_live_roots, and
  // of kiln_cas_live_blobs (images).
  Result<std::unordered_set<std::string>> LiveHashes(int64_t output_retention_s);
  // Deletes nodes unused for `min_age_s` that are not in `live`.
  Result<int64_t> DeleteUnreachable(const std::unordered_set<std::string>& live, int64_t min_age_s);

 private:
  struct Known {
    Digest digest;
    std::shared_ptr<const Directory> dir;
    int64_t confirmed_s = 0;  // when last known stored and marked used (unix s); 0: not marked
  };
  // Remembers nodes (as confirmed now when `confirmed`).
  void Remember(const std::vector<std::pair<Digest, Directory>>& nodes, bool confirmed);
  void Confirm(const std::vector<Digest>& nodes);
  // The node if it is known and was confirmed within touch_after_s (hold known_mu_).
  const Known* KnownStoredLocked(const std::string& hash, int64_t now) const;
  std::unique_ptr<db::Pool> pool_;
  int64_t touch_after_s_;
  std::mutex known_mu_;
  std::unordered_map<std::string, Known> known_;  // by hash
};

}  // namespace kiln::cas
