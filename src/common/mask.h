#pragma once
// Masking secret values in what a build prints, as CI systems do: each
// occurrence of a value becomes "***". For text that arrives in pieces (a
// job's log), a value cut between two pieces is still found: a piece's last
// bytes (fewer than the longest value) are held back until the next piece
// or Flush.

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace kiln {

class SecretMask {
 public:
  SecretMask() = default;
  // The values of `secrets` (name -> value); a value of several lines also
  // masks each of its lines of 4 bytes or more on its own. Empty values are
  // ignored.
  explicit SecretMask(const std::map<std::string, std::string>& secrets);

  bool empty() const { return needles_.empty(); }
  // The masked text of `piece` that is final; the rest waits.
  std::string Feed(std::string_view piece);
  // What is held back, masked.
  std::string Flush();
  // `text` masked in one go (not the pieces' state).
  std::string Apply(std::string_view text) const;

 private:
  // Masks matches that start before `limit` into `out`, copying the text
  // between them; returns where it stopped (after the last match, or 0).
  size_t Scan(std::string_view buf, size_t limit, std::string& out) const;

  std::vector<std::string> needles_;  // longest first
  size_t longest_ = 0;
  std::string held_;
};

}  // namespace kiln
