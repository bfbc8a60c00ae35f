#include "controller/guard.h"

#include <spdlog/spdlog.h>

#include "auth/trust_store.h"
#include "auth/x509.h"
#include "common/text.h"
#include "common/util.h"

namespace kiln::controller {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kTokenTtl = std::chrono::seconds(30);   // a revocation elsewhere is NOTIFYed; this is the safety net
constexpr auto kUnknownTtl = std::chrono::seconds(5);  // unknown ids are asked again soon
constexpr auto kCertTtl = std::chrono::seconds(30);
constexpr size_t kMaxCached = 10000;

const char* kNoToken =
    "this call needs an API token: set KILN_TOKEN or KILN_TOKEN_FILE (an admin creates one with "
    "kiln tokens create --project P --role read|submit|admin)";

std::string RoleNeeded(auth::Role role, const std::string& project) {
  if (role == auth::Role::kAdmin) return "an admin token";
  return std::string("a ") + auth::RoleName(role) + " (or stronger) token" +
         (project.empty() ? std::string() : " for project " + project);
}

}  // namespace

bool Caller::Covers(const std::string& project) const {
  if (kind != Kind::kToken) return false;
  if (role == auth::Role::kAdmin) return true;
  for (const auto& p : projects) {
    if (p == project) return true;
  }
  return false;
}

std::string Caller::Name() const {
  return kind == Kind::kWorker ? "worker " + worker_id : "token " + token_id;
}

audit::Who Caller::Audit(const grpc::ServerContext& ctx) const { return {Name(), ctx.peer()}; }

Status Caller::May(auth::Role need, const std::string& project) const {
  if (kind == Kind::kWorker) {
    return PermissionDenied("workers may not make this call: it needs " + RoleNeeded(need, project));
  }
  bool role_ok = static_cast<int>(role) >= static_cast<int>(need);
  bool project_ok = need == auth::Role::kAdmin || project.empty() || Covers(project);
  if (role_ok && project_ok) return Status::Ok();
  std::string has = std::string(auth::RoleName(role)) + " token";
  if (role != auth::Role::kAdmin) {
    has += " for project";
    if (projects.size() > 1) has += "s";
    for (size_t i = 0; i < projects.size(); ++i) has += (i ? ", " : " ") + projects[i];
  }
  return PermissionDenied("this call needs " + RoleNeeded(need, project) + "; token " + token_id + " is a " + has);
}

Guard::Guard(auth::TrustStore& store, bool tls) : store_(store), tls_(tls) {}

Result<Caller> Guard::Identify(grpc::ServerContext* ctx) {
  if (tls_) {
    auto auth = ctx->auth_context();
    if (auth) {
      auto pem = auth->FindPropertyValues("x509_pem_cert");
      if (!pem.empty()) return FromCert(std::string(pem[0].data(), pem[0].size()));
    }
  }
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  if (it == md.end() && !tls_ && md.count("kiln-worker-id") > 0) {
    // insecure = true: a worker names itself; nothing can prove it.
    return RequireWorker(ctx);
  }
  if (it == md.end()) return Unauthenticated(kNoToken);
  std::string value(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (value.compare(0, kBearer.size(), kBearer) != 0) {
    return Unauthenticated("the authorization header must be \"Bearer <token>\"");
  }
  return FromToken(Trim(value.substr(kBearer.size())));
}

Result<Caller> Guard::FromToken(const std::string& text) {
  auto parsed = auth::ParseToken(auth::TokenKind::kApi, text);
  if (!parsed.ok()) return Unauthenticated(parsed.status().message());
  CachedToken t;
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = tokens_.find(parsed->id);
    if (it != tokens_.end() && Clock::now() - it->second.fetched < (it->second.found ? kTokenTtl : kUnknownTtl)) {
      t = it->second;
      cached = true;
    }
  }
  if (!cached) {
    auto row = store_.FindToken(parsed->id);
    if (!row.ok()) return Unavailable("cannot check the API token: " + row.status().message());
    t.fetched = Clock::now();
    if (*row) {
      t.found = true;
      t.secret_sha256 = (*row)->secret_sha256;
      t.role = (*row)->role;
      t.projects = (*row)->projects;
      t.expires_at_ms = (*row)->expires_at_ms;
      t.revoked_at_ms = (*row)->revoked_at_ms;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (tokens_.size() >= kMaxCached) tokens_.clear();
    tokens_[parsed->id] = t;
  }
  if (!t.found || !auth::SameHash(t.secret_sha256, auth::SecretHash(parsed->secret))) {
    return Unauthenticated("API token " + parsed->id + " is not valid (unknown or wrong secret): check KILN_TOKEN");
  }
  if (t.revoked_at_ms != 0) return Unauthenticated("API token " + parsed->id + " was revoked: ask an admin for a new one");
  if (t.expires_at_ms != 0 && t.expires_at_ms <= NowUnixMs()) {
    return Unauthenticated("API token " + parsed->id + " expired: ask an admin for a new one");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    used_.insert(parsed->id);
  }
  Caller c;
  c.kind = Caller::Kind::kToken;
  c.token_id = parsed->id;
  c.role = t.role;
  c.projects = t.projects;
  return c;
}

Result<Caller> Guard::FromCert(const std::string& pem) {
  // The TLS handshake proved the peer holds the key of a certificate our
  // CA signed; the table says whether the farm still trusts it.
  CachedCert cert;
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = certs_.find(pem);
    if (it != certs_.end() && Clock::now() - it->second.fetched < kCertTtl) {
      cert = it->second;
      cached = true;
    }
  }
  if (!cached) {
    auto info = auth::InspectCert(pem);
    if (!info.ok()) return Unauthenticated("unreadable client certificate: " + info.status().message());
    auto row = store_.FindCert(info->serial_hex);
    if (!row.ok()) return Unavailable("cannot check the worker certificate: " + row.status().message());
    cert.serial = info->serial_hex;
    cert.fetched = Clock::now();
    if (*row && (*row)->worker_id == info->common_name && (*row)->fingerprint == info->fingerprint_sha256) {
      cert.known = true;
      cert.worker_id = (*row)->worker_id;
      cert.expires_at_ms = (*row)->expires_at_ms;
      cert.revoked = (*row)->revoked_at_ms != 0 || (*row)->worker_revoked;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (certs_.size() >= kMaxCached) certs_.clear();
    certs_[pem] = cert;
  }
  if (!cert.known) {
    return Unauthenticated("client certificate " + cert.serial +
                           " was not issued to a worker of this farm: enrol the worker with a join token");
  }
  if (cert.revoked) {
    return Unauthenticated("the certificate of worker " + cert.worker_id +
                           " was revoked: enrol it again with a new join token if it should serve");
  }
  if (cert.expires_at_ms <= NowUnixMs()) {
    return Unauthenticated("the certificate of worker " + cert.worker_id + " expired: enrol it again");
  }
  Caller c;
  c.kind = Caller::Kind::kWorker;
  c.worker_id = cert.worker_id;
  c.cert_serial = cert.serial;
  return c;
}

Result<Caller> Guard::Require(grpc::ServerContext* ctx, auth::Role role, const std::string& project,
                              bool workers_too) {
  auto c = Identify(ctx);
  if (!c.ok()) return c;
  if (c->IsWorker()) {
    if (workers_too) return c;
    return PermissionDenied("workers may not make this call: it needs " + RoleNeeded(role, project));
  }
  if (Status s = c->May(role, project); !s.ok()) return s;
  return c;
}

Result<Caller> Guard::RequireWorker(grpc::ServerContext* ctx, const std::string& claimed) {
  if (!tls_) {
    // insecure = true: nothing proves who the peer is.
    Caller c;
    c.kind = Caller::Kind::kWorker;
    c.worker_id = claimed;
    if (c.worker_id.empty()) {
      auto it = ctx->client_metadata().find("kiln-worker-id");
      if (it != ctx->client_metadata().end()) c.worker_id.assign(it->second.data(), it->second.size());
    }
    if (Status s = CheckName("worker id", c.worker_id); !c.worker_id.empty() && !s.ok()) return s;
    return c;
  }
  auto c = Identify(ctx);
  if (!c.ok()) return c;
  if (!c->IsWorker()) {
    return Unauthenticated("only enrolled workers may make this call: connect with the worker's certificate");
  }
  return c;
}

void Guard::Forget(const std::string& payload) {
  std::lock_guard<std::mutex> lock(mu_);
  if (payload.rfind("token ", 0) == 0) {
    tokens_.erase(payload.substr(6));
  } else if (payload.rfind("worker ", 0) == 0) {
    std::string id = payload.substr(7);
    for (auto it = certs_.begin(); it != certs_.end();) {
      it = it->second.worker_id == id ? certs_.erase(it) : std::next(it);
    }
  }
}

std::vector<std::string> Guard::TakeUsed() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> out(used_.begin(), used_.end());
  used_.clear();
  return out;
}

}  // namespace kiln::controller
