#include "common/util.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <limits>

namespace kiln {

int64_t NowUnixMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  std::string t = Trim(text);
  size_t i = 0;
  while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
  if (i == 0 || i > 12) {
    return InvalidArgument("invalid duration \"" + std::string(text) + "\": expected e.g. 500ms, 5s, 2m, 1h");
  }
  int64_t n = std::stoll(t.substr(0, i));
  std::string unit = Trim(t.substr(i));
  int64_t unit_ms;
  if (unit.empty() || unit == "s") unit_ms = 1000;
  else if (unit == "ms") unit_ms = 1;
  else if (unit == "m" || unit == "min") unit_ms = 60'000;
  else if (unit == "h") unit_ms = 3'600'000;
  else if (unit == "d") unit_ms = 86'400'000;
  else return InvalidArgument("invalid duration \"" + std::string(text) + "\": unknown unit \"" + unit + "\" (use ms, s, m, h or d)");
  // 12 digits of days would overflow.
  if (n > std::numeric_limits<int64_t>::max() / unit_ms)
    return InvalidArgument("invalid duration \"" + std::string(text) + "\": too large");
  return std::chrono::milliseconds(n * unit_ms);
}

Result<int64_t> ParseBytes(std::string_view text) {
  std::string t = Trim(text);
  size_t i = 0;
  while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i]))) ++i;
  if (i == 0 || i > 15) return InvalidArgument("invalid size \"" + std::string(text) + "\": expected e.g. 4096, 64MiB, 10GiB");
  int64_t n = std::stoll(t.substr(0, i));
  std::string unit = Trim(t.substr(i));
  int shift;
  if (unit.empty() || unit == "B") shift = 0;
  else if (unit == "K" || unit == "KiB") shift = 10;
  else if (unit == "M" || unit == "MiB") shift = 20;
  else if (unit == "G" || unit == "GiB") shift = 30;
  else if (unit == "T" || unit == "TiB") shift = 40;
  else return InvalidArgument("invalid size \"" + std::string(text) + "\": unknown unit \"" + unit + "\" (use KiB, MiB, GiB or TiB)");
  if (n > (int64_t{1} << (62 - shift))) return InvalidArgument("invalid size \"" + std::string(text) + "\": too large");
  return n << shift;
}

Result<std::pair<std::string, std::string>> ParseKeyValue(std::string_view text) {
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return InvalidArgument("expected KEY=VALUE, got \"" + std::string(text) + "\"");
  }
  return std::make_pair(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = getrandom(raw.data() + got, bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  return HexEncode(raw);
}

std::string HexEncode(std::string_view raw) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

std::optional<std::string> HexDecode(std::string_view hex) {
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = digit(hex[i]), lo = digit(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

std::vector<std::string> SplitList(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) end = s.size();
    if (end > start) out.emplace_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

std::string FormatMs(int64_t ms) {
  char buf[64];
  if (ms < 1000) std::snprintf(buf, sizeof buf, "%lld ms", static_cast<long long>(ms));
  else if (ms < 120'000) std::snprintf(buf, sizeof buf, "%.1f s", ms / 1000.0);
  else std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(ms / 60'000),
                     static_cast<long long>((ms / 1000) % 60));
  return buf;
}

std::string FormatLimitBytes(int64_t n) {
  if (n > 0 && n % (int64_t{1} << 30) == 0) return std::to_string(n >> 30) + " GiB";
  if (n > 0 && n % (int64_t{1} << 20) == 0) return std::to_string(n >> 20) + " MiB";
  return std::to_string(n) + " bytes";
}

std::string FormatDuration(int64_t ms) {
  if (ms > 0 && ms % 86'400'000 == 0) return std::to_string(ms / 86'400'000) + "d";
  if (ms > 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms > 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms > 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

Result<std::string> ReadWholeFile(const std::string& path, bool nofollow) {
  auto fail = [&](const std::string& what, int err) -> Status {
    std::string m = what + " " + path + ": " + std::strerror(err);
    if (err == ENOENT || err == ENOTDIR) return NotFound(m);
    if (err == EACCES || err == EPERM) return Status(Code::kPermissionDenied, m);
    return Internal(m);
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0));
  if (fd < 0) return fail("cannot open", errno);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return fail("cannot read", err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }
void WriteAddressFile(const std::string& file, const std::string& address) {
  if (file.empty()) return;
  std::string tmp = file + ".tmp";
  std::ofstream(tmp) << address << "\n";
  std::rename(tmp.c_str(), file.c_str());
}

}  // namespace kiln
