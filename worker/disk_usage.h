#pragma once
// What a directory takes on disk, for the worker's size caps (images, workspaces).

#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <system_error>

namespace kiln::worker {

// Allocated bytes of the regular files below dir (links not followed); an
// unreadable part counts as empty rather than failing the caller's eviction.
inline int64_t DiskBytes(const std::string& dir) {
  namespace fs = std::filesystem;
  int64_t n = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    struct stat s {};
    if (::lstat(it->path().c_str(), &s) == 0 && S_ISREG(s.st_mode)) n += s.st_blocks * 512;
  }
  return n;
}

}  // namespace kiln::worker
