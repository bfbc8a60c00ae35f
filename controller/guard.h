#pragma once
// Who is calling, and may they: every RPC of the controller asks the Guard
// first. A client is its API token ("authorization: Bearer kiln_..."); a
// worker is its client certificate, issued by the farm's CA at enrolment
// (never a name it claims). Tokens and certificates are read from
// PostgreSQL and cached briefly; a revocation (NOTIFY kiln_revoke) drops the
// cached entry at once on every controller.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "audit/entry.h"
#include "auth/token.h"
#include "common/status.h"

namespace kiln::auth {
class TrustStore;
}

namespace kiln::controller {

struct Caller {
  enum class Kind { kToken, kWorker };
  Kind kind = Kind::kToken;
  std::string token_id;               // kToken
  auth::Role role = auth::Role::kRead;
  std::vector<std::string> projects;  // kToken, not admin
  std::string worker_id;              // kWorker
  std::string cert_serial;            // kWorker over TLS

  bool IsWorker() const { return kind == Kind::kWorker; }
  bool IsAdmin() const { return kind == Kind::kToken && role == auth::Role::kAdmin; }
  // Whether a token covers `project` (an admin token covers every project).
  bool Covers(const std::string& project) const;
  // "token 1a2b3c4d5e6f" or "worker host-abc123", for messages and logs.
  std::string Name() const;
  // Ok if this caller may act with `role` on `project`; PermissionDenied
  // saying which token is needed otherwise. Workers are never allowed here.
  Status May(auth::Role role, const std::string& project) const;
  // Who the audit trail names for a change this caller makes through `ctx`:
  // Name() and the peer's address.
  audit::Who Audit(const grpc::ServerContext& ctx) const;
};

class Guard {
 public:
  // tls: workers must present a certificate of the farm's CA. Without TLS
  // (insecure = true) a worker is who it says it is.
  Guard(auth::TrustStore& store, bool tls);

  // The caller: Unauthenticated if there is no credential or it is not
  // valid (unknown, wrong secret, expired, revoked).
  Result<Caller> Identify(grpc::ServerContext* ctx);
  // A token of at least `role`; for `project` if not empty, else for any
  // project (the handler checks the project it then reads). Workers are
  // refused unless `workers_too`.
  Result<Caller> Require(grpc::ServerContext* ctx, auth::Role role, const std::string& project = "",
                         bool workers_too = false);
  // A worker: its certificate's identity; Unauthenticated for clients.
  // Without TLS, `claimed` (the id the worker registers with) or else the
  // kiln-worker-id metadata is taken.
  Result<Caller> RequireWorker(grpc::ServerContext* ctx, const std::string& claimed = "");

  // NOTIFY kiln_revoke payload: "token <id>" or "worker <worker id>".
  void Forget(const std::string& payload);
  // Token ids used since the last call (their last_used_at is written in a batch).
  std::vector<std::string> TakeUsed();
  bool tls() const { return tls_; }

 private:
  Result<Caller> FromToken(const std::string& text);
  Result<Caller> FromCert(const std::string& pem);

  struct CachedToken {
    bool found = false;
    std::string secret_sha256;
    auth::Role role = auth::Role::kRead;
    std::vector<std::string> projects;
    int64_t expires_at_ms = 0, revoked_at_ms = 0;
    std::chrono::steady_clock::time_point fetched;
  };
  struct CachedCert {
    std::string serial, worker_id;
    int64_t expires_at_ms = 0;
    bool revoked = false, known = false;
    std::chrono::steady_clock::time_point fetched;
  };

  auth::TrustStore& store_;
  const bool tls_;
  std::mutex mu_;
  std::map<std::string, CachedToken> tokens_;  // by token id
  std::map<std::string, CachedCert> certs_;    // by PEM text
  std::set<std::string> used_;
};

}  // namespace kiln::controller
