#pragma once
// Who this worker is to the farm: the identity in the client certificate
// the farm's CA issued it at enrolment (work_dir/tls), or, against a
// controller with insecure = true, a name of its own.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "common/status.h"
#include "config/config.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::worker {

struct Identity {
  std::string id;
  std::string key_pem, cert_pem;  // empty without TLS
  std::string ca_pem;             // the CA certificates trusted for the controller
  int64_t issued_at_ms = 0, expires_at_ms = 0;
};

// The worker's identity: loaded from work_dir/tls (worker.key, worker.crt,
// ca.crt), or, on first start, enrolled with the join token
// (join_token_file, else KILN_JOIN_TOKEN) over TLS checked against
// ca_file. FailedPrecondition with what to do when neither is possible;
// the enrolment's own refusal (used or expired join token) as the controller said it.
Result<Identity> LoadOrEnroll(const config::WorkerConfig& cfg, const std::string& hostname,
                              const grpc::ChannelArguments& args);

// When the certificate should be renewed: cert_renew_before its expiry, or
// (0) at two thirds of its lifetime.
int64_t RenewAtMs(const config::WorkerConfig& cfg, const Identity& who);

// Renews the certificate (a new key and CSR; the controller signs it for the
// same identity) and writes it to work_dir/tls, where the watching channel
// picks it up for its next connection. `who` is updated.
Status Renew(const config::WorkerConfig& cfg, v1::WorkerService::StubInterface& stub, Identity& who);

// A channel to the controller for this identity (mTLS, or plaintext naming
// itself in kiln-worker-id metadata when cfg.insecure).
std::shared_ptr<grpc::Channel> ControllerChannel(const config::WorkerConfig& cfg, const Identity& who,
                                                 const grpc::ChannelArguments& args);

}  // namespace kiln::worker
