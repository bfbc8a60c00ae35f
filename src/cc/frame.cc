#include "cc/frame.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kiln::cc {
namespace {

// Reads exactly n bytes; returns how many were read before the end of stream.
Result<size_t> ReadFull(int fd, char* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, p + got, n - got);
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      return Unavailable(std::string("read: ") + strerror(errno));
    }
    got += static_cast<size_t>(r);
  }
  return got;
}

Status SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t w = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Unavailable(std::string("write: ") + strerror(errno));
    }
    sent += static_cast<size_t>(w);
  }
  return Status::Ok();
}

}  // namespace

Status WriteFrame(int fd, const std::string& payload) {
  if (payload.size() > 0xffffffffu) return InvalidArgument("message too large");
  uint32_t n = static_cast<uint32_t>(payload.size());
  std::string head = {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                      static_cast<char>(n)};
  if (payload.size() <= 64 * 1024) return SendAll(fd, head + payload);  // one send for small messages
  KILN_RETURN_IF_ERROR(SendAll(fd, head));
  return SendAll(fd, payload);
}

Result<std::string> ReadFrame(int fd, size_t max_bytes) {
  unsigned char head[4];
  auto got = ReadFull(fd, reinterpret_cast<char*>(head), 4);
  if (!got.ok()) return got.status();
  if (*got == 0) return OutOfRange("end of stream");
  if (*got < 4) return Unavailable("connection closed in a message header");
  size_t n = (size_t{head[0]} << 24) | (size_t{head[1]} << 16) | (size_t{head[2]} << 8) | size_t{head[3]};
  if (n > max_bytes) return InvalidArgument("message of " + std::to_string(n) + " bytes, over the limit of " +
                                            std::to_string(max_bytes));
  std::string payload(n, '\0');
  auto body = ReadFull(fd, payload.data(), n);
  if (!body.ok()) return body.status();
  if (*body < n) return Unavailable("connection closed in a message");
  return payload;
}

}  // namespace kiln::cc
