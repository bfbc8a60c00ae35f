#include "cc/command.h"

#include <set>
#include <string_view>

namespace kiln::cc {
namespace {

bool StartsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

// The extension of a file name ("c" for "dir/x.c"), or "".
std::string Extension(std::string_view path) {
  auto slash = path.rfind('/');
  auto name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  auto dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0) return "";
  return std::string(name.substr(dot + 1));
}

std::string WithoutExtension(std::string_view path) {
  auto slash = path.rfind('/');
  auto dot = path.rfind('.');
  if (dot == std::string_view::npos || (slash != std::string_view::npos && dot < slash) || dot == slash + 1)
    return std::string(path);
  return std::string(path.substr(0, dot));
}

std::string BaseName(std::string_view path) {
  auto slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

// Options that take a value, as the next argument or joined ("-Idir").
const std::set<std::string_view> kJoinedOrSeparate = {
    "-I", "-D", "-U", "-L", "-l", "-iquote", "-isystem", "-idirafter", "-iprefix", "-iwithprefix",
    "-iwithprefixbefore", "-isysroot", "-imultilib", "-imultiarch", "-MF", "-MT", "-MQ", "-o", "-x"};
// Options whose value is always the next argument.
const std::set<std::string_view> kSeparate = {"-include", "-imacros", "-Xassembler", "-Xlinker", "--param",
                                               "--sysroot", "-T", "-u", "-z", "-e"};
// Options taking no value that change nothing the cache must understand
// (they are part of the key like every argument).
const std::set<std::string_view> kPlain = {
    "-ansi", "-pedantic", "-pedantic-errors", "-w", "-pthread", "-pipe", "-shared", "-static", "-rdynamic",
    "-s", "-nostdinc", "-nostdinc++", "-nostdlib", "-nodefaultlibs", "-nostartfiles", "-undef", "-trigraphs",
    "-C", "-CC", "-P", "-H", "-no-pie", "-pie", "-static-pie", "-static-libgcc", "-static-libstdc++",
    "-symbolic", "-MD", "-MMD", "-MP", "-c"};
// -f options that make the compile read or write files the cache does not
// know of, or whose output depends on more than the key.
const char* const kUncacheableF[] = {
    "-fprofile-", "-fauto-profile", "-fbranch-probabilities", "-ftest-coverage", "-fcoverage-", "-fplugin",
    "-fdump-", "-fcallgraph-info", "-fstack-usage", "-fcompare-debug", "-fdiagnostics-format=json-file",
    "-fdiagnostics-format=sarif-file", "-fsave-optimization-record", "-fopt-info", "-fcreate-profile"};

struct Parser {
  const std::vector<std::string>& args;
  CompileCommand c;
  std::vector<bool> keep_for_cpp;  // per argument: passed to the preprocessor run
  std::vector<std::string> sources;
  std::vector<std::string> objects;  // linker inputs
  std::string lang_override;       // -x value in force ("" or "none": by extension)
  std::string mf;                  // -MF value
  bool output_given = false, md = false, compile = false;
  std::string mode;                // "-E", "-S", "-M", "-fsyntax-only"
  bool refused = false;

  explicit Parser(const std::vector<std::string>& a) : args(a), keep_for_cpp(a.size(), true) { c.args = a; }

  void Refuse(std::string reason, std::string detail) {
    if (refused) return;  // the first reason is the one reported
    refused = true;
    c.reason = std::move(reason);
    c.detail = std::move(detail);
  }

  void Input(const std::string& file) {
    std::string lang = lang_override;
    if (lang.empty() || lang == "none") {
      std::string ext = Extension(file);
      if (ext == "c") lang = "c";
      else if (ext == "cc" || ext == "cp" || ext == "cxx" || ext == "cpp" || ext == "CPP" || ext == "c++" ||
               ext == "C")
        lang = "c++";
      else if (ext == "i" || ext == "ii") return Refuse("already preprocessed", file);
      else if (ext == "s" || ext == "S" || ext == "sx") return Refuse("assembler source", file);
      else if (ext == "h" || ext == "hh" || ext == "hpp" || ext == "hxx" || ext == "H")
        return Refuse("precompiled header", file);
      else if (ext == "o" || ext == "a" || ext == "so" || ext == "lo") {
        objects.push_back(file);  // refused after the loop: a link line is "linking"
        return;
      }
      else return Refuse("not C or C++", file);
    }
    if (lang != "c" && lang != "c++") return Refuse("not C or C++", "-x " + lang);
    c.lang = lang == "c" ? Language::kC : Language::kCxx;
    sources.push_back(file);
  }

  void Option(size_t& i) {
    const std::string& a = args[i];
    // The value of an option given as "-Xvalue" or "-X value".
    auto value = [&](std::string_view name, std::string& out) -> bool {
      if (a.size() > name.size()) {
        out = a.substr(name.size());
        return true;
      }
      if (i + 1 >= args.size()) {
        Refuse("incomplete command", "option " + a + " needs a value");
        return false;
      }
      out = args[++i];
      return true;
    };
    auto drop_for_cpp = [&](size_t from) {
      for (size_t k = from; k <= i; ++k) keep_for_cpp[k] = false;
    };
    const size_t at = i;
    std::string v;
    if (a == "-c") {
      compile = true;
      drop_for_cpp(at);
    } else if (a == "-E" || a == "-S" || a == "-M" || a == "-MM" || a == "-fsyntax-only") {
      mode = a;
    } else if (a == "-MD" || a == "-MMD") {
      md = true;
      drop_for_cpp(at);
    } else if (a == "-MP") {
      drop_for_cpp(at);
    } else if (StartsWith(a, "-MF") || StartsWith(a, "-MT") || StartsWith(a, "-MQ")) {
      if (!value(a.substr(0, 3), v)) return;
      if (StartsWith(a, "-MF") && v.empty()) return Refuse("empty file name", "-MF \"\"");  // gcc refuses it too
      if (StartsWith(a, "-MF")) mf = v;
      drop_for_cpp(at);
    } else if (StartsWith(a, "-M")) {
      Refuse("unsupported option", a);
    } else if (StartsWith(a, "-o")) {
      if (!value("-o", v)) return;
      if (v.empty()) return Refuse("empty file name", "-o \"\"");  // gcc refuses it too
      c.output = v;
      output_given = true;
      drop_for_cpp(at);
    } else if (StartsWith(a, "-x")) {
      if (!value("-x", v)) return;
      lang_override = v;
    } else if (a == "-I-") {
      Refuse("unsupported option", a);
    } else if (StartsWith(a, "-iquote") || StartsWith(a, "-isystem") || StartsWith(a, "-idirafter") ||
               StartsWith(a, "-I")) {
      std::string_view name = StartsWith(a, "-iquote")     ? "-iquote"
                              : StartsWith(a, "-isystem")  ? "-isystem"
                              : StartsWith(a, "-idirafter") ? "-idirafter"
                                                            : "-I";
      if (!value(name, v)) return;
      (name == "-iquote"     ? c.quote_dirs
       : name == "-isystem"  ? c.system_dirs
       : name == "-idirafter" ? c.after_dirs
                              : c.dirs)
          .push_back(v);
    } else if (StartsWith(a, "-Wp,") || a == "-Xpreprocessor") {
      Refuse("preprocessor options passed through", a);
    } else if (StartsWith(a, "-W")) {
      // warnings, -Wa, (assembler) and -Wl, (linker): plain arguments
    } else if (StartsWith(a, "-f")) {
      for (const char* p : kUncacheableF)
        if (StartsWith(a, p)) return Refuse("unsupported option", a);
    } else if (a == "-march=native" || a == "-mtune=native" || a == "-mcpu=native") {
      Refuse("tuned to the build host's CPU", a);
    } else if (StartsWith(a, "-m") || StartsWith(a, "-O") || StartsWith(a, "-std=") || StartsWith(a, "--std=")) {
      // machine, optimization and language options
    } else if (StartsWith(a, "-g")) {
      if (a == "-gsplit-dwarf") Refuse("unsupported option", a);
    } else if (StartsWith(a, "--sysroot=") || StartsWith(a, "--param=")) {
    } else if (StartsWith(a, "-save-temps")) {
      Refuse("unsupported option", a);
    } else if (a == "-v" || a == "-###" || a == "-time" || StartsWith(a, "-time=")) {
      Refuse("verbose compiler output", a);
    } else if (StartsWith(a, "-print-") || StartsWith(a, "-dump") || a == "--help" || StartsWith(a, "--help=") ||
               a == "--version" || a == "--target-help") {
      Refuse("information query", a);
    } else if (StartsWith(a, "-specs") || StartsWith(a, "-B") || a == "-wrapper" || a == "-no-canonical-prefixes") {
      Refuse("changes which compiler programs run", a);
    } else if (StartsWith(a, "-d")) {
      Refuse("unsupported option", a);
    } else if (kPlain.count(a)) {
    } else if (kSeparate.count(a)) {
      if (i + 1 >= args.size()) return Refuse("incomplete command", "option " + a + " needs a value");
      ++i;
    } else {
      for (std::string_view name : kJoinedOrSeparate) {
        if (StartsWith(a, name)) {
          value(name, v);
          return;
        }
      }
      Refuse("unsupported option", a);
    }
  }

  CompileCommand Run() {
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (!a.empty() && a[0] == '@') Refuse("response file", a);
      else if (a == "-") Refuse("reads standard input", a);
      else if (a.empty()) Refuse("empty argument", "\"\"");  // names no file the compile could read
      else if (a.empty() || a[0] != '-') Input(a);
      else Option(i);
    }
    if (!mode.empty()) {
      Refuse(mode == "-E"   ? "preprocessing only"
             : mode == "-S" ? "assembly output"
             : mode == "-fsyntax-only" ? "syntax check only"
                                       : "dependency listing only",
             mode);
    }
    if (!compile) Refuse(sources.empty() && objects.empty() ? "no source file" : "linking", "no -c");
    if (!objects.empty()) Refuse("linker input", objects[0]);
    if (sources.empty()) Refuse("no source file", "");
    if (sources.size() > 1) Refuse("several source files", sources[0] + " " + sources[1]);
    if (output_given && c.output == "-") Refuse("writes to standard output", "-o -");
    c.source = !sources.empty() ? sources[0] : !objects.empty() ? objects[0] : "";  // for messages
    if (refused) return std::move(c);
    if (!output_given) c.output = WithoutExtension(BaseName(c.source)) + ".o";
    if (md) c.depfile = !mf.empty() ? mf : output_given ? WithoutExtension(c.output) + ".d"
                                                        : WithoutExtension(BaseName(c.source)) + ".d";
    for (size_t k = 0; k < args.size(); ++k)
      if (keep_for_cpp[k]) c.preprocess_args.push_back(args[k]);
    c.preprocess_args.push_back("-E");
    c.cacheable = true;
    return std::move(c);
  }
};

}  // namespace

CompileCommand ClassifyCompile(const std::vector<std::string>& args) { return Parser(args).Run(); }

bool ObjectRecordsOptions(const std::vector<std::string>& args) {
  bool debug = false, record_in_debug = true, record_section = false, lto = false;
  for (const auto& a : args) {
    if (a == "-g0") debug = false;
    else if (a == "-gno-record-gcc-switches") record_in_debug = false;
    else if (a == "-grecord-gcc-switches") record_in_debug = true;
    else if (a.rfind("-g", 0) == 0) debug = true;
    else if (a == "-frecord-gcc-switches") record_section = true;
    else if (a == "-fno-record-gcc-switches") record_section = false;
    else if (a == "-fno-lto") lto = false;
    else if (a.rfind("-flto", 0) == 0) lto = true;
  }
  return (debug && record_in_debug) || record_section || lto;
}

std::vector<std::string> SearchOrder(const CompileCommand& c, const std::vector<std::string>& builtin) {
  std::vector<std::string> out;
  for (const auto* list : {&c.quote_dirs, &c.dirs, &c.system_dirs, &builtin, &c.after_dirs})
    out.insert(out.end(), list->begin(), list->end());
  return out;
}

const std::vector<std::string>& CompilerEnvironment() {
  static const std::vector<std::string> v = {
      "CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "OBJC_INCLUDE_PATH", "GCC_EXEC_PREFIX", "COMPILER_PATH",
      "SOURCE_DATE_EPOCH", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "GCC_COLORS", "GCC_URLS"};
  return v;
}

const std::vector<std::string>& UncacheableEnvironment() {
  // CCC_OVERRIDE_OPTIONS edits Clang's command line (it can add -g, say).
  static const std::vector<std::string> v = {"DEPENDENCIES_OUTPUT", "SUNPRO_DEPENDENCIES", "GCC_COMPARE_DEBUG",
                                             "CCC_OVERRIDE_OPTIONS"};
  return v;
}

}  // namespace kiln::cc
