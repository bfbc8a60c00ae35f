#include "api/channel.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <grpcpp/support/client_interceptor.h>

namespace kiln::api {
namespace {

// Adds fixed metadata to every call: one place, whatever stub or client
// makes the call (call credentials are not sent over plaintext).
class MetadataInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit MetadataInterceptor(const std::map<std::string, std::string>* md) : md_(md) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      auto* out = methods->GetSendInitialMetadata();
      for (const auto& [k, v] : *md_) out->emplace(k, v);
    }
    methods->Proceed();
  }

 private:
  const std::map<std::string, std::string>* md_;
};

class MetadataFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit MetadataFactory(std::map<std::string, std::string> md) : md_(std::move(md)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo*) override {
    return new MetadataInterceptor(&md_);
  }

 private:
  std::map<std::string, std::string> md_;  // lives as long as the channel (which owns the factory)
};

}  // namespace

std::shared_ptr<grpc::Channel> MakeChannel(const ChannelOptions& o, grpc::ChannelArguments args) {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (o.insecure) {
    creds = grpc::InsecureChannelCredentials();
  } else if (!o.key_file.empty()) {
    namespace ex = grpc::experimental;
    auto files = std::make_shared<ex::FileWatcherCertificateProvider>(o.key_file, o.cert_file, o.ca_file, o.refresh_s);
    ex::TlsChannelCredentialsOptions tls;
    tls.set_certificate_provider(files);
    tls.watch_root_certs();
    tls.watch_identity_key_cert_pairs();
    tls.set_verify_server_certs(true);
    tls.set_certificate_verifier(std::make_shared<ex::HostNameCertificateVerifier>());
    creds = grpc::experimental::TlsCredentials(tls);
    if (!o.server_name.empty()) args.SetSslTargetNameOverride(o.server_name);
  } else {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = o.ca_pem;
    ssl.pem_private_key = o.key_pem;
    ssl.pem_cert_chain = o.cert_pem;
    creds = grpc::SslCredentials(ssl);
    if (!o.server_name.empty()) args.SetSslTargetNameOverride(o.server_name);
  }
  std::map<std::string, std::string> md = o.metadata;
  if (!o.token.empty()) md["authorization"] = "Bearer " + o.token;
  if (md.empty()) return grpc::CreateCustomChannel(o.address, creds, args);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  factories.push_back(std::make_unique<MetadataFactory>(std::move(md)));
  return grpc::experimental::CreateCustomChannelWithInterceptors(o.address, creds, args, std::move(factories));
}

}  // namespace kiln::api
