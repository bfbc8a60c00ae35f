#pragma once
// Merkle directory nodes. A directory's digest is the sha256 of its canonical
// encoding (docs/architecture.md, "Canonical directory encoding"); a tree is
// named by its root node's digest.

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "cas/digest.h"
#include "common/status.h"

namespace kiln::cas {

enum class Kind { kFile, kDir, kSymlink };

struct Entry {
  std::string name;         // one path component
  Kind kind = Kind::kFile;
  Digest digest;            // file content or child directory node; empty for symlinks
  bool executable = false;  // files only
  std::string target;       // symlinks only: relative, stays inside the tree
  bool operator==(const Entry&) const = default;
};

struct Directory {
  std::vector<Entry> entries;  // sorted by name (bytewise), names unique
  bool operator==(const Directory&) const = default;
};

// Canonical bytes of a directory whose entries are sorted and unique.
std::string Encode(const Directory& d);
Digest DigestOf(const Directory& d);

// Strict UTF-8, as PostgreSQL checks text: no overlong forms, no surrogates.
bool ValidUtf8(std::string_view s);

// A single path component: not empty, not "." or "..", no '/', no NUL, at
// most 255 bytes.
Status CheckName(std::string_view name);
// A symlink target: relative, not empty, no NUL, at most 4095 bytes. Whether
// it stays inside the tree depends on where the link is: see CheckLinkInside.
Status CheckTarget(std::string_view target);
// True if `target`, followed from the directory `dir_path` ("" for the root,
// else "a/b"), cannot leave the tree, even through other links of the tree:
// its ".." parts all come first and climb no higher than the root.
bool LinkStaysInside(std::string_view dir_path, std::string_view target);

// Checks a directory as received (an upload): every name, kind field and
// digest, and the canonical order — names strictly increasing bytewise, so
// no duplicates. InvalidArgument names the directory (`path`, "" for the
// root) and the first bad or out-of-order entry.
Status CheckDirectory(const Directory& d, std::string_view path);
// Sorts the entries (of a directory being built), then CheckDirectory.
Status Normalize(Directory* d, std::string_view path);

// hstore form: name -> "f:<hex>/<size>" (file), "x:<hex>/<size>" (executable
// file), "d:<hex>/<size>" (directory), "l:<target>" (symlink).
std::string EntryValue(const Entry& e);
Result<Entry> EntryFromValue(std::string name, std::string_view value);

// Checks that `root`, and every directory entry of the nodes, state the byte
// size of the node they name (a digest is hash and size; lookups go by the
// hash alone). `nodes` are as stored, each digest with its node's true size;
// nodes not among them are not checked (Flatten says they are missing).
// InvalidArgument names the digest and both sizes.
Status CheckNodeSizes(const Digest& root, const std::vector<std::pair<Digest, Directory>>& nodes);

// Every entry of the tree under `root`, each with its path, parents before
// children. Checks what a receiver must not trust: every node present,
// symlinks inside the tree, at most `max_entries` entries and 512 levels.
struct PathEntry {
  std::string path;
  Entry entry;
};
Result<std::vector<PathEntry>> Flatten(const Digest& root,
                                       const std::unordered_map<std::string, const Directory*>& nodes_by_hash,
                                       int64_t max_entries);

// One difference between two trees. A directory added or removed is one
// change (its contents are not listed); a directory on both sides whose
// digest differs is descended into rather than reported.
struct Change {
  enum Kind { kAdded, kRemoved, kModified } kind = kModified;
  std::string path;
  std::optional<Entry> before, after;  // absent on the side that lacks it
};
// The changes between two directories at `path`, in name order; appends the
// names of subdirectories present on both sides with different digests
// (to be compared next) to `descend` as (path, before, after).
void DiffDirectories(std::string_view path, const Directory& before, const Directory& after,
                     std::vector<Change>* changes,
                     std::vector<std::tuple<std::string, Digest, Digest>>* descend);

// Joins a relative path and a name ("" + "a" = "a").
std::string JoinPath(std::string_view dir, std::string_view name);

// Checks a path a job declares as an output, or a working directory:
// relative, normalized ("a/b", no "." or ".." or empty components).
Status CheckRelativePath(std::string_view p, std::string_view what);

}  // namespace kiln::cas
