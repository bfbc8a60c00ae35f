#pragma once
// A job's writable checkout (docs/architecture.md, "The job's checkout").
//
// The input tree - hard links into the local CAS cache, whose files belong
// to the build user with mode 0644/0755 - is the read-only lower layer of an
// overlay. What the build writes (its outputs, and copies of the inputs it
// modifies, made by the overlay on first write) lands in the upper layer,
// on an ext4 file system of its own: a sparse file the size of the job's
// disk cap, loop-mounted. So the cache and every other job's tree are never
// written, and a build writing at full speed costs the host at most its cap
// (plus ext4's metadata) and then sees ENOSPC.
//
// A checkout at BASE is laid out as BASE/lower (the tree; the caller fills
// it), BASE/disk.img, BASE/disk (its mount: upper/ and work/) and BASE/src
// (the overlay: the directory the build runs in).
//
// Where overlays cannot be mounted (not root, no loop devices or no
// mkfs.ext4) the worker copies trees instead: writable, never written
// through, but slower and without a disk cap (it says so at start).

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include "common/mounts.h"  // UnmountUnder, for a crashed worker's checkouts
#include "common/status.h"

namespace kiln::worker {

class Checkouts {
 public:
  // `dir` keeps an empty file system per disk size, copied for each new
  // checkout; the build's files and directories belong to uid:gid.
  Checkouts(std::string dir, uint32_t uid, uint32_t gid);

  // OK when overlay checkouts work here; else why not.
  const Status& overlay() const { return overlay_; }
  uint32_t uid() const { return uid_; }
  uint32_t gid() const { return gid_; }

  // Makes a fresh checkout at BASE: `fill` writes the tree into the
  // directory it is given (BASE/lower, or BASE/src without an overlay)
  // while the disk of `disk_bytes` is made and mounted beside it; then the
  // directories become the build user's and the overlay is mounted.
  // Returns the directory the build runs in, or `fill`'s error, or what
  // failed.
  Result<std::string> Make(const std::string& base, int64_t disk_bytes,
                           const std::function<Status(const std::string&)>& fill);

  // Mounts BASE/disk.img at BASE/disk, first creating it (an empty file
  // system of `bytes`, with upper/ and work/ for the overlay) unless it
  // exists. FailedPrecondition says what failed.
  Status MountDisk(const std::string& base, int64_t bytes);

  // Mounts the overlay of BASE/lower (read-only) and BASE/disk/upper at
  // BASE/src; returns BASE/src. `redirects`: a directory of the tree may be
  // renamed in place (the overlay records where it came from), for a
  // checkout nothing edits offline; without, such a rename fails with EXDEV
  // (mv and cp then copy), and the layers stay plain files a warm
  // workspace's sync can edit.
  Result<std::string> MountTree(const std::string& base, bool redirects);

  // Unmounts BASE/src and BASE/disk, whichever are mounted. False if one
  // was still busy and is only detached (its files may still be in use: the
  // disk must not be mounted again).
  bool Unmount(const std::string& base);

  // Whether the checkout's disk stopped a build that failed: full now
  // (under 1 MiB or no inode left), or at least half used when the build's
  // output said ENOSPC (`saw_enospc`). The job then says limit=disk.
  static bool DiskFull(const std::string& base, bool saw_enospc);

  // The size of BASE/disk.img's file system, 0 if there is none.
  static int64_t DiskSize(const std::string& base);

 private:
  // The path of an empty file system of `bytes`, made on first use.
  Result<std::string> Template(int64_t bytes);

  std::string dir_;
  uint32_t uid_, gid_;
  Status overlay_;
  std::mutex mu_;  // templates; and one loop device set up at a time
  std::map<int64_t, std::string> templates_;
};

// Gives `dir` and every directory below it (symlinks not followed) to
// uid:gid with mode 0755, as a checkout's directories are.
void OwnDirs(const std::string& dir, uint32_t uid, uint32_t gid);

}  // namespace kiln::worker
