// The farm's certificates: CA, server and worker certificates, CSR checks,
// verification, key files and the farm's certificate directory. OpenSSL is
// used directly only to make what the library must refuse (tampered or weak
// requests) or cannot make (certificates outside their validity).

#include "auth/x509.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <memory>

#include "harness/harness.h"

namespace kiln::auth {
namespace {

// For EXPECT_PRED2, which prints both strings when it fails.
bool Contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const {
    Free(p);
  }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using ReqPtr = std::unique_ptr<X509_REQ, Deleter<X509_REQ_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;

PkeyPtr EcKey(const char* curve) { return PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve)); }
PkeyPtr RsaKey(size_t bits) { return PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits)); }

std::string BioText(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return std::string(data, static_cast<size_t>(n));
}

PkeyPtr ReadKey(const std::string& pem) {
  BioPtr b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return PkeyPtr(PEM_read_bio_PrivateKey(b.get(), nullptr, nullptr, nullptr));
}

std::string KeyPem(EVP_PKEY* key) {
  BioPtr b(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_PrivateKey(b.get(), key, nullptr, nullptr, 0, nullptr, nullptr), 1);
  return BioText(b.get());
}

// A CSR for `pub`, signed with `signer` (a different key makes it a forgery),
// optionally asking for CA:TRUE and a DNS SAN the controller must not grant.
std::string MakeCsr(EVP_PKEY* signer, EVP_PKEY* pub, const std::string& cn, bool ask_for_more) {
  ReqPtr req(X509_REQ_new());
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.data()),
                             static_cast<int>(cn.size()), -1, 0);
  X509_REQ_set_pubkey(req.get(), signer);
  if (ask_for_more) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, nullptr, nullptr, req.get(), nullptr, 0);
    STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
    sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints, "critical,CA:TRUE"));
    sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "DNS:controller.example"));
    X509_REQ_add_extensions(req.get(), exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  }
  EXPECT_GT(X509_REQ_sign(req.get(), signer, EVP_sha256()), 0);
  if (pub != signer) X509_REQ_set_pubkey(req.get(), pub);  // the signature no longer matches
  BioPtr b(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_X509_REQ(b.get(), req.get()), 1);
  return BioText(b.get());
}

// `cert_pem` re-signed by `ca` with a validity window of the given offsets
// from now (the library only issues certificates valid from now on).
std::string WithValidity(const KeyPair& ca, const std::string& cert_pem, long not_before_s, long not_after_s) {
  BioPtr in(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  X509Ptr x(PEM_read_bio_X509(in.get(), nullptr, nullptr, nullptr));
  PkeyPtr key = ReadKey(ca.key_pem);
  EXPECT_TRUE(x && key);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), not_before_s);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), not_after_s);
  EXPECT_GT(X509_sign(x.get(), key.get(), EVP_sha256()), 0);
  BioPtr out(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_X509(out.get(), x.get()), 1);
  return BioText(out.get());
}

// Flips one base64 character of the PEM block's body near its end, which
// lies inside the signature (the last field of a CSR or certificate).
std::string FlipSignatureByte(std::string pem) {
  size_t end = pem.find("-----END");
  EXPECT_NE(end, std::string::npos);
  int seen = 0;
  for (size_t i = end; i-- > 0;) {
    char c = pem[i];
    if (c == '\n' || c == '=') continue;
    if (++seen == 10) {
      pem[i] = c == 'A' ? 'B' : 'A';
      return pem;
    }
  }
  ADD_FAILURE() << "no body in " << pem;
  return pem;
}

KeyPair Ca(const std::string& name = "test CA") {
  Result<KeyPair> ca = CreateCa(name, 30);
  EXPECT_TRUE(ca.ok()) << ca.status().ToString();
  return ca.ok() ? *ca : KeyPair{};
}

CertInfo Inspect(const std::string& pem) {
  Result<CertInfo> info = InspectCert(pem);
  EXPECT_TRUE(info.ok()) << info.status().ToString();
  return info.ok() ? *info : CertInfo{};
}

int ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return static_cast<int>(st.st_mode & 07777);
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(X509, CaVerifiesItsServerCertAndNoOther) {
  KeyPair ca = Ca(), other = Ca("other CA");
  Result<KeyPair> server = IssueServerCert(ca, {"localhost", "127.0.0.1"}, 30);
  ASSERT_TRUE(server.ok()) << server.status().ToString();

  EXPECT_TRUE(VerifyCert(server->cert_pem, ca.cert_pem, CertPurpose::kServer).ok());
  EXPECT_TRUE(VerifyCert(server->cert_pem, other.cert_pem + ca.cert_pem, CertPurpose::kServer).ok());

  Status s = VerifyCert(server->cert_pem, other.cert_pem, CertPurpose::kServer);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_PRED2(Contains, s.message(), "not issued by a CA in the bundle");

  s = VerifyCert(server->cert_pem, ca.cert_pem, CertPurpose::kClient);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_PRED2(Contains, s.message(), "not a TLS client certificate");

  EXPECT_TRUE(KeyMatchesCert(server->key_pem, server->cert_pem));
  EXPECT_FALSE(KeyMatchesCert(ca.key_pem, server->cert_pem));
  EXPECT_TRUE(KeyMatchesCert(ca.key_pem, ca.cert_pem));
}

TEST(X509, CaCertSaysWhatItIs) {
  int64_t now = std::time(nullptr);
  KeyPair ca = Ca("kiln farm CA");
  CertInfo info = Inspect(ca.cert_pem);
  EXPECT_EQ(info.common_name, "kiln farm CA");
  EXPECT_TRUE(info.is_ca);
  EXPECT_TRUE(info.dns_sans.empty() && info.ip_sans.empty() && info.uri_sans.empty());
  EXPECT_LE(info.not_before_unix, now);
  EXPECT_NEAR(static_cast<double>(info.not_after_unix), static_cast<double>(now + 30 * 86400), 120);

  ASSERT_FALSE(info.serial_hex.empty());
  EXPECT_LE(info.serial_hex.size(), 32u);
  EXPECT_NE(info.serial_hex[0], '0');
  EXPECT_EQ(info.serial_hex.find_first_not_of("0123456789abcdef"), std::string::npos) << info.serial_hex;
  EXPECT_EQ(info.fingerprint_sha256.size(), 64u);
  EXPECT_EQ(info.fingerprint_sha256.find_first_not_of("0123456789abcdef"), std::string::npos);

  CertInfo again = Inspect(Ca("kiln farm CA").cert_pem);
  EXPECT_NE(again.serial_hex, info.serial_hex);
  EXPECT_NE(again.fingerprint_sha256, info.fingerprint_sha256);
}

TEST(X509, ServerCertHoldsTheHostsAsGiven) {
  KeyPair ca = Ca();
  Result<KeyPair> server =
      IssueServerCert(ca, {"ctl.build.example", "127.0.0.1", "::1", "localhost", "10.0.0.7", "localhost"}, 30);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  CertInfo info = Inspect(server->cert_pem);
  EXPECT_EQ(info.common_name, "ctl.build.example");
  EXPECT_FALSE(info.is_ca);
  EXPECT_EQ(info.dns_sans, (std::vector<std::string>{"ctl.build.example", "localhost"}));
  EXPECT_EQ(info.ip_sans, (std::vector<std::string>{"127.0.0.1", "::1", "10.0.0.7"}));
  EXPECT_TRUE(info.uri_sans.empty());

  for (const char* bad : {"", "bad host", "a,DNS:evil.example", "-x.example", "1.2.3.4x/8", "*.example"}) {
    Result<KeyPair> r = IssueServerCert(ca, {bad}, 30);
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
  }
  EXPECT_EQ(IssueServerCert(ca, {}, 30).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(IssueServerCert(ca, {"localhost"}, 0).status().code(), Code::kInvalidArgument);
  // A key that is not the CA's, and a certificate that is not a CA.
  EXPECT_EQ(IssueServerCert({server->key_pem, ca.cert_pem}, {"localhost"}, 30).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(IssueServerCert(*server, {"localhost"}, 30).status().code(), Code::kInvalidArgument);
}

TEST(X509, WorkerCertCarriesTheControllersIdentity) {
  KeyPair ca = Ca();
  Result<KeyAndCsr> csr = NewKeyAndCsr("i-am-the-controller");
  ASSERT_TRUE(csr.ok()) << csr.status().ToString();
  EXPECT_PRED2(Contains, csr->csr_pem, "-----BEGIN CERTIFICATE REQUEST-----");

  Result<std::string> cert = SignWorkerCsr(ca, csr->csr_pem, "worker-7", 30);
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  CertInfo info = Inspect(*cert);
  EXPECT_EQ(info.common_name, "worker-7");
  EXPECT_EQ(info.uri_sans, std::vector<std::string>{"kiln-worker:worker-7"});
  EXPECT_TRUE(info.dns_sans.empty() && info.ip_sans.empty());
  EXPECT_FALSE(info.is_ca);

  EXPECT_TRUE(VerifyCert(*cert, ca.cert_pem, CertPurpose::kClient).ok());
  Status s = VerifyCert(*cert, ca.cert_pem, CertPurpose::kServer);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_FALSE(VerifyCert(*cert, Ca("other CA").cert_pem, CertPurpose::kClient).ok());

  EXPECT_TRUE(KeyMatchesCert(csr->key_pem, *cert));
  Result<KeyAndCsr> another = NewKeyAndCsr("worker-8");
  ASSERT_TRUE(another.ok());
  EXPECT_FALSE(KeyMatchesCert(another->key_pem, *cert));
  EXPECT_FALSE(KeyMatchesCert("not a key", *cert));
  EXPECT_FALSE(KeyMatchesCert(csr->key_pem, "not a certificate"));
}

TEST(X509, WhatACsrAsksForBeyondItsKeyIsIgnored) {
  KeyPair ca = Ca();
  PkeyPtr key = EcKey("P-256");
  std::string csr = MakeCsr(key.get(), key.get(), "controller", /*ask_for_more=*/true);
  Result<std::string> cert = SignWorkerCsr(ca, csr, "worker-1", 30);
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  CertInfo info = Inspect(*cert);
  EXPECT_EQ(info.common_name, "worker-1");
  EXPECT_FALSE(info.is_ca);
  EXPECT_TRUE(info.dns_sans.empty());
  EXPECT_EQ(info.uri_sans, std::vector<std::string>{"kiln-worker:worker-1"});
  EXPECT_TRUE(KeyMatchesCert(KeyPem(key.get()), *cert));
}

TEST(X509, CsrWithABrokenSignatureIsRefused) {
  KeyPair ca = Ca();
  Result<KeyAndCsr> csr = NewKeyAndCsr("worker");
  ASSERT_TRUE(csr.ok());
  Result<std::string> r = SignWorkerCsr(ca, FlipSignatureByte(csr->csr_pem), "worker-1", 30);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_PRED2(Contains, r.status().message(), "signature does not verify");

  // Signed by one key, carrying another's public key.
  PkeyPtr signer = EcKey("P-256"), victim = EcKey("P-256");
  r = SignWorkerCsr(ca, MakeCsr(signer.get(), victim.get(), "worker", false), "worker-1", 30);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_PRED2(Contains, r.status().message(), "signature does not verify");
}

TEST(X509, CsrKeysMustBeP256OrRsa2048) {
  KeyPair ca = Ca();
  PkeyPtr rsa2048 = RsaKey(2048), rsa1024 = RsaKey(1024), p384 = EcKey("P-384");
  Result<std::string> ok = SignWorkerCsr(ca, MakeCsr(rsa2048.get(), rsa2048.get(), "w", false), "worker-1", 30);
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();

  Result<std::string> r = SignWorkerCsr(ca, MakeCsr(rsa1024.get(), rsa1024.get(), "w", false), "worker-1", 30);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_PRED2(Contains, r.status().message(), "RSA of 1024 bits");
  r = SignWorkerCsr(ca, MakeCsr(p384.get(), p384.get(), "w", false), "worker-1", 30);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_PRED2(Contains, r.status().message(), "secp384r1");
}

TEST(X509, GarbageAndOversizeInputIsRefused) {
  KeyPair ca = Ca();
  Result<KeyAndCsr> csr = NewKeyAndCsr("worker");
  ASSERT_TRUE(csr.ok());

  for (const std::string& bad :
       {std::string(), std::string("garbage"), ca.cert_pem,
        std::string("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")}) {
    EXPECT_EQ(SignWorkerCsr(ca, bad, "worker-1", 30).status().code(), Code::kInvalidArgument) << bad;
  }
  Result<std::string> big = SignWorkerCsr(ca, csr->csr_pem + std::string(16 * 1024, '\n'), "worker-1", 30);
  EXPECT_EQ(big.status().code(), Code::kInvalidArgument);
  EXPECT_PRED2(Contains, big.status().message(), "16 KiB");

  for (const char* id : {"", "a b", "worker/1", "w,URI:evil", "\xc3\xa9"}) {
    EXPECT_EQ(SignWorkerCsr(ca, csr->csr_pem, id, 30).status().code(), Code::kInvalidArgument) << id;
  }
  EXPECT_EQ(SignWorkerCsr(ca, csr->csr_pem, std::string(65, 'w'), 30).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(SignWorkerCsr(ca, csr->csr_pem, "worker-1", -1).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(SignWorkerCsr({"garbage", ca.cert_pem}, csr->csr_pem, "worker-1", 30).status().code(),
            Code::kInvalidArgument);

  EXPECT_EQ(InspectCert("garbage").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(InspectCert(csr->csr_pem).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(VerifyCert("garbage", ca.cert_pem, CertPurpose::kServer).code(), Code::kInvalidArgument);
  EXPECT_EQ(VerifyCert(ca.cert_pem, "garbage", CertPurpose::kServer).code(), Code::kInvalidArgument);
  EXPECT_EQ(CreateCa("", 30).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CreateCa(std::string(65, 'c'), 30).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CreateCa("ca", 0).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(NewKeyAndCsr("bad\nname").status().code(), Code::kInvalidArgument);
}

TEST(X509, CertOutsideItsValidityDoesNotVerify) {
  KeyPair ca = Ca();
  Result<KeyPair> server = IssueServerCert(ca, {"localhost"}, 30);
  ASSERT_TRUE(server.ok());

  std::string expired = WithValidity(ca, server->cert_pem, -2 * 86400, -86400);
  EXPECT_LT(Inspect(expired).not_after_unix, std::time(nullptr));
  Status s = VerifyCert(expired, ca.cert_pem, CertPurpose::kServer);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_PRED2(Contains, s.message(), "expired");
  EXPECT_PRED2(Contains, s.message(), "issue a new one");

  std::string future = WithValidity(ca, server->cert_pem, 86400, 2 * 86400);
  s = VerifyCert(future, ca.cert_pem, CertPurpose::kServer);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
  EXPECT_PRED2(Contains, s.message(), "not valid yet");

  // The same certificate re-signed within its validity verifies: the
  // failures above are the dates, not the re-signing.
  EXPECT_TRUE(VerifyCert(WithValidity(ca, server->cert_pem, -60, 86400), ca.cert_pem, CertPurpose::kServer).ok());
  // A tampered certificate does not.
  s = VerifyCert(FlipSignatureByte(server->cert_pem), ca.cert_pem, CertPurpose::kServer);
  EXPECT_EQ(s.code(), Code::kPermissionDenied);
}

TEST(X509, WriteSecretFileSetsTheModeAndReplacesAtomically) {
  test::TempDir tmp;
  const std::string path = tmp.path() + "/secret.key";
  ASSERT_TRUE(WriteSecretFile(path, "first", 0600).ok());
  EXPECT_EQ(ModeOf(path), 0600);
  Result<std::string> data = ReadFile(path);
  ASSERT_TRUE(data.ok());
  EXPECT_EQ(*data, "first");

  // Replacing a readable file: the new one has the new mode, no temp file is left.
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  ASSERT_TRUE(WriteSecretFile(path, "second", 0600).ok());
  EXPECT_EQ(ModeOf(path), 0600);
  EXPECT_EQ(*ReadFile(path), "second");
  EXPECT_EQ(Entries(tmp.path()), std::vector<std::string>{"secret.key"});

  ASSERT_TRUE(WriteSecretFile(tmp.path() + "/public.crt", "", 0644).ok());
  EXPECT_EQ(ModeOf(tmp.path() + "/public.crt"), 0644);

  EXPECT_EQ(WriteSecretFile(tmp.path() + "/missing/x", "x", 0600).code(), Code::kNotFound);
  EXPECT_EQ(WriteSecretFile(path, "x", 010000).code(), Code::kInvalidArgument);
  Result<std::string> missing = ReadFile(tmp.path() + "/nope");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_PRED2(Contains, missing.status().message(), tmp.path() + "/nope");
}

TEST(X509, InitFarmCertDirMakesTheFiveFilesOnce) {
  test::TempDir tmp;
  const std::string dir = tmp.path() + "/certs";
  FarmCaOptions opt;
  opt.hosts = {"farm.example", "10.1.2.3"};
  Result<CertInfo> ca = InitFarmCertDir(dir, opt);
  ASSERT_TRUE(ca.ok()) << ca.status().ToString();
  EXPECT_TRUE(ca->is_ca);
  EXPECT_PRED2(Contains, ca->common_name, "kiln farm CA");

  EXPECT_EQ(ModeOf(dir), 0700);
  EXPECT_EQ(Entries(dir), (std::vector<std::string>{"ca.crt", "ca.key", "secrets.key", "server.crt", "server.key"}));
  EXPECT_EQ(ModeOf(dir + "/ca.key"), 0600);
  EXPECT_EQ(ModeOf(dir + "/secrets.key"), 0600);
  EXPECT_EQ(ModeOf(dir + "/server.key"), 0600);
  EXPECT_EQ(ModeOf(dir + "/ca.crt"), 0644);
  EXPECT_EQ(ModeOf(dir + "/server.crt"), 0644);

  std::string ca_crt = *ReadFile(dir + "/ca.crt"), server_crt = *ReadFile(dir + "/server.crt");
  EXPECT_EQ(Inspect(ca_crt).fingerprint_sha256, ca->fingerprint_sha256);
  EXPECT_TRUE(KeyMatchesCert(*ReadFile(dir + "/ca.key"), ca_crt));
  EXPECT_TRUE(KeyMatchesCert(*ReadFile(dir + "/server.key"), server_crt));
  EXPECT_TRUE(VerifyCert(server_crt, ca_crt, CertPurpose::kServer).ok());
  CertInfo server = Inspect(server_crt);
  EXPECT_NEAR(static_cast<double>(server.not_after_unix), static_cast<double>(std::time(nullptr) + 825 * 86400), 120);
  for (const char* h : {"farm.example", "localhost"}) {
    EXPECT_NE(std::find(server.dns_sans.begin(), server.dns_sans.end(), h), server.dns_sans.end()) << h;
  }
  for (const char* ip : {"10.1.2.3", "127.0.0.1", "::1"}) {
    EXPECT_NE(std::find(server.ip_sans.begin(), server.ip_sans.end(), ip), server.ip_sans.end()) << ip;
  }

  Result<CertInfo> again = InitFarmCertDir(dir, opt);
  EXPECT_EQ(again.status().code(), Code::kAlreadyExists);
  EXPECT_PRED2(Contains, again.status().message(), dir + "/ca.key");
  EXPECT_EQ(*ReadFile(dir + "/ca.crt"), ca_crt);

  opt.force = true;
  Result<CertInfo> replaced = InitFarmCertDir(dir, opt);
  ASSERT_TRUE(replaced.ok()) << replaced.status().ToString();
  EXPECT_NE(replaced->fingerprint_sha256, ca->fingerprint_sha256);
  EXPECT_TRUE(VerifyCert(*ReadFile(dir + "/server.crt"), *ReadFile(dir + "/ca.crt"), CertPurpose::kServer).ok());
  EXPECT_FALSE(VerifyCert(server_crt, *ReadFile(dir + "/ca.crt"), CertPurpose::kServer).ok());
}

TEST(X509, InitFarmCertDirWritesNothingOnBadInput) {
  test::TempDir tmp;
  FarmCaOptions opt;
  opt.hosts = {"not a host"};
  EXPECT_EQ(InitFarmCertDir(tmp.path() + "/certs", opt).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(Entries(tmp.path()).empty());
  EXPECT_EQ(InitFarmCertDir(tmp.path() + "/no/such/parent", FarmCaOptions{}).status().code(), Code::kNotFound);
}

}  // namespace
}  // namespace kiln::auth
