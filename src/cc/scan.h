#pragma once
// Which files a compile may read through the preprocessor, found without
// running it (distcc's pump mode works so too): the file names of every
// #include, #include_next, #import and __has_include in the source and in
// every file found so, in every branch of #if, each looked up in the
// directory of the file that names it and in every include directory.
// That is more files than the compile reads, never fewer, and for every
// name the compile looks up, every file that answers it in any of those
// directories: a compile elsewhere given these files (and the same image)
// finds each header where this host's compile would.
//
// The scan refuses (FailedPrecondition, saying why; the caller then runs
// the preprocessor instead) when it cannot be sure to see every name: an
// #include of a macro (`#include HEADER_H`), __has_include of a macro,
// #embed, #pragma GCC dependency, a raw string (R"...", which may hide a
// comment's opening), a trigraph, a carriage return, an unterminated
// comment, a ".." out of a symbolic link, or more than 20,000 files.

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kiln::cc {

struct IncludeName {
  std::string name;  // as written between the quotes or angle brackets
  bool operator==(const IncludeName&) const = default;
};

// The names one file's text includes or asks about (__has_include), in
// order of appearance, whatever the conditionals around them.
Result<std::vector<IncludeName>> IncludeNames(std::string_view text);

struct IncludeScan {
  // Every file found, absolute and lexically normalized, the source first.
  std::vector<std::string> files;
  // Directories a ".." in a name stepped out of: the compile opens the name
  // as written, so they must exist wherever it runs.
  std::vector<std::string> dirs;
};

// Scans `source` and what it includes (and <stdc-predef.h>, which GCC
// includes before the source), searching `search` (the include
// directories, SearchOrder's list, relative ones against `cwd`).
Result<IncludeScan> ScanIncludes(const std::string& source, const std::vector<std::string>& search,
                                 std::string_view cwd);

}  // namespace kiln::cc
