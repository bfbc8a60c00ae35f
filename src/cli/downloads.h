#pragma once
// Declared outputs are never inputs: what kiln downloads into a directory is
// remembered (path -> what it wrote), so that the next submit of a tree
// holding that directory leaves those files out of the input tree while
// their bytes are unchanged (docs/api.md, "Outputs are not inputs").
//
// The record of a directory lives in the user's cache directory, one file
// per directory's real path ($XDG_CACHE_HOME/kiln/downloads/<sha256>), never
// inside the tree (it would become an input). Losing or damaging it costs
// one action cache miss, never a wrong result: a path is left out only when
// the record says kiln wrote exactly these bytes there.

#include <map>
#include <string>
#include <vector>

#include "cas/tree.h"
#include "common/status.h"

namespace kiln::cli {

// A relative path as the user typed it, without leading "./" and trailing
// "/" ("./out/" -> "out"; "/" stays).
std::string CleanRelativePath(std::string p);

// The canonical absolute path of an existing `p`; empty when it cannot be
// resolved.
std::string RealPathOf(const std::string& p);

// Relative path -> what kiln's downloads left there:
//   "f:<hex>/<size>"  a file it wrote ("x:" when executable)
//   "l:<target>"      a symlink it made
//   "d"               a directory it created (nothing was there before)
//   "-"               it replaced something it had not written itself (a
//                     file shipped in the tree): never left out
using DownloadRecord = std::map<std::string, std::string>;

// One entry a download wrote, and whether something was at its path before.
struct Written {
  std::string path;  // relative to the download directory
  cas::Entry entry;  // kind, digest and executable bit, or target
  bool existed = false;
};

// Updates `rec` with what one download wrote. A file or symlink is kiln's
// when nothing was at its path or kiln's record already owned it (kiln
// overwriting its own earlier download); otherwise it was someone else's
// (e.g. shipped in the tree) and is marked "-". A directory is recorded as
// created only when nothing was there.
void NoteDownload(DownloadRecord& rec, const std::vector<Written>& written);

// The record's file for the directory at real path `real_dir`.
std::string DownloadRecordFile(const std::string& real_dir);
// The record of `real_dir`; empty when there is none or it cannot be read
// (never an error: without it nothing is left out).
DownloadRecord LoadDownloadRecord(const std::string& real_dir);
// Writes `rec` for `real_dir` (a temporary file renamed into place), first
// dropping entries whose path no longer exists. Fails with the file's name.
Status SaveDownloadRecord(const std::string& real_dir, DownloadRecord rec);

// Records that kiln created `dirs` (relative to `real_dir`, which existed)
// to download into the last of them.
Status NoteCreatedDirectories(const std::string& real_dir, const std::vector<std::string>& dirs);

// What a submit may leave out: the paths, relative to the input tree's
// root, that this command's downloads write (each declared output, and the
// outputs directory when it lies inside the tree), and the records of what
// kiln wrote there, re-rooted at the tree's root.
struct DownloadedOutputs {
  std::vector<std::string> areas;
  DownloadRecord written;
};

// Whether the input entry at `rel` (a file or symlink after hashing, or a
// directory left empty by what this left out) is a downloaded output to
// leave out: it lies in one of the areas and the record says kiln wrote
// exactly it there (same bytes and executable bit, or the same target; for
// a directory: kiln created it, on the way to an area or inside one).
bool LeaveOut(const DownloadedOutputs& d, const std::string& rel, const cas::Entry& e);

// Builds DownloadedOutputs for a submit of `input_dir` declaring `outputs`
// (relative to the tree's root), downloading into `outputs_dir` (empty: the
// input directory), from the records in the user's cache.
DownloadedOutputs FindDownloadedOutputs(const std::string& input_dir, const std::vector<std::string>& outputs,
                                        const std::string& outputs_dir);

}  // namespace kiln::cli
