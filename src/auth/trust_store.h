#pragma once
// The farm's trust records in PostgreSQL: API tokens, worker join tokens and
// the certificates issued to enrolled workers (sql/009_auth.sql). Free of
// libpqxx; the controller caches what it reads (controller/guard.h). Every
// change is recorded in the audit trail in its own transaction, as made by
// `who` — never a secret.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "audit/entry.h"
#include "auth/token.h"
#include "common/status.h"

namespace kiln::db {
class Pool;
}

namespace kiln::auth {

struct TokenRow {
  std::string id;
  std::string secret_sha256;  // raw 32 bytes
  Role role = Role::kRead;
  std::vector<std::string> projects;  // empty for admin
  std::string description, created_by;
  int64_t created_at_ms = 0, expires_at_ms = 0 /* 0: never */, revoked_at_ms = 0, last_used_at_ms = 0;
};

struct NewApiToken {
  Role role = Role::kRead;
  std::vector<std::string> projects;
  std::string description, created_by;
  int64_t ttl_ms = 0;  // 0: never expires
};

struct JoinTokenRow {
  std::string id, created_by, used_by;
  int64_t created_at_ms = 0, expires_at_ms = 0, used_at_ms = 0;
};

struct WorkerCertRow {
  std::string serial, worker_id, fingerprint;
  int64_t issued_at_ms = 0, expires_at_ms = 0, revoked_at_ms = 0;
  bool worker_revoked = false;  // some certificate of this worker was revoked: the worker is
};

// What enrolment signs: the worker's identity in, the certificate out.
struct IssuedCert {
  std::string cert_pem, serial, fingerprint;
  int64_t expires_at_ms = 0;
};

class TrustStore {
 public:
  explicit TrustStore(db::Pool& pool);

  // Stores a new API token; returns its text, which is shown once and never
  // stored. InvalidArgument for an admin token with projects or a read or
  // submit token without, NotFound naming a project that does not exist.
  // Recorded as token.create (role, projects, description, lifetime).
  Result<std::string> CreateToken(const NewApiToken& t, const audit::Who& who);
  // The token's row, or nullopt if no token has this id.
  Result<std::optional<TokenRow>> FindToken(const std::string& id);
  Result<std::vector<TokenRow>> ListTokens();
  // Marks a token revoked (NOTIFY kiln_revoke tells every controller);
  // NotFound if there is no such token. Recorded as token.revoke unless it
  // was revoked already.
  Status RevokeToken(const std::string& id, const audit::Who& who);
  // Records that these tokens were used now (batched by the caller).
  Status TouchTokens(const std::vector<std::string>& ids);

  // A join token valid for ttl_ms; returns its text (shown once). Recorded
  // as join_token.create.
  Result<std::string> CreateJoinToken(const std::string& created_by, int64_t ttl_ms, const audit::Who& who);
  Result<std::vector<JoinTokenRow>> ListJoinTokens();

  // Enrols a worker in one transaction: takes the join token (locking its
  // row), refuses it (Unauthenticated) if unknown,
  // used, expired or its secret is wrong; picks the worker id
  // (`<host hint>-<6 hex>`), calls `sign` for its certificate and records it,
  // and the enrolment in the audit trail (worker.enrol by "join token <id>"
  // from `address`). Nothing is written unless all of it succeeds.
  Result<WorkerCertRow> Enroll(const std::string& join_token_text, const std::string& host_hint,
                               const std::string& address,
                               const std::function<Result<IssuedCert>(const std::string& worker_id)>& sign);
  // Records a renewed certificate for a worker whose current one is
  // `serial` (worker.renew).
  Result<WorkerCertRow> Renew(const std::string& serial, const std::string& worker_id, const IssuedCert& cert,
                              const audit::Who& who);
  // The certificate with this serial, or nullopt.
  Result<std::optional<WorkerCertRow>> FindCert(const std::string& serial);
  // Revokes every certificate of a worker; returns how many were live.
  // NotFound if the farm never enrolled such a worker. Recorded as
  // worker.revoke unless none was live.
  Result<int> RevokeWorker(const std::string& worker_id, const audit::Who& who);
  // Serials of revoked certificates that have not expired yet (a CRL).
  Result<std::vector<std::string>> RevokedSerials();

 private:
  db::Pool& pool_;
};

}  // namespace kiln::auth
