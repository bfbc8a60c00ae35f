#pragma once
// Builds a Merkle tree from a directory on disk: the CLI's input trees and the
// worker's output trees.

#include <sys/stat.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cas/tree.h"

namespace kiln::cas {

// The user's kiln cache directory: $XDG_CACHE_HOME/kiln, else ~/.cache/kiln
// (else /tmp/kiln-cache-<uid>/kiln). It may not exist yet.
std::string UserCacheDir();

// Remembers file digests by (relative path, inode, size, mtime, ctime) so that
// hashing an unchanged tree again reads no file. One cache file per tree root.
class HashCache {
 public:
  // Missing or unreadable files give an empty cache (never an error).
  static HashCache Load(const std::string& file);
  std::optional<Digest> Lookup(const std::string& rel, const struct stat& st);
  void Record(const std::string& rel, const struct stat& st, const Digest& d);
  // Writes the entries recorded since Load (only those: the cache holds the
  // last walk), to a temporary file renamed over the old one.
  Status Save() const;
  size_t size() const { return seen_.size(); }

  // $XDG_CACHE_HOME/kiln/hashes/<sha256 of the absolute root> (else ~/.cache/...).
  static std::string DefaultFile(const std::string& abs_root);

 private:
  struct Item {
    uint64_t ino = 0;
    int64_t size = 0, mtime_ns = 0, ctime_ns = 0;
    std::string hash;
  };
  std::string file_;
  int64_t loaded_ns_ = 0;
  std::unordered_map<std::string, Item> old_, seen_;
};

struct WalkOptions {
  // Only these paths (files, symlinks or whole directories, relative to the
  // root); empty: the whole root. A listed path that does not exist is an
  // error naming it.
  std::vector<std::string> paths;
  // Shell globs (fnmatch) on relative paths; a pattern that matches a
  // directory applies to everything under it. With includes, only matching
  // files are taken.
  std::vector<std::string> include, exclude;
  // When the root is inside a git work tree, take git's list of files
  // (tracked plus untracked-but-not-ignored): .gitignore is honoured.
  bool use_git = false;
  HashCache* cache = nullptr;
  int threads = 0;          // hashing threads; 0: one per core
  int64_t max_files = 0;    // 0: no cap
  int64_t max_file_bytes = 0;
  // Asked after hashing about every file and symlink (`rel` relative to the
  // root; `e` carries the digest and executable bit, or the target): false
  // leaves it out of the tree (not counted, not uploaded, listed in
  // BuiltTree::left_out). A directory left empty by that is asked too
  // (e.kind == kDir): false leaves it out as well. One that is there only as
  // the parent of listed paths (git's list) is left out without asking, as
  // git would not list it without them. Unset: everything is kept.
  std::function<bool(const std::string& rel, const Entry& e)> keep;
};

struct BuiltTree {
  Digest root;
  std::unordered_map<Digest, Directory, DigestHash> nodes;  // every directory node
  std::unordered_map<Digest, std::string, DigestHash> files;  // a file on disk for each blob
  int64_t file_count = 0;   // file entries (a blob may appear more than once)
  int64_t file_bytes = 0;
  int64_t dir_count = 0;
  int64_t hashed_files = 0;  // of file_count: read and hashed (not answered by the cache)
  bool used_git = false;
  std::vector<std::string> left_out;  // files and symlinks `keep` refused, sorted
};

// The git branch checked out at `root` ("HEAD" when detached), or "" when
// it is not in a git work tree.
std::string GitBranch(const std::string& root);

// Symlinks must be relative and stay inside the tree; sockets, fifos and
// devices are refused; every error names the offending path.
Result<BuiltTree> BuildTree(const std::string& root, const WalkOptions& opts);

}  // namespace kiln::cas
