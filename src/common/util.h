#pragma once
// Small helpers shared by every component: time, durations, strings, ids.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace kiln {

// Milliseconds since the unix epoch, wall clock.
int64_t NowUnixMs();

// Parses "250ms", "5s", "2m", "1h" or a bare number of seconds.
// Returns InvalidArgument naming the text on anything else.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);
// The inverse of ParseDuration for settings, exact: "30d", "12h", "90s", "250ms".
std::string FormatDuration(int64_t ms);
// "4096", "64KiB", "10GiB" (also K, M, G, T): a number of bytes.
Result<int64_t> ParseBytes(std::string_view text);
// The inverse for limits: "2 GiB", "32 MiB", else "12345 bytes" (exact, never rounded).
std::string FormatLimitBytes(int64_t n);

// Parses "key=value" into its parts; InvalidArgument if there is no '=' or the key is empty.
Result<std::pair<std::string, std::string>> ParseKeyValue(std::string_view text);

// Lower-case hex of raw bytes, and back (nullopt for an odd length or a
// character that is not a hex digit).
std::string HexEncode(std::string_view raw);
std::optional<std::string> HexDecode(std::string_view hex);

// 16 random hex characters from the OS's CSPRNG (for worker and controller ids).
std::string RandomHex(size_t bytes = 8);

std::string Trim(std::string_view s);

// The non-empty pieces of `s` between `sep` characters ("a,,b" -> a, b).
std::vector<std::string> SplitList(std::string_view s, char sep = ',');

// The whole file (without following a final symlink if nofollow);
// NotFound, PermissionDenied or Internal naming the path and errno.
Result<std::string> ReadWholeFile(const std::string& path, bool nofollow = false);

// "1.2 s", "35 ms": for humans.
std::string FormatMs(int64_t ms);

// "<what>: <strerror(errno)>", for a failed system call's message.
std::string Errno(const std::string& what);
// Writes "address\n" to `file` through a temporary and a rename (a reader
// never sees half of it), for tests and scripts that let a daemon pick its
// port; does nothing when file is empty.
void WriteAddressFile(const std::string& file, const std::string& address);

}  // namespace kiln
