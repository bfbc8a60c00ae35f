#include "common/mask.h"

#include <algorithm>
#include <set>

namespace kiln {

namespace {
constexpr std::string_view kMasked = "***";
constexpr size_t kMinLine = 4;
}  // namespace

SecretMask::SecretMask(const std::map<std::string, std::string>& secrets) {
  std::set<std::string> all;
  for (const auto& [name, value] : secrets) {
    if (value.empty()) continue;
    all.insert(value);
    if (value.find('\n') == std::string::npos) continue;
    size_t start = 0;
    while (start <= value.size()) {
      size_t end = value.find('\n', start);
      if (end == std::string::npos) end = value.size();
      std::string line = value.substr(start, end - start);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.size() >= kMinLine) all.insert(line);
      start = end + 1;
    }
  }
  needles_.assign(all.begin(), all.end());
  std::stable_sort(needles_.begin(), needles_.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  longest_ = needles_.empty() ? 0 : needles_.front().size();
}

size_t SecretMask::Scan(std::string_view buf, size_t limit, std::string& out) const {
  // next[k]: where needle k next occurs at or after i (npos: nowhere).
  std::vector<size_t> next(needles_.size());
  for (size_t k = 0; k < needles_.size(); ++k) next[k] = buf.find(needles_[k]);
  size_t i = 0;
  while (true) {
    size_t best = std::string_view::npos, len = 0;
    for (size_t k = 0; k < needles_.size(); ++k) {
      if (next[k] != std::string_view::npos && next[k] < i) next[k] = buf.find(needles_[k], i);
      // Longest first: at equal positions the longer value wins.
      if (next[k] < best) best = next[k], len = needles_[k].size();
    }
    if (best == std::string_view::npos || best >= limit) return i;
    out.append(buf.substr(i, best - i));
    out.append(kMasked);
    i = best + len;
  }
}

std::string SecretMask::Feed(std::string_view piece) {
  if (needles_.empty()) return std::string(piece);
  std::string buf = held_ + std::string(piece);
  // A value that starts before `limit` lies wholly in buf; one that starts
  // later may go on in the next piece.
  size_t limit = buf.size() >= longest_ ? buf.size() - longest_ + 1 : 0;
  std::string out;
  size_t i = Scan(buf, limit, out);
  size_t emit = std::max(i, limit);
  out.append(buf, i, emit - i);
  held_ = buf.substr(emit);
  return out;
}

std::string SecretMask::Flush() {
  std::string out = Apply(held_);
  held_.clear();
  return out;
}

std::string SecretMask::Apply(std::string_view text) const {
  if (needles_.empty()) return std::string(text);
  std::string out;
  size_t i = Scan(text, text.size(), out);
  out.append(text.substr(i));
  return out;
}

}  // namespace kiln
