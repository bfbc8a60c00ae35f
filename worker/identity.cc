#include "worker/identity.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cctype>
#include <cstdio>

#include <cstdlib>
#include <filesystem>

#include "api/channel.h"
#include "api/convert.h"
#include "auth/token.h"
#include "auth/x509.h"
#include "common/util.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::worker {
namespace fs = std::filesystem;

namespace {

Result<std::string> JoinToken(const config::WorkerConfig& cfg) {
  if (!cfg.join_token_file.empty()) {
    auto t = auth::ReadFile(cfg.join_token_file);
    if (!t.ok()) return FailedPrecondition("join_token_file: " + t.status().message());
    return Trim(*t);
  }
  if (const char* t = std::getenv("KILN_JOIN_TOKEN"); t != nullptr && *t != '\0') return Trim(t);
  return FailedPrecondition(
      "this worker is not enrolled (no " + cfg.work_dir +
      "/tls/worker.crt) and has no join token: create one with kiln workers join-token (or kiln-controller "
      "join-token on the controller's host) and give it in join_token_file or KILN_JOIN_TOKEN");
}

Result<Identity> Load(const std::string& dir) {
  Identity who;
  auto key = auth::ReadFile(dir + "/worker.key");
  auto cert = auth::ReadFile(dir + "/worker.crt");
  // A renewal interrupted between its renames: the new key is in place, its
  // certificate still pending.
  if (key.ok() && cert.ok() && !auth::KeyMatchesCert(*key, *cert)) {
    auto next = auth::ReadFile(dir + "/worker.crt.next");
    if (next.ok() && auth::KeyMatchesCert(*key, *next) && ::rename((dir + "/worker.crt.next").c_str(), (dir + "/worker.crt").c_str()) == 0)
      cert = next;
  }
  auto ca = auth::ReadFile(dir + "/ca.crt");
  if (!key.ok()) return key.status();
  if (!cert.ok()) return cert.status();
  if (!ca.ok()) return ca.status();
  auto info = auth::InspectCert(*cert);
  if (!info.ok()) return InvalidArgument(dir + "/worker.crt: " + info.status().message());
  if (!auth::KeyMatchesCert(*key, *cert)) return InvalidArgument(dir + "/worker.key does not belong to worker.crt");
  who.id = info->common_name;
  who.key_pem = *key;
  who.cert_pem = *cert;
  who.ca_pem = *ca;
  who.issued_at_ms = info->not_before_unix * 1000;
  who.expires_at_ms = info->not_after_unix * 1000;
  return who;
}

}  // namespace

int64_t RenewAtMs(const config::WorkerConfig& cfg, const Identity& who) {
  if (cfg.cert_renew_before.count() > 0) return who.expires_at_ms - cfg.cert_renew_before.count();
  return who.issued_at_ms + (who.expires_at_ms - who.issued_at_ms) * 2 / 3;
}

Status Renew(const config::WorkerConfig& cfg, v1::WorkerService::StubInterface& stub, Identity& who) {
  auto csr = auth::NewKeyAndCsr(who.id.substr(0, 64));
  if (!csr.ok()) return csr.status();
  v1::RenewRequest req;
  req.set_csr_pem(csr->csr_pem);
  v1::EnrollResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  ctx.set_wait_for_ready(true);
  grpc::Status s = stub.RenewCertificate(&ctx, req, &resp);
  if (!s.ok()) return Status(api::FromGrpc(s).code(), "certificate renewal failed: " + s.error_message());
  if (!auth::KeyMatchesCert(csr->key_pem, resp.cert_pem())) return Internal("the renewed certificate is not for our key");
  auto info = auth::InspectCert(resp.cert_pem());
  if (!info.ok() || info->common_name != who.id) return Internal("the renewed certificate names another worker");
  // Key and certificate are renamed into place one after the other; the
  // file watcher skips a pair that does not match, and Load takes the
  // pending certificate when a crash fell between the two renames.
  const std::string dir = cfg.work_dir + "/tls";
  KILN_RETURN_IF_ERROR(auth::WriteSecretFile(dir + "/worker.crt.next", resp.cert_pem(), 0644));
  KILN_RETURN_IF_ERROR(auth::WriteSecretFile(dir + "/worker.key", csr->key_pem, 0600));
  if (::rename((dir + "/worker.crt.next").c_str(), (dir + "/worker.crt").c_str()) != 0)
    return Internal("cannot install the renewed certificate in " + dir);
  KILN_RETURN_IF_ERROR(auth::WriteSecretFile(dir + "/ca.crt", resp.ca_pem(), 0644));
  who.key_pem = csr->key_pem;
  who.cert_pem = resp.cert_pem();
  who.ca_pem = resp.ca_pem();
  who.issued_at_ms = info->not_before_unix * 1000;
  who.expires_at_ms = info->not_after_unix * 1000;
  spdlog::info("certificate renewed worker_id={} serial={} expires_at_ms={}", who.id, info->serial_hex,
               who.expires_at_ms);
  return Status::Ok();
}

std::shared_ptr<grpc::Channel> ControllerChannel(const config::WorkerConfig& cfg, const Identity& who,
                                                 const grpc::ChannelArguments& args) {
  api::ChannelOptions o;
  o.address = cfg.controller;
  o.insecure = cfg.insecure;
  o.ca_pem = who.ca_pem;
  if (!who.cert_pem.empty()) {
    // Watched files: a renewed certificate is used from the next connection on.
    const std::string dir = cfg.work_dir + "/tls";
    o.key_file = dir + "/worker.key";
    o.cert_file = dir + "/worker.crt";
    o.ca_file = dir + "/ca.crt";
  }
  o.server_name = cfg.tls_server_name;
  if (cfg.insecure) o.metadata["kiln-worker-id"] = who.id;
  return api::MakeChannel(o, args);
}

Result<Identity> LoadOrEnroll(const config::WorkerConfig& cfg, const std::string& hostname,
                              const grpc::ChannelArguments& args) {
  if (cfg.insecure) {
    spdlog::warn("insecure = true: talking plaintext to controller {}; this worker is trusted by the name it gives",
                 cfg.controller);
    return Identity{auth::NewWorkerId(hostname), "", "", "", 0, 0};
  }
  const std::string dir = cfg.work_dir + "/tls";
  if (fs::exists(dir + "/worker.crt")) {
    auto who = Load(dir);
    if (!who.ok()) return FailedPrecondition("cannot load this worker's certificate: " + who.status().message() +
                                             " (remove " + dir + " and enrol again with a new join token)");
    if (who->expires_at_ms <= NowUnixMs()) {
      return FailedPrecondition("this worker's certificate (" + dir + "/worker.crt) expired: remove " + dir +
                                " and enrol again with a new join token");
    }
    return who;
  }
  auto token = JoinToken(cfg);
  if (!token.ok()) return token.status();
  if (cfg.ca_file.empty()) {
    return FailedPrecondition("ca_file is not set: give the farm's CA certificate (the controller's tls_dir/ca.crt) "
                              "so this worker can check the controller before it enrols");
  }
  auto ca = auth::ReadFile(cfg.ca_file);
  if (!ca.ok()) return FailedPrecondition("ca_file: " + ca.status().message());
  auto csr = auth::NewKeyAndCsr(hostname.substr(0, 64));
  if (!csr.ok()) return csr.status();

  Identity anon{"", "", "", *ca, 0, 0};
  auto stub = v1::EnrollService::NewStub(ControllerChannel(cfg, anon, args));
  v1::EnrollRequest req;
  req.set_join_token(*token);
  req.set_csr_pem(csr->csr_pem);
  req.set_hostname(hostname);
  v1::EnrollResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  ctx.set_wait_for_ready(true);
  grpc::Status s = stub->Enroll(&ctx, req, &resp);
  if (!s.ok()) {
    return Status(api::FromGrpc(s).code(), "enrolment at controller " + cfg.controller + " failed: " + s.error_message());
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  ::chmod(dir.c_str(), 0700);
  // The key first: a certificate without its key would be useless.
  KILN_RETURN_IF_ERROR(auth::WriteSecretFile(dir + "/worker.key", csr->key_pem, 0600));
  KILN_RETURN_IF_ERROR(auth::WriteSecretFile(dir + "/ca.crt", resp.ca_pem(), 0644));
  KILN_RETURN_IF_ERROR(auth::WriteSecretFile(dir + "/worker.crt", resp.cert_pem(), 0644));
  spdlog::info("enrolled worker_id={} certificate expires_at_ms={}", resp.worker_id(), resp.expires_at_ms());
  return Load(dir);
}

}  // namespace kiln::worker
