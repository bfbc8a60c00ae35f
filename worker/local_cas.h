#pragma once
// The worker's local CAS cache: blobs fetched once and hard-linked into job
// checkouts (worker/checkout.h), where they are the overlay's read-only lower
// layer; least recently used blobs go past a size cap. The files belong to
// the build user with mode 0644 (0755 for executables), as a git clone's
// would: the overlay shows them so and copies them up on the first write.
// Nothing but the overlay may hand them to a build.

#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <vector>
#include <string>
#include <unordered_map>

#include "cas/client.h"

namespace kiln::worker {

struct MaterializeReport {
  int64_t files = 0, bytes = 0;
  int64_t fetched_files = 0, fetched_bytes = 0;  // not in the cache before
};

class LocalCas {
 public:
  // Scans `dir` (removing unfinished downloads); cached files belong to
  // uid:gid.
  LocalCas(std::string dir, int64_t max_bytes, uint32_t uid, uint32_t gid);

  enum class Place { kLink, kCopy };
  // Writes the tree `root` into `dest`, fetching what the cache lacks.
  // kLink: files are hard links to cache entries, for an overlay's lower
  // layer only (a build must never see them otherwise). kCopy: private
  // copies, for where overlays cannot be mounted. Either way every file has
  // the same mtime (1 s after the epoch), as in a fresh clone.
  Result<MaterializeReport> Materialize(cas::CasClient& client, const cas::Digest& root, const std::string& dest,
                                        Place place = Place::kLink);
  // The same for a tree already fetched.
  Result<MaterializeReport> Materialize(cas::CasClient& client, const cas::FetchedTree& tree, const std::string& dest,
                                        Place place = Place::kLink);

  // Writes a private copy of blob `d` at `path` (replacing what is there by
  // rename, never writing through it), owned like the cache's files, with
  // mtime now: a warm workspace's changed input, newer than every output.
  Status CopyOut(cas::CasClient& client, const cas::Digest& d, bool exec, const std::string& path);

  // Private copies of blobs at the given paths (their directories exist),
  // owned like the cache's files, fetching in one batch what it lacks.
  struct Placement {
    cas::Digest digest;
    bool exec = false;
    std::string path;
  };
  Result<MaterializeReport> CopyAll(cas::CasClient& client, const std::vector<Placement>& files);

  int64_t bytes() const;

  // The path of one blob in the cache, fetched if missing (e.g. an image
  // layer). The file stays until the cache is trimmed past its cap.
  Result<std::string> Blob(cas::CasClient& client, const cas::Digest& d);

  // The path of a blob if the cache holds it intact (nothing is fetched).
  std::optional<std::string> Cached(const cas::Digest& d) const;

  // Adds `data` (whose digest is `d`) to the cache and calls `use` with its
  // path, during which it stays (e.g. to upload it).
  Status Put(const cas::Digest& d, std::string_view data, const std::function<Status(const std::string&)>& use);

 private:
  struct Item {
    int64_t size = 0;
    uint64_t last_use = 0;
    int pins = 0;
  };
  std::string PathOf(const std::string& hash, bool exec) const;
  // True if the cached copy is intact (size, exact mode and the marker
  // mtime: anything that wrote or chmodded through a hardlink changed them).
  bool Intact(const std::string& path, int64_t size, bool exec) const;
  // Gives `path` the cache's owner and mode, and the marker mtime when
  // `marker` (else it keeps its own).
  Status Seal(const std::string& path, bool exec, bool marker = true) const;
  // Copies `from` to `path` through a temporary name and a rename (what was
  // at `path` is replaced, never written into), sealed as above.
  Status CopyReplacing(const std::string& from, const std::string& path, bool exec, bool marker) const;
  // Pins the blobs `plain` (hash -> digest) and the executable copies of
  // `exec` (keys into `pinned`), fetching what the cache lacks (counted in rep).
  Status Fetch(cas::CasClient& client, const std::map<std::string, cas::Digest>& plain,
               const std::set<std::string>& exec, std::vector<std::string>& pinned, MaterializeReport& rep);
  // Keys pinned for one use, unpinned (and the cache trimmed) after it.
  struct Pins {
    LocalCas* cas;
    std::vector<std::string> keys;
    ~Pins() {
      cas->Unpin(keys);
      cas->Trim();
    }
  };
  void Pin(const std::string& key, int64_t size);
  void Unpin(const std::vector<std::string>& keys);
  void Trim();

  std::string dir_;
  int64_t max_bytes_;
  uint32_t uid_, gid_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Item> items_;  // "<hash>" or "<hash>.x"
  int64_t total_ = 0;
  uint64_t clock_ = 0;
  std::mutex fetch_mu_;  // one download at a time: two jobs needing a blob fetch it once
};

}  // namespace kiln::worker
