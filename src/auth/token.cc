#include "auth/token.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cctype>

#include "common/util.h"

namespace kiln::auth {
namespace {

constexpr size_t kIdHex = 12;
constexpr size_t kSecretHex = 64;

const char* Prefix(TokenKind kind) { return kind == TokenKind::kApi ? "kiln_" : "kilnjoin_"; }

bool IsLowerHex(std::string_view s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

const char* RoleName(Role r) {
  switch (r) {
    case Role::kRead: return "read";
    case Role::kSubmit: return "submit";
    case Role::kAdmin: return "admin";
  }
  return "?";
}

Result<Role> ParseRole(std::string_view name) {
  if (name == "read") return Role::kRead;
  if (name == "submit") return Role::kSubmit;
  if (name == "admin") return Role::kAdmin;
  return InvalidArgument("unknown role \"" + std::string(name.substr(0, 32)) + "\": use read, submit or admin");
}

TokenText NewToken(TokenKind kind) {
  TokenText t;
  t.id = RandomHex(kIdHex / 2);
  t.secret = RandomHex(kSecretHex / 2);
  t.full = std::string(Prefix(kind)) + t.id + "_" + t.secret;
  return t;
}

Result<TokenText> ParseToken(TokenKind kind, std::string_view text) {
  std::string_view prefix = Prefix(kind);
  const char* what = kind == TokenKind::kApi ? "API token" : "join token";
  if (text.substr(0, prefix.size()) != prefix) {
    return InvalidArgument(std::string("not a kiln ") + what + ": it should start with \"" + std::string(prefix) + "\"");
  }
  std::string_view rest = text.substr(prefix.size());
  if (rest.size() != kIdHex + 1 + kSecretHex || rest[kIdHex] != '_' || !IsLowerHex(rest.substr(0, kIdHex), kIdHex) ||
      !IsLowerHex(rest.substr(kIdHex + 1), kSecretHex)) {
    return InvalidArgument(std::string("malformed ") + what + " (copy it whole, as it was printed)");
  }
  TokenText t;
  t.id = std::string(rest.substr(0, kIdHex));
  t.secret = std::string(rest.substr(kIdHex + 1));
  t.full = std::string(text);
  return t;
}

std::string SecretHash(std::string_view secret) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof md);
}

std::string NewWorkerId(std::string_view host_hint) {
  std::string base;
  for (char c : host_hint) {
    if (base.size() >= 40) break;
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_') base += c;
  }
  if (base.empty() || !std::isalnum(static_cast<unsigned char>(base[0]))) base = "worker" + base;
  return base + "-" + RandomHex(3);
}

bool SameHash(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace kiln::auth
