#include "controller/enroll.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "api/convert.h"
#include "auth/trust_store.h"
#include "auth/x509.h"
#include "controller/guard.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::controller {
namespace {

constexpr size_t kMaxCsr = 16 << 10;

Result<auth::IssuedCert> Sign(const auth::KeyPair& ca, const std::string& csr, const std::string& worker_id, int days) {
  auto pem = auth::SignWorkerCsr(ca, csr, worker_id, days);
  if (!pem.ok()) return pem.status();
  auto info = auth::InspectCert(*pem);
  if (!info.ok()) return info.status();
  return auth::IssuedCert{*pem, info->serial_hex, info->fingerprint_sha256, info->not_after_unix * 1000};
}

class EnrollServiceImpl final : public v1::EnrollService::Service {
 public:
  explicit EnrollServiceImpl(Enroller& e) : e_(e) {}
  grpc::Status Enroll(grpc::ServerContext* ctx, const v1::EnrollRequest* req, v1::EnrollResponse* resp) override {
    Status s = e_.Enroll(*req, ctx->peer(), resp);
    if (!s.ok()) {
      spdlog::warn("enrolment refused: {} peer={}", s.message(), ctx->peer());
    } else {
      spdlog::info("worker enrolled worker_id={} peer={}", resp->worker_id(), ctx->peer());
    }
    return api::ToGrpc(s);
  }

 private:
  Enroller& e_;
};

}  // namespace

Result<std::unique_ptr<Enroller>> Enroller::Load(auth::TrustStore& store, const std::string& tls_dir,
                                                  std::chrono::milliseconds validity) {
  std::unique_ptr<Enroller> e(new Enroller(store));
  e->days_ = static_cast<int>(std::max<int64_t>(1, validity.count() / 86'400'000));
  auto ca = auth::ReadFile(tls_dir + "/ca.crt");
  if (!ca.ok()) return ca.status();
  e->ca_cert_pem_ = *ca;
  auto trusted = auth::ReadFile(tls_dir + "/trusted.crt");
  e->trusted_pem_ = trusted.ok() ? *trusted : *ca;
  auto key = auth::ReadFile(tls_dir + "/ca.key");
  if (key.ok()) {
    e->ca_key_pem_ = *key;
    if (!auth::KeyMatchesCert(*key, *ca)) {
      return InvalidArgument(tls_dir + "/ca.key does not belong to " + tls_dir + "/ca.crt");
    }
  } else {
    e->disabled_ = "this controller holds no CA key (" + tls_dir +
                   "/ca.key): enrol workers through the controller that does";
    spdlog::info("{}", e->disabled_);
  }
  return e;
}

std::unique_ptr<Enroller> Enroller::Disabled(auth::TrustStore& store, std::string why) {
  std::unique_ptr<Enroller> e(new Enroller(store));
  e->disabled_ = std::move(why);
  return e;
}

Status Enroller::Enroll(const v1::EnrollRequest& req, const std::string& address, v1::EnrollResponse* resp) {
  if (req.join_token().empty()) return Unauthenticated("enrolment needs a join token (kiln workers join-token)");
  if (!disabled_.empty()) return FailedPrecondition(disabled_);
  if (req.csr_pem().empty() || req.csr_pem().size() > kMaxCsr)
    return InvalidArgument("csr_pem must hold one certificate signing request (at most 16 KiB)");
  if (req.hostname().size() > 253) return InvalidArgument("hostname too long (at most 253 bytes)");
  auth::KeyPair ca{ca_key_pem_, ca_cert_pem_};
  std::string cert_pem;
  auto row = store_.Enroll(req.join_token(), req.hostname(), address,
                          [&](const std::string& worker_id) -> Result<auth::IssuedCert> {
    auto c = Sign(ca, req.csr_pem(), worker_id, days_);
    if (c.ok()) cert_pem = c->cert_pem;
    return c;
  });
  if (!row.ok()) return row.status();
  resp->set_worker_id(row->worker_id);
  resp->set_cert_pem(cert_pem);
  resp->set_ca_pem(trusted_pem_);
  resp->set_expires_at_ms(row->expires_at_ms);
  return Status::Ok();
}

Status Enroller::Renew(const Caller& worker, const std::string& address, const std::string& csr_pem,
                       v1::EnrollResponse* resp) {
  if (!disabled_.empty()) return FailedPrecondition(disabled_);
  if (csr_pem.empty() || csr_pem.size() > kMaxCsr)
    return InvalidArgument("csr_pem must hold one certificate signing request (at most 16 KiB)");
  auto c = Sign({ca_key_pem_, ca_cert_pem_}, csr_pem, worker.worker_id, days_);
  if (!c.ok()) return c.status();
  auto row = store_.Renew(worker.cert_serial, worker.worker_id, *c, {worker.Name(), address});
  if (!row.ok()) return row.status();
  spdlog::info("worker certificate renewed worker_id={} serial={}", worker.worker_id, c->serial);
  resp->set_worker_id(worker.worker_id);
  resp->set_cert_pem(c->cert_pem);
  resp->set_ca_pem(trusted_pem_);
  resp->set_expires_at_ms(row->expires_at_ms);
  return Status::Ok();
}

std::unique_ptr<grpc::Service> MakeEnrollService(Enroller& enroller) {
  return std::make_unique<EnrollServiceImpl>(enroller);
}

}  // namespace kiln::controller
