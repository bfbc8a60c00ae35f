#pragma once
// Enrolment: the farm's CA signs a new worker's certificate in exchange for
// a join token (EnrollService, the one call a worker makes before it has a
// certificate) and renews it for the worker that holds it.

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::auth {
class TrustStore;
}

namespace kiln::controller {

struct Caller;

class Enroller {
 public:
  // Loads tls_dir/ca.crt and ca.key (the signing CA) and the trusted CA
  // bundle (tls_dir/trusted.crt, else ca.crt). Without a CA key this
  // controller cannot enrol (Enroll answers FAILED_PRECONDITION), which is
  // how an operator keeps the key on one controller only.
  static Result<std::unique_ptr<Enroller>> Load(auth::TrustStore& store, const std::string& tls_dir,
                                                std::chrono::milliseconds validity);
  // An enroller that refuses everything (insecure = true).
  static std::unique_ptr<Enroller> Disabled(auth::TrustStore& store, std::string why);

  // Enrols a new worker; `address` (the peer's) goes in the audit trail.
  Status Enroll(const v1::EnrollRequest& req, const std::string& address, v1::EnrollResponse* resp);
  // A new certificate for `worker`, recorded in the audit trail as `who`'s.
  Status Renew(const Caller& worker, const std::string& address, const std::string& csr_pem, v1::EnrollResponse* resp);
  const std::string& trusted_pem() const { return trusted_pem_; }

 private:
  Enroller(auth::TrustStore& store) : store_(store) {}

  auth::TrustStore& store_;
  std::string ca_cert_pem_, ca_key_pem_, trusted_pem_;
  std::string disabled_;  // why this controller does not sign
  int days_ = 30;
};

std::unique_ptr<grpc::Service> MakeEnrollService(Enroller& enroller);

}  // namespace kiln::controller
