#pragma once
// Content digests: sha256 of the bytes plus their length. Users see them as
// "sha256:<64 hex>/<size>".

#include <openssl/evp.h>

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace kiln::cas {

struct Digest {
  std::string hash;  // 64 lowercase hex digits
  int64_t size = 0;

  // "sha256:<hex>/<size>".
  std::string ToString() const;
  // "<hex>/<size>", the compact form kept in hstore values and job specs.
  std::string Key() const { return hash + "/" + std::to_string(size); }
  bool empty() const { return hash.empty(); }
  auto operator<=>(const Digest&) const = default;
};

// True for exactly 64 lowercase hex digits.
bool IsHash(std::string_view s);
// Accepts "sha256:<hex>/<size>" and "<hex>/<size>".
Result<Digest> ParseDigest(std::string_view s);
// Checks a digest that came from outside: well-formed hash, size >= 0.
Status CheckDigest(const Digest& d, std::string_view what);

// Incremental sha256 (OpenSSL EVP).
class Hasher {
 public:
  Hasher();
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void Update(const void* data, size_t n);
  void Update(std::string_view s) { Update(s.data(), s.size()); }
  Digest Finish();

 private:
  EVP_MD_CTX* ctx_;
  int64_t size_ = 0;
};

Digest DigestOf(std::string_view bytes);
// Reads the file at `path` (following no symlink at the last component).
Result<Digest> DigestFile(const std::string& path);
// Hashes an open file descriptor from its start.
Result<Digest> DigestFd(int fd, const std::string& path_for_errors);

struct DigestHash {
  size_t operator()(const Digest& d) const noexcept;
};

}  // namespace kiln::cas
