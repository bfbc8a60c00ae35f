#include "auth/x509.h"

#include "auth/secrets.h"

#include "common/util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <ctime>
#include <memory>

#include "common/write_all.h"

namespace kiln::auth {
namespace {

constexpr size_t kMaxCsrBytes = 16 * 1024;
constexpr size_t kMaxCommonName = 64;  // ub-common-name (RFC 5280)
constexpr int kMaxDays = 36500;
// notBefore is set this far in the past, so that a peer whose clock is a
// little behind accepts a certificate issued a moment ago.
constexpr long kBackdateSeconds = 3600;
constexpr const char* kWorkerUriPrefix = "kiln-worker:";

// ---- RAII for OpenSSL objects ----

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
template <typename T, auto Free>
using Ptr = std::unique_ptr<T, Deleter<Free>>;

using PkeyPtr = Ptr<EVP_PKEY, EVP_PKEY_free>;
using X509Ptr = Ptr<X509, X509_free>;
using ReqPtr = Ptr<X509_REQ, X509_REQ_free>;
using NamePtr = Ptr<X509_NAME, X509_NAME_free>;
using ExtPtr = Ptr<X509_EXTENSION, X509_EXTENSION_free>;
using BioPtr = Ptr<BIO, BIO_free_all>;
using BnPtr = Ptr<BIGNUM, BN_free>;
using AsnIntPtr = Ptr<ASN1_INTEGER, ASN1_INTEGER_free>;
using OctetPtr = Ptr<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>;
using Ia5Ptr = Ptr<ASN1_IA5STRING, ASN1_IA5STRING_free>;
using GenNamePtr = Ptr<GENERAL_NAME, GENERAL_NAME_free>;
using GenNamesPtr = Ptr<GENERAL_NAMES, GENERAL_NAMES_free>;
using StorePtr = Ptr<X509_STORE, X509_STORE_free>;
using StoreCtxPtr = Ptr<X509_STORE_CTX, X509_STORE_CTX_free>;

// Memory OpenSSL allocated for us (BN_bn2hex, ASN1_STRING_to_UTF8).
struct OpenSslFree {
  void operator()(void* p) const { OPENSSL_free(p); }
};
using OsslCharPtr = std::unique_ptr<char, OpenSslFree>;
using OsslBytePtr = std::unique_ptr<unsigned char, OpenSslFree>;

// ---- errors ----

// Every public function starts and ends with an empty error queue (this
// thread's), so that messages name only what went wrong here.
class ErrorQueueGuard {
 public:
  ErrorQueueGuard() { ERR_clear_error(); }
  ~ErrorQueueGuard() { ERR_clear_error(); }
  ErrorQueueGuard(const ErrorQueueGuard&) = delete;
  ErrorQueueGuard& operator=(const ErrorQueueGuard&) = delete;
};

// Drains the queue into "error:...:reason; error:...:reason".
std::string DrainErrors() {
  std::string out;
  for (unsigned long e = ERR_get_error(); e != 0; e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error recorded" : out;
}

Status SslError(Code code, const std::string& what) { return Status(code, what + ": " + DrainErrors()); }

Status ErrnoStatus(const std::string& what, int err) {
  std::string m = what + ": " + std::strerror(err);
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return NotFound(m);
    case EACCES:
    case EPERM:
      return Status(Code::kPermissionDenied, m);
    default:
      return Internal(m);
  }
}

// ---- checks of what callers pass ----

Status CheckDays(int days) {
  if (days < 1 || days > kMaxDays) {
    return InvalidArgument("a validity of " + std::to_string(days) + " days is out of range: give 1 to " +
                           std::to_string(kMaxDays));
  }
  return Status::Ok();
}

Status CheckCommonName(const std::string& cn) {
  if (cn.empty() || cn.size() > kMaxCommonName) {
    return InvalidArgument("a common name must be 1 to 64 bytes, not " + std::to_string(cn.size()));
  }
  for (unsigned char c : cn) {
    if (c < 0x20 || c == 0x7f) return InvalidArgument("the common name \"" + cn + "\" holds a control character");
  }
  return Status::Ok();
}

Status CheckIdentity(const std::string& id) {
  bool ok = !id.empty() && id.size() <= kMaxCommonName && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
  if (!ok) return InvalidArgument("worker identity \"" + id + "\" must be 1 to 64 of A-Z a-z 0-9 . _ -");
  return Status::Ok();
}

// A host name as a DNS SAN may hold it: dot-separated labels of letters,
// digits and inner hyphens, 253 bytes at most. No wildcards.
bool IsDnsName(const std::string& s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find('.', start);
    if (end == std::string::npos) end = s.size();
    size_t len = end - start;
    if (len == 0 || len > 63 || s[start] == '-' || s[end - 1] == '-') return false;
    for (size_t i = start; i < end; ++i) {
      char c = s[i];
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      if (!ok) return false;
    }
    start = end + 1;
  }
  return true;
}

// ---- PEM in and out ----

// A read-only BIO over `s` (which must outlive it); null if it is too large.
BioPtr MemBio(const std::string& s) {
  if (s.size() > static_cast<size_t>(INT_MAX)) return nullptr;
  return BioPtr(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())));
}

// Never prompt on a terminal for an encrypted key's passphrase: refuse it.
int NoPassphrase(char*, int, int, void*) { return -1; }

PkeyPtr ReadKey(const std::string& pem) {
  BioPtr bio = MemBio(pem);
  if (!bio) return nullptr;
  return PkeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, NoPassphrase, nullptr));
}

X509Ptr ReadCert(const std::string& pem) {
  BioPtr bio = MemBio(pem);
  if (!bio) return nullptr;
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

// Runs `write(bio)` into a memory BIO and returns what it wrote.
template <typename Write>
Result<std::string> ToPem(const char* what, Write write) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1) return SslError(Code::kInternal, std::string("encoding ") + what + " as PEM");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  if (n <= 0 || data == nullptr) return Internal(std::string("encoding ") + what + " as PEM produced nothing");
  return std::string(data, static_cast<size_t>(n));
}

Result<std::string> KeyPem(EVP_PKEY* key) {
  return ToPem("a private key",
               [key](BIO* b) { return PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
}

// ---- building blocks ----

Result<PkeyPtr> NewEcKey() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return SslError(Code::kInternal, "generating an EC P-256 key");
  return key;
}

// 128 random bits from OpenSSL's CSPRNG as a positive serial number.
Result<AsnIntPtr> RandomSerial() {
  BnPtr bn(BN_new());
  if (!bn) return SslError(Code::kInternal, "allocating a serial number");
  do {
    if (BN_rand(bn.get(), 128, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1) {
      return SslError(Code::kInternal, "drawing a random serial number");
    }
  } while (BN_is_zero(bn.get()));
  AsnIntPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (!serial) return SslError(Code::kInternal, "encoding a serial number");
  return serial;
}

Result<NamePtr> NameWithCn(const std::string& cn) {
  KILN_RETURN_IF_ERROR(CheckCommonName(cn));
  NamePtr name(X509_NAME_new());
  if (!name || X509_NAME_add_entry_by_NID(name.get(), NID_commonName, MBSTRING_UTF8,
                                          reinterpret_cast<const unsigned char*>(cn.data()),
                                          static_cast<int>(cn.size()), -1, 0) != 1) {
    return SslError(Code::kInvalidArgument, "the common name \"" + cn + "\" cannot be used (is it UTF-8?)");
  }
  return name;
}

Status PushName(GENERAL_NAMES* names, int type, void* value) {
  GenNamePtr gn(GENERAL_NAME_new());
  if (!gn) return SslError(Code::kInternal, "allocating a subject alternative name");
  GENERAL_NAME_set0_value(gn.get(), type, value);  // gn owns value from here
  if (sk_GENERAL_NAME_push(names, gn.get()) <= 0) return SslError(Code::kInternal, "adding a subject alternative name");
  gn.release();  // owned by `names`
  return Status::Ok();
}

Status PushIa5(GENERAL_NAMES* names, int type, const std::string& text) {
  Ia5Ptr s(ASN1_IA5STRING_new());
  if (!s || ASN1_STRING_set(s.get(), text.data(), static_cast<int>(text.size())) != 1) {
    return SslError(Code::kInternal, "encoding \"" + text + "\" as a subject alternative name");
  }
  return PushName(names, type, s.release());
}

// One SAN per host: an IP address if inet_pton takes it, else a DNS name.
Result<GenNamesPtr> HostNames(const std::vector<std::string>& hosts) {
  if (hosts.empty()) return InvalidArgument("a server certificate needs at least one host name or IP address");
  GenNamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return SslError(Code::kInternal, "allocating subject alternative names");
  for (const std::string& host : hosts) {
    unsigned char addr[16];
    int len = 0;
    if (host.find('\0') == std::string::npos) {
      if (inet_pton(AF_INET, host.c_str(), addr) == 1) {
        len = 4;
      } else if (inet_pton(AF_INET6, host.c_str(), addr) == 1) {
        len = 16;
      }
    }
    if (len > 0) {
      OctetPtr ip(ASN1_OCTET_STRING_new());
      if (!ip || ASN1_OCTET_STRING_set(ip.get(), addr, len) != 1) {
        return SslError(Code::kInternal, "encoding the address " + host);
      }
      KILN_RETURN_IF_ERROR(PushName(names.get(), GEN_IPADD, ip.release()));
    } else if (IsDnsName(host)) {
      KILN_RETURN_IF_ERROR(PushIa5(names.get(), GEN_DNS, host));
    } else {
      return InvalidArgument("\"" + host + "\" is neither an IP address nor a DNS name (letters, digits, '-', '.')");
    }
  }
  return names;
}

Status AddExt(X509* x, X509V3_CTX* ctx, int nid, const char* value) {
  ExtPtr ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value));
  if (!ext || X509_add_ext(x, ext.get(), -1) != 1) {
    return SslError(Code::kInternal, std::string("adding the extension ") + OBJ_nid2sn(nid) + " = " + value);
  }
  return Status::Ok();
}

// What MakeCert certifies and how. The string fields are fixed texts of
// this file, never caller input (that goes in through `sans` and the name).
struct CertSpec {
  X509* issuer_cert = nullptr;  // null: self-signed by subject_key
  EVP_PKEY* issuer_key = nullptr;
  EVP_PKEY* subject_key = nullptr;  // the public key certified
  const std::string* common_name = nullptr;
  int days = 0;
  bool ca = false;
  const char* key_usage = nullptr;
  const char* ext_key_usage = nullptr;  // null: none
  GENERAL_NAMES* sans = nullptr;        // null: none
};

Result<std::string> MakeCert(const CertSpec& spec) {
  Result<NamePtr> name = NameWithCn(*spec.common_name);
  if (!name.ok()) return name.status();
  Result<AsnIntPtr> serial = RandomSerial();
  if (!serial.ok()) return serial.status();

  X509Ptr x(X509_new());
  if (!x) return SslError(Code::kInternal, "allocating a certificate");
  X509_NAME* issuer_name = spec.issuer_cert ? X509_get_subject_name(spec.issuer_cert) : name->get();
  if (X509_set_version(x.get(), X509_VERSION_3) != 1 || X509_set_serialNumber(x.get(), serial->get()) != 1 ||
      X509_set_subject_name(x.get(), name->get()) != 1 || X509_set_issuer_name(x.get(), issuer_name) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(x.get()), -kBackdateSeconds) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(x.get()), spec.days, 0, nullptr) == nullptr ||
      X509_set_pubkey(x.get(), spec.subject_key) != 1) {
    return SslError(Code::kInternal, "filling in a certificate");
  }

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, spec.issuer_cert ? spec.issuer_cert : x.get(), x.get(), nullptr, nullptr, 0);
  KILN_RETURN_IF_ERROR(
      AddExt(x.get(), &ctx, NID_basic_constraints, spec.ca ? "critical,CA:TRUE,pathlen:0" : "critical,CA:FALSE"));
  KILN_RETURN_IF_ERROR(AddExt(x.get(), &ctx, NID_key_usage, spec.key_usage));
  if (spec.ext_key_usage) KILN_RETURN_IF_ERROR(AddExt(x.get(), &ctx, NID_ext_key_usage, spec.ext_key_usage));
  KILN_RETURN_IF_ERROR(AddExt(x.get(), &ctx, NID_subject_key_identifier, "hash"));
  if (spec.issuer_cert) {
    KILN_RETURN_IF_ERROR(AddExt(x.get(), &ctx, NID_authority_key_identifier, "keyid:always"));
  }
  if (spec.sans && X509_add1_ext_i2d(x.get(), NID_subject_alt_name, spec.sans, 0, X509V3_ADD_DEFAULT) != 1) {
    return SslError(Code::kInternal, "adding the subject alternative names");
  }

  if (X509_sign(x.get(), spec.issuer_key, EVP_sha256()) <= 0) {
    return SslError(Code::kInternal, "signing a certificate");
  }
  X509* raw = x.get();
  return ToPem("a certificate", [raw](BIO* b) { return PEM_write_bio_X509(b, raw); });
}

struct LoadedCa {
  PkeyPtr key;
  X509Ptr cert;
};

Result<LoadedCa> LoadCa(const KeyPair& ca) {
  LoadedCa out{ReadKey(ca.key_pem), ReadCert(ca.cert_pem)};
  if (!out.key) return SslError(Code::kInvalidArgument, "the CA key is not an unencrypted PEM private key");
  if (!out.cert) return SslError(Code::kInvalidArgument, "the CA certificate is not a PEM certificate");
  if (X509_check_private_key(out.cert.get(), out.key.get()) != 1) {
    return SslError(Code::kInvalidArgument, "the CA key does not belong to the CA certificate");
  }
  if ((X509_get_extension_flags(out.cert.get()) & EXFLAG_CA) == 0) {
    return InvalidArgument("the CA certificate is not a CA (it lacks basicConstraints CA:TRUE)");
  }
  return out;
}

// A worker's key: EC on P-256, or RSA of 2048 bits or more.
Status CheckWorkerKey(EVP_PKEY* key) {
  const std::string want = "; a worker key must be EC P-256 or RSA of at least 2048 bits";
  int type = EVP_PKEY_get_base_id(key);
  if (type == EVP_PKEY_EC) {
    char group[80] = "";
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) != 1) {
      return InvalidArgument("the certificate request's EC key has no named curve" + want);
    }
    if (OBJ_txt2nid(group) == NID_X9_62_prime256v1 || EC_curve_nist2nid(group) == NID_X9_62_prime256v1) {
      return Status::Ok();
    }
    return InvalidArgument(std::string("the certificate request's key is EC on ") + group + want);
  }
  if (type == EVP_PKEY_RSA) {
    int bits = EVP_PKEY_get_bits(key);
    if (bits >= 2048) return Status::Ok();
    return InvalidArgument("the certificate request's key is RSA of " + std::to_string(bits) + " bits" + want);
  }
  const char* sn = type == NID_undef ? nullptr : OBJ_nid2sn(type);
  return InvalidArgument(std::string("the certificate request's key is of type ") + (sn ? sn : "unknown") + want);
}

std::string AsnString(const ASN1_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
}

Result<int64_t> UnixTime(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return SslError(Code::kInvalidArgument, "a certificate time does not parse");
  }
  return static_cast<int64_t>(timegm(&tm));
}

std::string FormatUnix(int64_t t) {
  time_t tt = static_cast<time_t>(t);
  struct tm tm {};
  char buf[32];
  if (gmtime_r(&tt, &tm) == nullptr || std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
    return std::to_string(t);
  }
  return buf;
}

std::string SubjectCn(X509* x) {
  X509_NAME* subject = X509_get_subject_name(x);
  int i = subject ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
  if (i < 0) return "";
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
  OsslBytePtr owned(utf8);
  if (n < 0) return "";
  return std::string(reinterpret_cast<const char*>(utf8), static_cast<size_t>(n));
}

// What a verification error means for a farm, and what to do about it.
std::string VerifyHint(int err, X509* at, CertPurpose purpose) {
  switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return "it was not issued by a CA in the bundle (another farm's, or the farm CA was replaced: issue it again)";
    case X509_V_ERR_CERT_HAS_EXPIRED:
      if (at != nullptr) {
        Result<int64_t> t = UnixTime(X509_get0_notAfter(at));
        if (t.ok()) return "it expired at " + FormatUnix(*t) + ": issue a new one";
      }
      return "issue a new one";
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return "it is not valid yet: check this machine's clock";
    case X509_V_ERR_INVALID_PURPOSE:
      return purpose == CertPurpose::kClient ? "it is not a TLS client certificate"
                                             : "it is not a TLS server certificate";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return "its signature does not match its issuer's key: it was altered, or signed by another CA of the same name";
    default:
      return "";
  }
}

}  // namespace

Result<KeyPair> CreateCa(const std::string& common_name, int days) {
  ErrorQueueGuard guard;
  KILN_RETURN_IF_ERROR(CheckCommonName(common_name));
  KILN_RETURN_IF_ERROR(CheckDays(days));
  Result<PkeyPtr> key = NewEcKey();
  if (!key.ok()) return key.status();
  CertSpec spec;
  spec.issuer_key = key->get();
  spec.subject_key = key->get();
  spec.common_name = &common_name;
  spec.days = days;
  spec.ca = true;
  spec.key_usage = "critical,keyCertSign,cRLSign";
  Result<std::string> cert = MakeCert(spec);
  if (!cert.ok()) return cert.status();
  Result<std::string> key_pem = KeyPem(key->get());
  if (!key_pem.ok()) return key_pem.status();
  return KeyPair{std::move(*key_pem), std::move(*cert)};
}

Result<KeyPair> IssueServerCert(const KeyPair& ca, const std::vector<std::string>& hosts, int days) {
  ErrorQueueGuard guard;
  KILN_RETURN_IF_ERROR(CheckDays(days));
  std::vector<std::string> unique;
  for (const std::string& h : hosts) {
    if (std::find(unique.begin(), unique.end(), h) == unique.end()) unique.push_back(h);
  }
  Result<GenNamesPtr> sans = HostNames(unique);
  if (!sans.ok()) return sans.status();
  Result<LoadedCa> issuer = LoadCa(ca);
  if (!issuer.ok()) return issuer.status();
  Result<PkeyPtr> key = NewEcKey();
  if (!key.ok()) return key.status();
  // Clients check the SANs; the CN is for people reading the certificate.
  const std::string cn = unique.front().size() <= kMaxCommonName ? unique.front() : "kiln server";
  CertSpec spec;
  spec.issuer_cert = issuer->cert.get();
  spec.issuer_key = issuer->key.get();
  spec.subject_key = key->get();
  spec.common_name = &cn;
  spec.days = days;
  spec.key_usage = "critical,digitalSignature";
  spec.ext_key_usage = "serverAuth";
  spec.sans = sans->get();
  Result<std::string> cert = MakeCert(spec);
  if (!cert.ok()) return cert.status();
  Result<std::string> key_pem = KeyPem(key->get());
  if (!key_pem.ok()) return key_pem.status();
  return KeyPair{std::move(*key_pem), std::move(*cert)};
}

Result<KeyAndCsr> NewKeyAndCsr(const std::string& common_name) {
  ErrorQueueGuard guard;
  Result<NamePtr> name = NameWithCn(common_name);
  if (!name.ok()) return name.status();
  Result<PkeyPtr> key = NewEcKey();
  if (!key.ok()) return key.status();
  ReqPtr req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), X509_REQ_VERSION_1) != 1 ||
      X509_REQ_set_subject_name(req.get(), name->get()) != 1 || X509_REQ_set_pubkey(req.get(), key->get()) != 1 ||
      X509_REQ_sign(req.get(), key->get(), EVP_sha256()) <= 0) {
    return SslError(Code::kInternal, "making a certificate request");
  }
  X509_REQ* raw = req.get();
  Result<std::string> csr = ToPem("a certificate request", [raw](BIO* b) { return PEM_write_bio_X509_REQ(b, raw); });
  if (!csr.ok()) return csr.status();
  Result<std::string> key_pem = KeyPem(key->get());
  if (!key_pem.ok()) return key_pem.status();
  return KeyAndCsr{std::move(*key_pem), std::move(*csr)};
}

Result<std::string> SignWorkerCsr(const KeyPair& ca, const std::string& csr_pem, const std::string& identity,
                                  int days) {
  ErrorQueueGuard guard;
  if (csr_pem.size() > kMaxCsrBytes) {
    return InvalidArgument("the certificate request is " + std::to_string(csr_pem.size()) +
                           " bytes, more than the 16 KiB a worker's may be");
  }
  KILN_RETURN_IF_ERROR(CheckIdentity(identity));
  KILN_RETURN_IF_ERROR(CheckDays(days));
  Result<LoadedCa> issuer = LoadCa(ca);
  if (!issuer.ok()) return issuer.status();

  BioPtr bio = MemBio(csr_pem);
  ReqPtr req(bio ? PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!req) {
    return SslError(Code::kInvalidArgument,
                    "the certificate request is not a PEM \"BEGIN CERTIFICATE REQUEST\" block that parses");
  }
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
  if (key == nullptr) return SslError(Code::kInvalidArgument, "the certificate request's public key does not parse");
  KILN_RETURN_IF_ERROR(CheckWorkerKey(key));
  if (X509_REQ_verify(req.get(), key) != 1) {
    return SslError(Code::kInvalidArgument,
                    "the certificate request's signature does not verify with its own key (altered in transit?)");
  }

  // Everything but the key comes from the controller: subject, SAN, usage.
  GenNamesPtr sans(sk_GENERAL_NAME_new_null());
  if (!sans) return SslError(Code::kInternal, "allocating subject alternative names");
  KILN_RETURN_IF_ERROR(PushIa5(sans.get(), GEN_URI, kWorkerUriPrefix + identity));
  CertSpec spec;
  spec.issuer_cert = issuer->cert.get();
  spec.issuer_key = issuer->key.get();
  spec.subject_key = key;
  spec.common_name = &identity;
  spec.days = days;
  spec.key_usage = "critical,digitalSignature";
  spec.ext_key_usage = "clientAuth";
  spec.sans = sans.get();
  return MakeCert(spec);
}

Result<CertInfo> InspectCert(const std::string& cert_pem) {
  ErrorQueueGuard guard;
  X509Ptr x = ReadCert(cert_pem);
  if (!x) return SslError(Code::kInvalidArgument, "not a PEM certificate");
  CertInfo info;

  BnPtr serial(ASN1_INTEGER_to_BN(X509_get0_serialNumber(x.get()), nullptr));
  OsslCharPtr hex(serial ? BN_bn2hex(serial.get()) : nullptr);
  if (!hex) return SslError(Code::kInternal, "reading the certificate's serial number");
  std::string s = hex.get();
  std::string sign = !s.empty() && s[0] == '-' ? "-" : "";
  s.erase(0, sign.size());
  size_t first = s.find_first_not_of('0');
  s = first == std::string::npos ? "0" : s.substr(first);
  std::transform(s.begin(), s.end(), s.begin(),
                 [](char c) { return c >= 'A' && c <= 'F' ? static_cast<char>(c - 'A' + 'a') : c; });
  info.serial_hex = sign + s;

  info.common_name = SubjectCn(x.get());

  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (X509_digest(x.get(), EVP_sha256(), md, &md_len) != 1) {
    return SslError(Code::kInternal, "hashing the certificate");
  }
  info.fingerprint_sha256 = HexEncode(std::string_view(reinterpret_cast<const char*>(md), md_len));

  Result<int64_t> nb = UnixTime(X509_get0_notBefore(x.get()));
  if (!nb.ok()) return nb.status();
  Result<int64_t> na = UnixTime(X509_get0_notAfter(x.get()));
  if (!na.ok()) return na.status();
  info.not_before_unix = *nb;
  info.not_after_unix = *na;
  info.is_ca = (X509_get_extension_flags(x.get()) & EXFLAG_CA) != 0;

  GenNamesPtr sans(static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x.get(), NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans.get()); ++i) {
    int type = 0;
    auto* value = static_cast<ASN1_STRING*>(GENERAL_NAME_get0_value(sk_GENERAL_NAME_value(sans.get(), i), &type));
    if (type == GEN_DNS) {
      info.dns_sans.push_back(AsnString(value));
    } else if (type == GEN_URI) {
      info.uri_sans.push_back(AsnString(value));
    } else if (type == GEN_IPADD) {
      int len = ASN1_STRING_length(value);
      char buf[INET6_ADDRSTRLEN];
      int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
      if (family != 0 && inet_ntop(family, ASN1_STRING_get0_data(value), buf, sizeof buf) != nullptr) {
        info.ip_sans.push_back(buf);
      }
    }
  }
  return info;
}

Status VerifyCert(const std::string& cert_pem, const std::string& ca_bundle_pem, CertPurpose purpose) {
  ErrorQueueGuard guard;
  X509Ptr cert = ReadCert(cert_pem);
  if (!cert) return SslError(Code::kInvalidArgument, "the certificate to verify is not a PEM certificate");

  StorePtr store(X509_STORE_new());
  BioPtr bio = MemBio(ca_bundle_pem);
  if (!store || !bio) return SslError(Code::kInternal, "allocating a certificate store");
  int count = 0;
  for (;;) {
    X509Ptr ca(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!ca) break;
    if (X509_STORE_add_cert(store.get(), ca.get()) != 1) {
      return SslError(Code::kInternal, "adding CA certificate #" + std::to_string(count + 1) + " to the store");
    }
    ++count;
  }
  // The loop ends on "no start line" at the end of the text; anything else is a broken certificate.
  unsigned long last = ERR_peek_last_error();
  if (last != 0 && !(ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE)) {
    return SslError(Code::kInvalidArgument,
                    "CA certificate #" + std::to_string(count + 1) + " of the bundle does not parse");
  }
  ERR_clear_error();
  if (count == 0) return InvalidArgument("the CA bundle holds no PEM certificate");

  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) != 1 ||
      X509_STORE_CTX_set_purpose(
          ctx.get(), purpose == CertPurpose::kClient ? X509_PURPOSE_SSL_CLIENT : X509_PURPOSE_SSL_SERVER) != 1) {
    return SslError(Code::kInternal, "setting up certificate verification");
  }
  int r = X509_verify_cert(ctx.get());
  if (r == 1) return Status::Ok();
  if (r < 0) return SslError(Code::kInternal, "verifying the certificate");

  int err = X509_STORE_CTX_get_error(ctx.get());
  int depth = X509_STORE_CTX_get_error_depth(ctx.get());
  X509* at = X509_STORE_CTX_get_current_cert(ctx.get());
  std::string msg = "certificate \"" + SubjectCn(cert.get()) + "\" does not verify against the " +
                    std::to_string(count) + " CA certificate(s) of the bundle: " + X509_verify_cert_error_string(err);
  if (depth > 0 && at) msg += " (at \"" + SubjectCn(at) + "\", " + std::to_string(depth) + " up the chain)";
  std::string hint = VerifyHint(err, at, purpose);
  if (!hint.empty()) msg += "; " + hint;
  return Status(Code::kPermissionDenied, msg);
}

bool KeyMatchesCert(const std::string& key_pem, const std::string& cert_pem) {
  ErrorQueueGuard guard;
  PkeyPtr key = ReadKey(key_pem);
  X509Ptr cert = ReadCert(cert_pem);
  if (!key || !cert) return false;
  const EVP_PKEY* pub = X509_get0_pubkey(cert.get());
  return pub != nullptr && EVP_PKEY_eq(pub, key.get()) == 1;
}

Status WriteSecretFile(const std::string& path, const std::string& data, int mode) {
  if (path.empty()) return InvalidArgument("no path to write the file to");
  if (mode < 0 || mode > 07777) return InvalidArgument("mode " + std::to_string(mode) + " is not a file mode");
  std::string tmp = path + ".tmp.XXXXXX";
  // mkostemp creates the file 0600 and ours alone; fchmod sets the mode
  // asked for (umask aside) before a byte is written.
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot create a temp file beside " + path, errno);
  // On failure: close if still open, remove the temp file, report errno.
  auto fail = [&](const std::string& what) {
    int err = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoStatus(what, err);
  };
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0) return fail("cannot set the mode of " + tmp);
  if (!WriteAll(fd, data)) return fail("cannot write " + tmp);
  if (::fsync(fd) != 0) return fail("cannot sync " + tmp);
  int closed = ::close(fd);
  fd = -1;
  if (closed != 0) return fail("cannot close " + tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot rename " + tmp + " to " + path);

  // The rename itself is durable once the directory is synced.
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return ErrnoStatus("wrote " + path + " but cannot open its directory to sync it", errno);
  int synced = ::fsync(dfd);
  int err = errno;
  ::close(dfd);
  if (synced != 0 && err != EINVAL) return ErrnoStatus("wrote " + path + " but cannot sync its directory", err);
  return Status::Ok();
}

Result<std::string> ReadFile(const std::string& path) { return ReadWholeFile(path); }

Result<CertInfo> InitFarmCertDir(const std::string& dir, const FarmCaOptions& opt) {
  if (dir.empty()) return InvalidArgument("no directory for the farm's certificates");
  const std::string ca_key = dir + "/ca.key";
  struct stat st {};
  if (::lstat(ca_key.c_str(), &st) == 0) {
    if (!opt.force) {
      return AlreadyExists(ca_key +
                           " already exists: the farm has a CA; replacing it (force) makes every "
                           "certificate it issued stop verifying, so every worker must enrol again");
    }
  } else if (errno != ENOENT) {
    return ErrnoStatus("cannot look at " + ca_key, errno);
  }

  // Everything is made before anything is written.
  std::vector<std::string> hosts = opt.hosts;
  for (const char* h : {"localhost", "127.0.0.1", "::1"}) hosts.push_back(h);
  char name[HOST_NAME_MAX + 1] = "";
  std::string hostname;
  if (::gethostname(name, sizeof name) == 0) {
    name[HOST_NAME_MAX] = '\0';
    if (IsDnsName(name)) hostname = name;
  }
  if (!hostname.empty()) hosts.push_back(hostname);
  std::string ca_name = "kiln farm CA";
  if (!hostname.empty() && ca_name.size() + hostname.size() + 3 <= kMaxCommonName) ca_name += " (" + hostname + ")";

  Result<KeyPair> ca = CreateCa(ca_name, opt.ca_days);
  if (!ca.ok()) return ca.status();
  Result<KeyPair> server = IssueServerCert(*ca, hosts, opt.server_days);
  if (!server.ok()) return server.status();
  Result<CertInfo> info = InspectCert(ca->cert_pem);
  if (!info.ok()) return info.status();

  if (::mkdir(dir.c_str(), 0700) == 0) {
    // mkdir's mode passes through the umask; make it exactly 0700.
    if (::chmod(dir.c_str(), 0700) != 0) return ErrnoStatus("cannot set the mode of " + dir, errno);
  } else if (errno == ENOENT) {
    return NotFound("cannot create " + dir + ": its parent directory does not exist");
  } else if (errno != EEXIST) {
    return ErrnoStatus("cannot create " + dir, errno);
  }
  if (::stat(dir.c_str(), &st) != 0) return ErrnoStatus("cannot look at " + dir, errno);
  if (!S_ISDIR(st.st_mode)) return FailedPrecondition(dir + " exists and is not a directory");

  // ca.key last: while it is missing, a rerun without force starts over.
  KILN_RETURN_IF_ERROR(WriteSecretFile(dir + "/server.key", server->key_pem, 0600));
  KILN_RETURN_IF_ERROR(WriteSecretFile(dir + "/server.crt", server->cert_pem, 0644));
  KILN_RETURN_IF_ERROR(WriteSecretFile(dir + "/ca.crt", ca->cert_pem, 0644));
  KILN_RETURN_IF_ERROR(WriteSecretFile(ca_key, ca->key_pem, 0600));
  KILN_RETURN_IF_ERROR(EnsureSecretKey(dir + "/secrets.key").status());
  return info;
}

}  // namespace kiln::auth
