#include "cas/digest.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <vector>

#include "common/text.h"

namespace kiln::cas {

std::string Digest::ToString() const { return "sha256:" + hash + "/" + std::to_string(size); }

bool IsHash(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Result<Digest> ParseDigest(std::string_view s) {
  std::string_view in = s;
  if (s.starts_with("sha256:")) s.remove_prefix(7);
  auto slash = s.find('/');
  Digest d;
  if (slash != std::string_view::npos) {
    d.hash = std::string(s.substr(0, slash));
    auto num = s.substr(slash + 1);
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), d.size);
    if (ec != std::errc() || p != num.data() + num.size() || num.empty() || d.size < 0)
      return InvalidArgument("bad digest '" + Printable(in, 100) +
                             "': the size after '/' must be a non-negative number");
  } else {
    return InvalidArgument("bad digest '" + Printable(in, 100) + "': expected sha256:<64 hex digits>/<size>");
  }
  if (!IsHash(d.hash))
    return InvalidArgument("bad digest '" + Printable(in, 100) + "': expected 64 lowercase hex digits after 'sha256:'");
  return d;
}

Status CheckDigest(const Digest& d, std::string_view what) {
  if (!IsHash(d.hash))
    return InvalidArgument(std::string(what) + ": digest hash '" + Printable(d.hash, 80) +
                           "' is not 64 lowercase hex digits");
  if (d.size < 0) return InvalidArgument(std::string(what) + ": digest size is negative");
  return Status::Ok();
}

Hasher::Hasher() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
Hasher::~Hasher() { EVP_MD_CTX_free(ctx_); }

void Hasher::Update(const void* data, size_t n) {
  EVP_DigestUpdate(ctx_, data, n);
  size_ += static_cast<int64_t>(n);
}

Digest Hasher::Finish() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_, md, &len);
  static const char* kHex = "0123456789abcdef";
  Digest d;
  d.hash.resize(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    d.hash[2 * i] = kHex[md[i] >> 4];
    d.hash[2 * i + 1] = kHex[md[i] & 15];
  }
  d.size = size_;
  EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr);
  size_ = 0;
  return d;
}

Digest DigestOf(std::string_view bytes) {
  Hasher h;
  h.Update(bytes);
  return h.Finish();
}

Result<Digest> DigestFd(int fd, const std::string& path) {
  thread_local std::vector<char> buf(256 << 10);
  Hasher h;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Unavailable("cannot read " + path + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    h.Update(buf.data(), static_cast<size_t>(n));
  }
  return h.Finish();
}

Result<Digest> DigestFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return Unavailable("cannot open " + path + ": " + std::strerror(errno));
  auto d = DigestFd(fd, path);
  ::close(fd);
  return d;
}

size_t DigestHash::operator()(const Digest& d) const noexcept {
  return std::hash<std::string>()(d.hash) ^ static_cast<size_t>(d.size);
}

}  // namespace kiln::cas
