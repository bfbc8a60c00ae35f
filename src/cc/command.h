#pragma once
// What a compiler command line does, as far as the compile cache cares: is
// it one C or C++ translation unit compiled to one object file (cacheable),
// and if not, why not. Anything not fully understood is not cacheable: the
// wrapper then runs the compiler as it was asked to, and counts it.

#include <string>
#include <vector>

namespace kiln::cc {

enum class Language { kC, kCxx };

struct CompileCommand {
  bool cacheable = false;
  // When not cacheable: a short category ("linking", "unsupported option")
  // and the specifics ("-fprofile-generate").
  std::string reason;
  std::string detail;

  Language lang = Language::kC;
  std::string source;   // as given on the command line
  std::string output;   // the object file: -o's value, else the source's base name with .o
  std::string depfile;  // the dependency file -MD/-MMD writes, or empty
  std::vector<std::string> args;             // everything after the compiler name, verbatim
  std::vector<std::string> preprocess_args;  // the same minus -c, -o and the -M* file options, plus -E
  // Include search directories in search order (-iquote, -I, -isystem,
  // then -idirafter), as given; the compiler's own directories go between
  // -isystem and -idirafter (see SearchOrder).
  std::vector<std::string> quote_dirs, dirs, system_dirs, after_dirs;
};

// Classifies the arguments after the compiler's name.
CompileCommand ClassifyCompile(const std::vector<std::string>& args);

// Whether the object the arguments make records the compiler's options, so
// that an option added to the compile (-H) would change it: debug
// information records them (DW_AT_producer) unless -gno-record-gcc-switches,
// -frecord-gcc-switches writes them to a section, LTO keeps them in its
// bytecode. Any -g option other than -g0 counts as debug information.
bool ObjectRecordsOptions(const std::vector<std::string>& args);

// Every include directory in the order the compiler searches them for
// #include "..." (a superset of the order for <...>), with the compiler's
// own directories (builtin) between -isystem and -idirafter.
std::vector<std::string> SearchOrder(const CompileCommand& c, const std::vector<std::string>& builtin);

// Environment variables a compile reads (include paths, locale, the
// reproducible-build epoch): part of the cache key when set.
const std::vector<std::string>& CompilerEnvironment();
// Environment variables under which a compile is not cacheable, because
// they make it write files the cache does not know about.
const std::vector<std::string>& UncacheableEnvironment();

}  // namespace kiln::cc
