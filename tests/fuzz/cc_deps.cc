// What kiln-cc reads of a compile and what it sends the worker: the line
// markers of preprocessed output (cc::LineMarkerScanner, fed in pieces),
// cc -H's include trace (cc::SplitIncludeTrace), packed manifests
// (cc::UnpackDeps, PackDeps), the manifest check the worker and the
// controller apply (cc::CheckManifestEntries), cc::AbsolutePath, and a
// file's code text (cc::CodeText), the include scan's names
// (cc::IncludeNames).
// kiln has no make-style dependency file parser: the .d file a compile
// writes is stored and replayed as bytes.

#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <set>

#include "cc/code.h"
#include "cc/deps.h"
#include "cc/scan.h"
#include "fuzz.h"

using namespace kiln;
using kiln::fuzz::Require;

namespace {

// A pure stand-in for "the file exists".
bool Exists(const std::string& name) { return !name.empty() && name.size() % 3 != 0 && name.find('\n') == std::string::npos; }

bool Normalized(const std::string& p) {
  if (p.empty() || p[0] != '/') return false;
  if (p == "/") return true;
  if (p.back() == '/') return false;
  return p.find("//") == std::string::npos && p.find("/./") == std::string::npos &&
         p.find("/../") == std::string::npos && !p.ends_with("/.") && !p.ends_with("/..");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  // Line markers: the same files however the output is cut into reads.
  cc::LineMarkerScanner whole;
  whole.Feed(in);
  {
    FuzzedDataProvider p(data, size);
    cc::LineMarkerScanner pieces;
    size_t at = 0;
    while (at < in.size()) {
      size_t n = p.remaining_bytes() > 0 ? p.ConsumeIntegralInRange<size_t>(1, 64) : in.size() - at;
      n = std::min(n, in.size() - at);
      pieces.Feed(in.substr(at, n));
      at += n;
    }
    Require(pieces.files() == whole.files(), "line markers depend on how the output was cut");
    std::set<std::string> unique(whole.files().begin(), whole.files().end());
    Require(unique.size() == whole.files().size(), "a file listed twice");
  }

  // A file's code: at most one byte longer (the mark of a missing final
  // newline), no more lines, and a comment line appended at the end (after
  // a newline, no backslash before it) changes nothing.
  if (auto code = cc::CodeText(in)) {
    Require(code->size() <= in.size() + 1, "the code text grew");
    const auto lines = [](std::string_view s) { return std::count(s.begin(), s.end(), '\n'); };
    Require(lines(*code) <= lines(in), "the code text has more lines");
    std::string_view last = *code;
    // (Blank lines, and lines that only hold a comment's mark, \x01, at the end.)
    while (!last.empty() && std::string_view("\n \t\x01", 4).find(last.back()) != std::string_view::npos)
      last.remove_suffix(1);
    if (!in.empty() && in.back() == '\n' && !last.ends_with('\\')) {
      auto more = cc::CodeText(std::string(in) + "/* kiln */\n");
      Require(!more || *more == *code, "a comment line at the end changed the code text");
    }
  }

  // The include scan's names: whole names, and an #include line appended
  // (after a newline that no splice joins) adds exactly its name, last.
  if (auto names = cc::IncludeNames(in); names.ok()) {
    for (const auto& n : *names)
      Require(!n.name.empty() && n.name.find('\n') == std::string::npos, "an include name is empty or has a newline");
    std::string_view head = in;
    if (!head.empty() && head.back() == '\n') {
      head.remove_suffix(1);
      while (!head.empty() && std::string_view(" \t\f\v").find(head.back()) != std::string_view::npos) head.remove_suffix(1);
      if (head.empty() || head.back() != '\\') {
        auto more = cc::IncludeNames(std::string(in) + "#include \"kiln_fuzz.h\"\n");
        Require(more.ok(), "an #include line appended made the scan refuse");
        auto want = *names;
        want.push_back({"kiln_fuzz.h"});
        Require(*more == want, "an #include line appended did not add its name, last");
      }
    }
  }

  cc::IncludeTrace t = cc::SplitIncludeTrace(in, Exists);
  std::set<std::string> seen;
  for (const auto& f : t.files) Require(Exists(f) && seen.insert(f).second, "a trace file twice or not existing");
  Require(t.rest.size() <= in.size(), "the rest grew");

  auto deps = cc::UnpackDeps(in);
  if (deps) {
    auto again = cc::UnpackDeps(cc::PackDeps(*deps));
    Require(again && *again == *deps, "PackDeps/UnpackDeps does not round-trip");
    fuzz::RequireOkOrClear(cc::CheckManifestEntries(*deps), "CheckManifestEntries");
  }

  // A manifest as kiln-cc sends it in a Store: any paths and values.
  {
    FuzzedDataProvider p(data, size);
    std::map<std::string, std::string> m;
    while (p.remaining_bytes() > 0 && m.size() < 16) m[p.ConsumeRandomLengthString(64)] = p.ConsumeRandomLengthString(80);
    Status s = cc::CheckManifestEntries(m);
    if (s.ok()) {
      for (const auto& [k, v] : m) Require(!k.empty() && k[0] == '/' && !v.empty(), "a bad manifest entry passed");
    } else {
      fuzz::RequireClearError(s, "CheckManifestEntries");
    }
  }

  {
    FuzzedDataProvider p(data, size);
    std::string cwd = p.ConsumeRandomLengthString(64);
    std::string path = p.ConsumeRemainingBytesAsString();
    std::vector<std::string> stepped;
    std::string abs = cc::AbsolutePath(path, cwd, &stepped);
    Require(Normalized(abs), "AbsolutePath returned a path that is not normalized");
    for (const auto& s : stepped) Require(Normalized(s), "AbsolutePath stepped out of a path that is not normalized");
    Require(cc::AbsolutePath(abs, "/") == abs, "AbsolutePath is not idempotent");
    Require(cc::Under(abs, {"/"}) && cc::Under(abs, {abs}), "Under");
  }
  return 0;
}
