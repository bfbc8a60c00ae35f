#pragma once
// A translation unit's dependencies: which files the preprocessor read (from
// the line markers of its output), recorded as a manifest, and checked again
// before a cached object is used.
//
// Manifest entries map an absolute, lexically normalized path to:
//   "f:<hex>/<size>"  a file in a writable place (the workspace, /tmp): its content
//   "i"               a file of the image, pinned by the image digest in the key: not checked
//   "d"               a directory some "x/.." stepped out of: must still be a directory,
//                     not a symlink (else the lexical path would name another file)
//   "-"               must not exist: a header there would shadow one found later
//                     in the include search

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace kiln::cc {

// Collects the file names of "# <line> "<file>" ..." markers in streamed
// preprocessor output; the compiler's pseudo files (<built-in>) are skipped.
class LineMarkerScanner {
 public:
  void Feed(std::string_view chunk);
  // Names in the order first seen, unescaped, as the compiler wrote them.
  const std::vector<std::string>& files() const { return files_; }

 private:
  void Line(std::string_view line);
  std::string partial_;  // the unfinished line, when it may be a marker
  bool in_line_ = false;  // inside a line known not to be a marker
  std::vector<std::string> files_;
  std::set<std::string> seen_;
};

// What `cc -H` wrote to standard error, split into the files the compile
// included (in order, each once, named as the compiler named them) and
// everything else: what the compile prints without -H. A trace line is
// dots, a space and the name of a file that `exists`; so is each file of the
// list after "Multiple include guards may be useful for:".
struct IncludeTrace {
  std::vector<std::string> files;
  std::string rest;
  // False when a line looked like a trace line but named no file (a name
  // with a newline in it, say): the list may then be incomplete.
  bool complete = true;
};
IncludeTrace SplitIncludeTrace(std::string_view err, const std::function<bool(const std::string&)>& exists);

// `path` made absolute against `cwd` and normalized lexically ("." and
// "x/.." removed). Each directory a ".." stepped out of is appended to
// `stepped_out` (see "d" entries).
std::string AbsolutePath(std::string_view path, std::string_view cwd, std::vector<std::string>* stepped_out = nullptr);

// True if `path` (normalized) lies in one of the `roots` (normalized).
bool Under(std::string_view path, const std::vector<std::string>& roots);

// The whole file at `path`: NotFound if it cannot be opened,
// ResourceExhausted past `max` bytes, Unavailable on a read error.
Result<std::string> ReadFileUpTo(const std::string& path, size_t max);

// Digests of files by path, each file read once per process.
class FileHashes {
 public:
  // "f:<hex>/<size>", or "missing", "a directory" when it is none. With a
  // `changed_since_ns` limit, a file modified at or after it is an error;
  // with it or `reread`, the file is read again.
  // With `code`, the file's code is named too (Code).
  Result<std::string> Get(const std::string& path, int64_t changed_since_ns = 0, bool reread = false,
                          bool code = false);
  // Whether a file read by Get names __DATE__, __TIME__ or __TIMESTAMP__.
  bool UsesTimeMacros(const std::string& path) const;
  // The file's code as read by the last Get, if that Get was asked for it
  // and found a file: "c:<hex>/<size>" of its CodeText, or its "f:" digest
  // when it has none. Empty otherwise.
  std::string Code(const std::string& path) const;

 private:
  std::unordered_map<std::string, std::string> memo_;
  std::unordered_map<std::string, std::string> code_;
  std::set<std::string> time_macros_;
};

struct RecordOptions {
  std::string cwd;
  std::vector<std::string> writable;  // normalized roots the build can write
  std::vector<std::string> search;    // include directories in search order (SearchOrder), as given
  int64_t changed_since_ns = 0;       // a dependency modified from then on is not recorded (0: no check)
  // Files hashed before the compile started (the source): recorded if their
  // content is still that, whatever their time (a build writes a source
  // just before compiling it, as configure does).
  std::map<std::string, std::string> known;
  bool time_macros_ok = false;        // SOURCE_DATE_EPOCH is set: __DATE__ and __TIME__ are fixed
  bool code = false;                  // each file's code is named too (FileHashes::Code)
};

// The manifest of a compile that read `files`. FailedPrecondition when a
// dependency cannot be read or changed during the compile, InvalidArgument
// when one uses __DATE__ or __TIME__ (nothing may be cached then).
Result<std::map<std::string, std::string>> RecordDeps(const std::vector<std::string>& files, const RecordOptions& o,
                                                      FileHashes& hashes);

struct Mismatch {
  std::string path;
  std::string expected;  // the manifest's value
  std::string actual;    // what is there now, in the same notation
};

// A manifest as one string, entries in order, each
// "<len>:<path><len>:<value>" (kept beside the hstore, so that a lookup moves
// one value, not hundreds). UnpackDeps refuses anything else (nullopt).
std::string PackDeps(const std::map<std::string, std::string>& deps);
std::optional<std::map<std::string, std::string>> UnpackDeps(std::string_view packed);

// Checks a manifest that came from outside (kiln-cc is untrusted): at most
// 100,000 entries, paths absolute, valid UTF-8, no NUL, at most 4096 bytes,
// values as above. InvalidArgument names the first bad entry.
Status CheckManifestEntries(const std::map<std::string, std::string>& deps);

// The first entry that no longer holds, or nullopt if all do.
std::optional<Mismatch> CheckManifest(const std::map<std::string, std::string>& deps, FileHashes& hashes);

}  // namespace kiln::cc
