#pragma once
// Writing a whole buffer to a file descriptor, retrying short writes and
// EINTR. Header-only: the static kiln-cc uses it too.

#include <unistd.h>

#include <cerrno>
#include <string_view>

namespace kiln {

// True if every byte was written.
inline bool WriteAll(int fd, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t w = ::write(fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    done += static_cast<size_t>(w);
  }
  return true;
}

}  // namespace kiln
