#include "cc/reason.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <map>

namespace kiln::cc {
namespace {

// "removed -O2, added -O0": a multiset difference, in argument order.
std::string ArgsDiff(const std::vector<std::string>& before, const std::vector<std::string>& after) {
  std::map<std::string, int> count;
  for (const auto& a : after) ++count[a];
  std::vector<std::string> removed, added;
  for (const auto& b : before) {
    if (count[b] > 0) --count[b];
    else removed.push_back(b);
  }
  count.clear();
  for (const auto& b : before) ++count[b];
  for (const auto& a : after) {
    if (count[a] > 0) --count[a];
    else added.push_back(a);
  }
  auto join = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
    return s;
  };
  std::string out;
  if (!removed.empty()) out += "removed " + join(removed);
  if (!added.empty()) out += std::string(out.empty() ? "" : ", ") + "added " + join(added);
  return out.empty() ? "the same arguments in another order" : out;
}

std::string EnvDiff(const std::map<std::string, std::string>& before, const std::map<std::string, std::string>& after) {
  std::string out;
  auto add = [&](const std::string& k, const std::string* b, const std::string* a) {
    out += (out.empty() ? "" : ", ") + k + " " + (b ? "\"" + *b + "\"" : "unset") + " -> " +
           (a ? "\"" + *a + "\"" : "unset");
  };
  for (const auto& [k, v] : before) {
    auto it = after.find(k);
    if (it == after.end()) add(k, &v, nullptr);
    else if (it->second != v) add(k, &v, &it->second);
  }
  for (const auto& [k, v] : after)
    if (!before.count(k)) add(k, nullptr, &v);
  return out;
}

std::string Describe(const std::string& value) {
  if (value == "-") return "absent";
  if (value == "d") return "a directory";
  if (value == "missing") return "missing";
  if (value.rfind("f:", 0) == 0) return ShortDigest(value);
  return value;
}

// How many things differ: each argument added or removed, each variable,
// compiler, image, working directory, source.
size_t Distance(const KeyParts& now, const KeyParts& was) {
  std::map<std::string, int> count;
  for (const auto& a : now.args) ++count[a];
  for (const auto& a : was.args) --count[a];
  size_t d = 0;
  for (const auto& [_, n] : count) d += static_cast<size_t>(n < 0 ? -n : n);
  for (const auto& [k, v] : now.env) {
    auto it = was.env.find(k);
    d += it == was.env.end() || it->second != v;
  }
  for (const auto& [k, _] : was.env) d += !now.env.count(k);
  d += (now.compiler != was.compiler) + (now.image != was.image) + (now.cwd != was.cwd) +
       (now.source_digest != was.source_digest);
  return d;
}

}  // namespace

std::string ShortDigest(const std::string& value) {
  std::string v = value.rfind("f:", 0) == 0 ? value.substr(2) : value;
  return "sha256:" + v.substr(0, std::min<size_t>(12, v.find('/'))) + "..";
}

Miss DescribeMiss(const KeyParts& now, const std::optional<Mismatch>& mismatch, const std::vector<KeyParts>& earlier) {
  if (mismatch) {
    const Mismatch& m = *mismatch;
    if (m.expected == "-")
      return {"header added", m.path + " now exists: it comes before the header found earlier in the include search"};
    if (m.expected == "d")
      return {"include path changed", m.path + " is no longer a directory (" + Describe(m.actual) + ")"};
    if (m.actual == "missing") return {"header changed", "header " + m.path + " was removed"};
    return {"header changed", "header " + m.path + " changed from " + Describe(m.expected) + " to " + Describe(m.actual)};
  }
  if (earlier.empty()) return {"new source", "no earlier compile of this source in the cache"};
  const KeyParts* previous = &earlier[0];
  size_t best = SIZE_MAX;
  for (const auto& e : earlier) {
    size_t d = Distance(now, e);
    if (d < best) best = d, previous = &e;
  }
  const KeyParts& was = *previous;
  std::vector<std::pair<std::string, std::string>> found;  // reason, detail
  if (was.compiler != now.compiler)
    found.push_back({"compiler changed", "compiler " + ShortDigest(was.compiler) + " -> " + ShortDigest(now.compiler)});
  if (was.image != now.image) found.push_back({"image changed", "image " + was.image + " -> " + now.image});
  if (was.args != now.args) found.push_back({"arguments changed", "arguments: " + ArgsDiff(was.args, now.args)});
  if (was.env != now.env) found.push_back({"environment changed", "environment: " + EnvDiff(was.env, now.env)});
  if (was.cwd != now.cwd) found.push_back({"working directory changed", "working directory " + was.cwd + " -> " + now.cwd});
  if (was.source_digest != now.source_digest)
    found.push_back({"source changed", "source " + ShortDigest(was.source_digest) + " -> " +
                                           ShortDigest(now.source_digest)});
  if (found.empty()) return {"new source", "no earlier compile with this key"};
  Miss m{found[0].first, ""};
  for (const auto& [_, d] : found) m.detail += (m.detail.empty() ? "" : "; ") + d;
  return m;
}

}  // namespace kiln::cc
