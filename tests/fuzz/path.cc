// Names and paths from the network: file names and symlink targets of trees
// (cas::CheckName, CheckTarget, LinkStaysInside), declared outputs and
// working directories (cas::CheckRelativePath), strict UTF-8
// (cas::ValidUtf8), and the catalog's names and text (common/text.h:
// CheckName, CheckText, Printable).

#include <fuzzer/FuzzedDataProvider.h>

#include <vector>

#include "cas/tree.h"
#include "common/text.h"
#include "fuzz.h"

using namespace kiln;
using kiln::fuzz::Require;

namespace {

// Strict UTF-8 decoded the long way: code points up to U+10FFFF, shortest
// form only, no surrogates.
bool ReferenceUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 ? 3 : -1;
    if (n < 0 || i + static_cast<size_t>(n) >= s.size()) return false;
    uint32_t cp = n == 0 ? c : n == 1 ? c & 0x1f : n == 2 ? c & 0x0f : c & 0x07;
    for (int k = 1; k <= n; ++k) {
      auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xc0) != 0x80) return false;
      cp = cp << 6 | (b & 0x3f);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += static_cast<size_t>(n) + 1;
  }
  return true;
}

std::vector<std::string_view> Split(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find('/', i);
    if (j == std::string_view::npos) j = s.size();
    parts.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return parts;
}

// Whether `target`, resolved lexically from `dir` (a path of the tree),
// climbs above the tree's root.
bool ClimbsOut(std::string_view dir, std::string_view target) {
  long depth = 0;
  if (!dir.empty())
    for (auto part : Split(dir)) depth += part.empty() || part == "." ? 0 : part == ".." ? -1 : 1;
  for (auto part : Split(target)) {
    if (part == "..") {
      if (--depth < 0) return true;
    } else if (!part.empty() && part != ".") {
      ++depth;
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  const std::string a = p.ConsumeRandomLengthString(300);
  const std::string b = p.ConsumeRemainingBytesAsString();

  Require(cas::ValidUtf8(b) == ReferenceUtf8(b), "ValidUtf8 disagrees with a reference decoder");

  Status name = cas::CheckName(b);
  if (name.ok()) {
    Require(!b.empty() && b.size() <= 255 && b != "." && b != ".." && b.find('/') == std::string::npos &&
                b.find('\0') == std::string::npos && cas::ValidUtf8(b),
            "CheckName accepted a bad name");
  } else {
    fuzz::RequireClearError(name, "CheckName");
  }

  Status target = cas::CheckTarget(b);
  if (target.ok()) Require(!b.empty() && b[0] != '/' && b.find('\0') == std::string::npos, "CheckTarget accepted");
  else fuzz::RequireClearError(target, "CheckTarget");

  // The link's own directory is a path of the tree, checked before.
  if (a.empty() || cas::CheckRelativePath(a, "dir").ok()) {
    if (cas::LinkStaysInside(a, b)) Require(!ClimbsOut(a, b), "LinkStaysInside let a link climb out of the tree");
  }

  Status rel = cas::CheckRelativePath(b, "output");
  if (rel.ok()) {
    for (auto part : Split(b)) Require(cas::CheckName(part).ok(), "CheckRelativePath accepted a bad component");
  } else {
    fuzz::RequireClearError(rel, "CheckRelativePath");
  }

  Status catalog = CheckName("project", b);
  if (catalog.ok()) Require(!b.empty() && b.size() <= 63 && !HasControl(b), "CheckName(project) accepted");
  else fuzz::RequireClearError(catalog, "CheckName(project)");

  Status text = CheckText(b, "field", a.size());
  if (text.ok()) Require(b.size() <= a.size() && !HasControl(b), "CheckText accepted");
  else fuzz::RequireClearError(text, "CheckText");

  std::string shown = Printable(b, a.size());
  Require(!HasControl(shown), "Printable left a control character");
  Require(shown.size() <= 4 * a.size() + 3, "Printable output too long");
  return 0;
}
