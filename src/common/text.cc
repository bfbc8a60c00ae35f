#include "common/text.h"

namespace kiln {

namespace {

bool IsControl(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

}  // namespace

bool HasControl(std::string_view s) {
  for (char c : s)
    if (IsControl(c)) return true;
  return false;
}

std::string Printable(std::string_view s, size_t max) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : s.substr(0, max)) {
    if (IsControl(c)) {
      auto b = static_cast<unsigned char>(c);
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 15];
    } else {
      out += c;
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

Status CheckText(std::string_view s, std::string_view field, size_t max_bytes) {
  if (s.size() > max_bytes) {
    return InvalidArgument(std::string(field) + " is too long: " + std::to_string(s.size()) + " bytes, at most " +
                           std::to_string(max_bytes));
  }
  for (size_t i = 0; i < s.size(); ++i) {
    if (!IsControl(s[i])) continue;
    std::string what = s[i] == '\0' ? "a NUL byte" : "the control character " + Printable(s.substr(i, 1));
    return InvalidArgument(std::string(field) + " \"" + Printable(s, 80) + "\" contains " + what +
                           ": only printable characters are allowed (no NUL, newline, tab or other control character)");
  }
  return Status::Ok();
}

Status CheckName(std::string_view kind, std::string_view name) {
  bool ok = !name.empty() && name.size() <= 63 && name[0] != '.' && name[0] != '_' && name[0] != '-';
  for (char c : name) ok = ok && IsNameChar(c);
  if (ok) return Status::Ok();
  return InvalidArgument("invalid " + std::string(kind) + " name \"" + Printable(name, 80) +
                         "\": use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit");
}

}  // namespace kiln
