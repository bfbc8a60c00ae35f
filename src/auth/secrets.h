#pragma once
// Sealing jobs' secret environment values at rest (docs/architecture.md,
// "Secrets"): AES-256-GCM under the farm's secrets key, a file beside the
// CA's key (tls_dir/secrets.key) that every controller of the farm holds.
// PostgreSQL only ever stores the sealed bytes.

#include <map>
#include <string>
#include <string_view>

#include "common/status.h"

namespace kiln::auth {

class SecretBox {
 public:
  // Reads a key file: 64 hex digits (32 bytes), optionally a newline.
  static Result<SecretBox> Load(const std::string& path);
  // `key`: 32 raw bytes.
  static Result<SecretBox> FromKey(std::string key);

  // name -> value, sealed: "ks1", the key's id (4 bytes), a random nonce,
  // the ciphertext and its tag. Values never appear in it in clear.
  Result<std::string> Seal(const std::map<std::string, std::string>& values) const;
  // The values; InvalidArgument if `sealed` was made under another key or
  // was changed (the tag does not verify).
  Result<std::map<std::string, std::string>> Open(std::string_view sealed) const;

  // 8 hex digits naming the key (a hash of it), for messages.
  std::string KeyId() const;

 private:
  explicit SecretBox(std::string key);
  std::string key_;
  std::string key_id_;  // KeyId's 4 bytes, raw
};

// Creates `path` (mode 0600) holding a new random key, unless it exists.
// True when it created it.
Result<bool> EnsureSecretKey(const std::string& path);

}  // namespace kiln::auth
