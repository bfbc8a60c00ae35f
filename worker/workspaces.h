#pragma once
// Warm workspaces on a worker: a project's build directory kept between jobs
// (work_dir/workspaces/<id>/src), so that make's own incremental logic works
// on the next job of the same project and name. Each is a checkout
// (worker/checkout.h) kept between jobs: the tree in lower/, what builds
// wrote on its own disk. A new input tree is synced into lower/ from the
// Merkle trees: unchanged files are not touched (their mtimes stay), changed
// ones are replaced (with a new mtime), removed ones deleted. What the last
// build did to its inputs is undone (they are the tree's bytes again, with a
// new mtime); what it wrote beside them is kept. One job at a time per
// workspace; least recently used ones go past a size cap.

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cas/client.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::worker {

class Checkouts;
class LocalCas;

class WorkspaceStore {
 public:
  // Scans `dir`; a workspace a crashed worker left in use is deleted (its
  // state is unknown). Checkouts are made by `checkouts`.
  WorkspaceStore(std::string dir, int64_t max_bytes, Checkouts& checkouts);

  // The workspace's directory for a job, created if new; nullopt while
  // another job uses it (the job then runs in a fresh directory). A
  // workspace whose job just ended is waited for (at most 30 s).
  std::optional<std::string> Acquire(const std::string& project, const std::string& name);

  struct SyncReport {
    bool fresh = false;  // created now (nothing to keep)
    int64_t unchanged = 0, changed = 0, added = 0, removed = 0;
  };
  // Makes the acquired workspace hold tree `root` and mounts it, its disk
  // capped at `disk_bytes` (a workspace made with another cap starts over).
  // On failure the workspace is discarded at Release.
  Result<SyncReport> Sync(const std::string& project, const std::string& name, cas::CasClient& client,
                          LocalCas& local, const cas::Digest& root, int64_t disk_bytes);

  // The checkout's base directory of an acquired workspace (for
  // Checkouts::DiskFull).
  std::string BaseOf(const std::string& project, const std::string& name) const { return PathOf(project, name); }

  // The job is over: until Release, Acquire waits for the workspace instead
  // of sending its next job to a fresh directory.
  void Releasing(const std::string& project, const std::string& name);

  // After the job: keep it for the next (keep) or delete it (its state is
  // not to be trusted: cancelled, killed, a failed sync). Returns what to
  // report to the controller, and any workspaces evicted past the cap.
  std::vector<v1::WorkspaceReport> Release(const std::string& project, const std::string& name, bool keep);

  // kiln workspace rm: deleted now, or when its job releases it. Returns the
  // report to send (present = false) if it was here.
  std::optional<v1::WorkspaceReport> Drop(const std::string& project, const std::string& name);

  // Every workspace held (for registration).
  std::vector<v1::WorkspaceReport> List() const;

 private:
  struct File {
    std::string value;  // the tree's entry: cas::EntryValue, or "d" for a directory
    int64_t ino = 0, size = 0, mtime_ns = 0;
    // Found on disk as synced when the last job ended (in this process; not
    // in meta.json): the next sync trusts it without looking again.
    bool intact = false;
  };
  struct Meta {
    std::string project, name, root;
    int64_t bytes = 0;
    int64_t disk_bytes = 0;  // the cap its disk was made with
    uint32_t uid = 0;        // the build user its files belong to
    int64_t last_use_ms = 0;
    std::map<std::string, File> files;  // by path, as synced (also in meta.json, for restarts)
  };
  std::string PathOf(const std::string& project, const std::string& name) const;
  // Where the tree is written: lower/ under an overlay, else src/ itself.
  std::string TreeOf(const std::string& dir) const;
  bool Load(const std::string& dir, Meta* m) const;
  bool Save(const std::string& dir, const Meta& m) const;
  v1::WorkspaceReport ReportOf(const Meta& m, bool present) const;
  // Marks intact the records in `src` that the job left as they were synced.
  static void CheckIntact(const std::string& src, std::map<std::string, File>& files);
  void Delete(const std::string& key);

  std::string dir_;
  int64_t max_bytes_;
  Checkouts& checkouts_;
  mutable std::mutex mu_;
  std::condition_variable released_;
  std::map<std::string, Meta> metas_;  // by key (project/name)
  std::set<std::string> in_use_, releasing_, drop_after_;
};

}  // namespace kiln::worker
