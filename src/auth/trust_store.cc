#include "auth/trust_store.h"

#include <cctype>

#include "audit/write.h"
#include "common/text.h"
#include "common/util.h"
#include "db/pool.h"

namespace kiln::auth {
namespace {

#define MS(col) "coalesce((extract(epoch FROM " col ") * 1000)::bigint, 0)"

constexpr const char* kTokenSelect =
    "SELECT id, encode(secret_sha256, 'hex'), role, array_to_string(projects, ','), description, created_by, "
    MS("created_at") ", " MS("expires_at") ", " MS("revoked_at") ", " MS("last_used_at") " FROM api_tokens ";
// A revocation is the worker's: a certificate renewed in the same instant
// as another was revoked must not let it back in.
constexpr const char* kCertSelect =
    "SELECT serial, worker_id, fingerprint, " MS("issued_at") ", " MS("expires_at") ", " MS("revoked_at") ","
    " EXISTS (SELECT 1 FROM worker_certs o WHERE o.worker_id = worker_certs.worker_id AND o.revoked_at IS NOT NULL)"
    " FROM worker_certs ";

std::vector<db::Statement> Statements() {
  return {
      {"auth_create_token",
       "INSERT INTO api_tokens (id, secret_sha256, role, projects, description, created_by, expires_at)"
       " VALUES ($1, decode($2, 'hex'), $3, string_to_array($4, ',')::text[], $5, $6,"
       "         CASE WHEN $7::bigint > 0 THEN now() + $7::bigint * interval '1 millisecond' END)"},
      {"auth_missing_projects",
       "SELECT p FROM unnest(string_to_array($1, ',')) p WHERE NOT EXISTS (SELECT 1 FROM projects WHERE name = p)"},
      {"auth_find_token", std::string(kTokenSelect) + "WHERE id = $1"},
      {"auth_list_tokens", std::string(kTokenSelect) + "ORDER BY created_at, id"},
      // Whether this call revoked it (now() is the transaction's time), and what it was.
      {"auth_revoke_token",
       "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1"
       " RETURNING revoked_at = now(), role, array_to_string(projects, ',')"},
      {"auth_touch_tokens",
       "UPDATE api_tokens SET last_used_at = now() WHERE id = ANY (string_to_array($1, ','))"},
      {"auth_create_join",
       "INSERT INTO join_tokens (id, secret_sha256, created_by, expires_at)"
       " VALUES ($1, decode($2, 'hex'), $3, now() + $4::bigint * interval '1 millisecond')"},
      {"auth_list_join",
       "SELECT id, created_by, coalesce(used_by, ''), " MS("created_at") ", " MS("expires_at") ", " MS("used_at")
       " FROM join_tokens ORDER BY created_at, id"},
      {"auth_take_join",
       "SELECT encode(secret_sha256, 'hex'), used_at IS NOT NULL, expires_at < now() FROM join_tokens"
       " WHERE id = $1 FOR UPDATE"},
      {"auth_use_join", "UPDATE join_tokens SET used_at = now(), used_by = $2 WHERE id = $1"},
      {"auth_insert_cert",
       "INSERT INTO worker_certs (serial, worker_id, fingerprint, expires_at, join_token, renewed_from)"
       " VALUES ($1, $2, $3, to_timestamp($4::bigint / 1000.0), nullif($5, ''), nullif($6, ''))"},
      {"auth_find_cert", std::string(kCertSelect) + "WHERE serial = $1"},
      {"auth_worker_known", "SELECT count(*) FILTER (WHERE revoked_at IS NULL), count(*) FROM worker_certs"
                            " WHERE worker_id = $1"},
      {"auth_revoke_worker",
       "UPDATE worker_certs SET revoked_at = now() WHERE worker_id = $1 AND revoked_at IS NULL"},
      {"auth_revoked_serials", "SELECT serial FROM worker_certs WHERE revoked_at IS NOT NULL AND expires_at > now()"},
  };
}

#undef MS

std::string JoinComma(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

TokenRow RowToToken(const pqxx::row& r) {
  TokenRow t;
  t.id = r[0].as<std::string>();
  t.secret_sha256 = HexDecode(r[1].as<std::string>()).value_or("");
  t.role = ParseRole(r[2].as<std::string>()).value();
  t.projects = SplitList(r[3].as<std::string>());
  t.description = r[4].as<std::string>();
  t.created_by = r[5].as<std::string>();
  t.created_at_ms = r[6].as<int64_t>();
  t.expires_at_ms = r[7].as<int64_t>();
  t.revoked_at_ms = r[8].as<int64_t>();
  t.last_used_at_ms = r[9].as<int64_t>();
  return t;
}

WorkerCertRow RowToCert(const pqxx::row& r) {
  WorkerCertRow c;
  c.serial = r[0].as<std::string>();
  c.worker_id = r[1].as<std::string>();
  c.fingerprint = r[2].as<std::string>();
  c.issued_at_ms = r[3].as<int64_t>();
  c.expires_at_ms = r[4].as<int64_t>();
  c.revoked_at_ms = r[5].as<int64_t>();
  c.worker_revoked = r[6].as<bool>();
  return c;
}

}  // namespace

TrustStore::TrustStore(db::Pool& pool) : pool_(pool) {
  pool_.AddStatements(Statements());
  pool_.AddStatements({audit::InsertStatement()});
}

Result<std::string> TrustStore::CreateToken(const NewApiToken& t, const audit::Who& who) {
  if (t.role == Role::kAdmin && !t.projects.empty())
    return InvalidArgument("an admin token manages the whole farm: give no --project");
  if (t.role != Role::kAdmin && t.projects.empty())
    return InvalidArgument(std::string("a ") + RoleName(t.role) + " token needs the project it may act on (--project P)");
  if (t.projects.size() > 100) return InvalidArgument("at most 100 projects per token");
  for (const auto& p : t.projects) KILN_RETURN_IF_ERROR(CheckName("project", p));
  if (t.description.size() > 200) return InvalidArgument("token description too long (at most 200 bytes)");
  if (t.ttl_ms < 0) return InvalidArgument("token lifetime must not be negative");
  TokenText text = NewToken(TokenKind::kApi);
  return pool_.Query("cannot create token", [&](pqxx::connection& c) -> Result<std::string> {
    pqxx::work tx(c);
    std::string projects = JoinComma(t.projects);
    if (!projects.empty()) {
      auto missing = tx.exec_prepared("auth_missing_projects", projects);
      if (!missing.empty())
        return NotFound("project \"" + missing[0][0].as<std::string>() + "\" does not exist (see kiln projects list)");
    }
    tx.exec_prepared("auth_create_token", text.id, HexEncode(SecretHash(text.secret)), RoleName(t.role), projects,
                     t.description, t.created_by, t.ttl_ms);
    // Never the secret.
    audit::Write(tx, audit::Entry(who, "token.create", "", "token " + text.id)
                         .Set("role", RoleName(t.role))
                         .Set("projects", t.projects)
                         .Set("description", t.description)
                         .Set("ttl_s", t.ttl_ms / 1000));
    tx.commit();
    return text.full;
  });
}

Result<std::optional<TokenRow>> TrustStore::FindToken(const std::string& id) {
  return pool_.Query("cannot read token " + id, [&](pqxx::connection& c) -> Result<std::optional<TokenRow>> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_prepared("auth_find_token", id);
    if (r.empty()) return std::optional<TokenRow>();
    return std::optional<TokenRow>(RowToToken(r[0]));
  });
}

Result<std::vector<TokenRow>> TrustStore::ListTokens() {
  return pool_.Query("cannot list tokens", [&](pqxx::connection& c) -> Result<std::vector<TokenRow>> {
    pqxx::nontransaction tx(c);
    std::vector<TokenRow> out;
    for (const auto& row : tx.exec_prepared("auth_list_tokens")) out.push_back(RowToToken(row));
    return out;
  });
}

Status TrustStore::RevokeToken(const std::string& id, const audit::Who& who) {
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        auto r = tx.exec_prepared("auth_revoke_token", id);
        if (r.empty()) return NotFound("no token has id " + id + " (see kiln tokens list)");
        if (r[0][0].as<bool>()) {
          audit::Write(tx, audit::Entry(who, "token.revoke", "", "token " + id)
                               .Set("role", r[0][1].as<std::string>())
                               .Set("projects", SplitList(r[0][2].as<std::string>())));
        }
        tx.commit();
        return Status::Ok();
      },
      "cannot revoke token " + id);
}

Status TrustStore::TouchTokens(const std::vector<std::string>& ids) {
  if (ids.empty()) return Status::Ok();
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        tx.exec_prepared("auth_touch_tokens", JoinComma(ids));
        return Status::Ok();
      },
      "cannot record token use");
}

Result<std::string> TrustStore::CreateJoinToken(const std::string& created_by, int64_t ttl_ms,
                                                const audit::Who& who) {
  if (ttl_ms <= 0) return InvalidArgument("a join token must expire: give a positive lifetime");
  TokenText text = NewToken(TokenKind::kJoin);
  return pool_.Query("cannot create join token", [&](pqxx::connection& c) -> Result<std::string> {
    pqxx::work tx(c);
    tx.exec_prepared("auth_create_join", text.id, HexEncode(SecretHash(text.secret)), created_by, ttl_ms);
    audit::Write(tx, audit::Entry(who, "join_token.create", "", "join token " + text.id).Set("ttl_s", ttl_ms / 1000));
    tx.commit();
    return text.full;
  });
}

Result<std::vector<JoinTokenRow>> TrustStore::ListJoinTokens() {
  return pool_.Query("cannot list join tokens", [&](pqxx::connection& c) -> Result<std::vector<JoinTokenRow>> {
    pqxx::nontransaction tx(c);
    std::vector<JoinTokenRow> out;
    for (const auto& r : tx.exec_prepared("auth_list_join")) {
      out.push_back({r[0].as<std::string>(), r[1].as<std::string>(), r[2].as<std::string>(), r[3].as<int64_t>(),
                     r[4].as<int64_t>(), r[5].as<int64_t>()});
    }
    return out;
  });
}

Result<WorkerCertRow> TrustStore::Enroll(const std::string& join_token_text, const std::string& host_hint,
                                         const std::string& address,
                                         const std::function<Result<IssuedCert>(const std::string&)>& sign) {
  auto token = ParseToken(TokenKind::kJoin, join_token_text);
  if (!token.ok()) return Unauthenticated(token.status().message());
  return pool_.Query("cannot enrol worker", [&](pqxx::connection& c) -> Result<WorkerCertRow> {
    pqxx::work tx(c);
    auto r = tx.exec_prepared("auth_take_join", token->id);
    const std::string refused = "join token " + token->id + " ";
    if (r.empty() || !SameHash(HexDecode(r[0][0].as<std::string>()).value_or(""), SecretHash(token->secret)))
      return Unauthenticated(refused + "is not valid: create one with kiln workers join-token");
    if (r[0][1].as<bool>()) return Unauthenticated(refused + "was already used (each enrols one worker): create another");
    if (r[0][2].as<bool>()) return Unauthenticated(refused + "expired: create another");
    std::string worker_id = NewWorkerId(host_hint);
    auto cert = sign(worker_id);
    if (!cert.ok()) return cert.status();
    tx.exec_prepared("auth_insert_cert", cert->serial, worker_id, cert->fingerprint, cert->expires_at_ms, token->id,
                     "");
    tx.exec_prepared("auth_use_join", token->id, worker_id);
    auto row = RowToCert(tx.exec_prepared("auth_find_cert", cert->serial)[0]);
    audit::Write(tx, audit::Entry({"join token " + token->id, address}, "worker.enrol", "", "worker " + worker_id)
                         .Set("hostname", host_hint)
                         .Set("serial", cert->serial)
                         .Set("expires_at_ms", cert->expires_at_ms));
    tx.commit();
    return row;
  });
}

Result<WorkerCertRow> TrustStore::Renew(const std::string& serial, const std::string& worker_id,
                                        const IssuedCert& cert, const audit::Who& who) {
  return pool_.Query("cannot record renewed certificate of worker " + worker_id,
                     [&](pqxx::connection& c) -> Result<WorkerCertRow> {
                       pqxx::work tx(c);
                       tx.exec_prepared("auth_insert_cert", cert.serial, worker_id, cert.fingerprint,
                                        cert.expires_at_ms, "", serial);
                       auto row = RowToCert(tx.exec_prepared("auth_find_cert", cert.serial)[0]);
                       audit::Write(tx, audit::Entry(who, "worker.renew", "", "worker " + worker_id)
                                            .Set("serial", cert.serial)
                                            .Set("renewed_from", serial)
                                            .Set("expires_at_ms", cert.expires_at_ms));
                       tx.commit();
                       return row;
                     });
}

Result<std::optional<WorkerCertRow>> TrustStore::FindCert(const std::string& serial) {
  return pool_.Query("cannot read certificate " + serial,
                     [&](pqxx::connection& c) -> Result<std::optional<WorkerCertRow>> {
                       pqxx::nontransaction tx(c);
                       auto r = tx.exec_prepared("auth_find_cert", serial);
                       if (r.empty()) return std::optional<WorkerCertRow>();
                       return std::optional<WorkerCertRow>(RowToCert(r[0]));
                     });
}

Result<int> TrustStore::RevokeWorker(const std::string& worker_id, const audit::Who& who) {
  return pool_.Query("cannot revoke worker " + worker_id, [&](pqxx::connection& c) -> Result<int> {
    pqxx::work tx(c);
    auto known = tx.exec_prepared("auth_worker_known", worker_id);
    if (known[0][1].as<int64_t>() == 0)
      return NotFound("no enrolled worker has id \"" + worker_id + "\" (see kiln workers list)");
    int n = static_cast<int>(tx.exec_prepared("auth_revoke_worker", worker_id).affected_rows());
    // Revoked already: nothing changed, nothing to record.
    if (n > 0) audit::Write(tx, audit::Entry(who, "worker.revoke", "", "worker " + worker_id).Set("certificates", n));
    tx.commit();
    return n;
  });
}

Result<std::vector<std::string>> TrustStore::RevokedSerials() {
  return pool_.Query("cannot read revoked certificates", [&](pqxx::connection& c) -> Result<std::vector<std::string>> {
    pqxx::nontransaction tx(c);
    std::vector<std::string> out;
    for (const auto& r : tx.exec_prepared("auth_revoked_serials")) out.push_back(r[0].as<std::string>());
    return out;
  });
}

}  // namespace kiln::auth
