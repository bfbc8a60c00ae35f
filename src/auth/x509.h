#pragma once
// The farm's certificates (OpenSSL 3 underneath, PEM strings at the surface):
// a farm CA, the controller's TLS server certificate, and worker client
// certificates signed from a worker's CSR with an identity the controller
// chooses. Keys are EC P-256, signatures SHA-256, serials 128 random bits.
// Every function is safe to call from several threads at once.

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::auth {

// A private key (unencrypted PKCS#8 PEM) and its certificate (PEM).
struct KeyPair {
  std::string key_pem;
  std::string cert_pem;
};

struct CertInfo {
  std::string serial_hex;          // lower-case hex, no leading zeros
  std::string common_name;         // the subject's CN, "" if it has none
  std::string fingerprint_sha256;  // lower-case hex of SHA-256 over the DER certificate
  int64_t not_before_unix = 0;
  int64_t not_after_unix = 0;
  bool is_ca = false;  // basicConstraints CA:TRUE
  std::vector<std::string> dns_sans, ip_sans, uri_sans;
};

// A fresh private key and a certificate request for it (subject CN = common_name), both PEM.
struct KeyAndCsr {
  std::string key_pem;
  std::string csr_pem;
};

enum class CertPurpose { kServer, kClient };

// A self-signed CA (basicConstraints critical CA:TRUE pathlen:0, keyUsage keyCertSign+cRLSign,
// SKI) valid `days` from now; InvalidArgument if the name is empty or over 64 bytes or days is
// not in 1..36500.
Result<KeyPair> CreateCa(const std::string& common_name, int days);

// A TLS server certificate signed by `ca` with one SAN per host ("127.0.0.1", "::1", "localhost",
// DNS names), EKU serverAuth, valid `days`; InvalidArgument if a host is neither an IP address nor
// a DNS name, if `ca` is not a CA key and certificate that belong together, or days is out of range.
Result<KeyPair> IssueServerCert(const KeyPair& ca, const std::vector<std::string>& hosts, int days);

// A fresh EC P-256 key and a CSR signed with it; InvalidArgument on a name as CreateCa refuses.
Result<KeyAndCsr> NewKeyAndCsr(const std::string& common_name);

// Signs a worker's CSR as a client certificate with CN = identity, URI SAN
// "kiln-worker:<identity>", EKU clientAuth, CA:FALSE, valid `days`, taking nothing from the CSR
// but its public key; InvalidArgument if the CSR is over 16 KiB, not PEM, its signature does not
// verify, its key is not EC P-256 or RSA >= 2048 bits, or identity is not 1-64 of [A-Za-z0-9._-].
Result<std::string> SignWorkerCsr(const KeyPair& ca, const std::string& csr_pem, const std::string& identity, int days);

// What the first PEM certificate in `cert_pem` says; InvalidArgument if there is none.
Result<CertInfo> InspectCert(const std::string& cert_pem);

// OK if `cert_pem` chains, now, to a CA certificate in `ca_bundle_pem` (one or more PEM
// certificates) and may be used for `purpose`; InvalidArgument if either does not parse,
// PermissionDenied saying why it does not verify (expired, unknown CA, wrong purpose, ...).
Status VerifyCert(const std::string& cert_pem, const std::string& ca_bundle_pem, CertPurpose purpose);

// Whether the private key in key_pem is the one of the certificate's public key (false if
// either does not parse).
bool KeyMatchesCert(const std::string& key_pem, const std::string& cert_pem);

// Replaces `path` with `data` atomically (a temp file beside it, fsync, rename), the temp file
// having `mode` before any byte is written; NotFound / PermissionDenied / Internal naming the path.
Status WriteSecretFile(const std::string& path, const std::string& data, int mode);

// The whole file; NotFound / PermissionDenied / Internal with the path in the message.
Result<std::string> ReadFile(const std::string& path);

struct FarmCaOptions {
  std::vector<std::string> hosts;  // besides localhost, 127.0.0.1, ::1 and this machine's hostname
  int ca_days = 3650;
  int server_days = 825;
  bool force = false;  // replace an existing CA (every certificate it issued stops verifying)
};

// Fills `dir` (created 0700 if missing, its parent must exist) with a new farm CA and server
// certificate: ca.key and server.key 0600, ca.crt and server.crt 0644; returns the CA's
// CertInfo. AlreadyExists naming ca.key if there is one and not opt.force; nothing is written
// unless every certificate could be made.
Result<CertInfo> InitFarmCertDir(const std::string& dir, const FarmCaOptions& opt);

}  // namespace kiln::auth
