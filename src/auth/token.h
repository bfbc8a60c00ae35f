#pragma once
// API tokens and worker join tokens as text: "kiln_<id>_<secret>" and
// "kilnjoin_<id>_<secret>". The id (12 hex) is public and finds the row; the
// secret (64 hex, 32 random bytes) is shown once and kept only as its SHA-256.

#include <string>
#include <string_view>

#include "common/status.h"

namespace kiln::auth {

enum class Role { kRead = 1, kSubmit = 2, kAdmin = 3 };

// "read", "submit", "admin".
const char* RoleName(Role r);
// Parses a role name; InvalidArgument listing the three otherwise.
Result<Role> ParseRole(std::string_view name);

enum class TokenKind { kApi, kJoin };

struct TokenText {
  std::string id;      // 12 lower-case hex
  std::string secret;  // 64 lower-case hex
  std::string full;    // what the user holds
};

// A new token with a random id and secret.
TokenText NewToken(TokenKind kind);

// Splits a token; InvalidArgument (never echoing the secret) if it is not one
// of `kind`.
Result<TokenText> ParseToken(TokenKind kind, std::string_view text);

// SHA-256 of the secret, 32 raw bytes.
std::string SecretHash(std::string_view secret);

// A new worker's id from what it says its host is called: the safe
// characters of it (at most 40), then a random suffix it cannot pick.
std::string NewWorkerId(std::string_view host_hint);

// Compares two hashes in constant time.
bool SameHash(std::string_view a, std::string_view b);

}  // namespace kiln::auth
