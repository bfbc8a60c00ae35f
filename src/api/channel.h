#pragma once
// Channels to the controller, TLS by default: the farm's CA to check the
// controller, optionally a client certificate (workers), and metadata sent
// on every call (an API token; without TLS, a worker's name).

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <string>

namespace kiln::api {

struct ChannelOptions {
  std::string address;
  bool insecure = false;         // plaintext (a controller with insecure = true)
  std::string ca_pem;            // the CA certificates trusted for the controller's certificate
  std::string key_pem, cert_pem; // a client certificate (enrolled workers)
  // Or files, watched: a renewed certificate or a new CA bundle written
  // there is used from the next connection on, without a new channel.
  std::string key_file, cert_file, ca_file;
  unsigned refresh_s = 60;
  std::string server_name;       // the name the controller's certificate must carry; empty: from address
  std::string token;             // sent as "authorization: Bearer <token>"
  std::map<std::string, std::string> metadata;  // more metadata on every call
};

// A channel with those credentials; every call on it carries the metadata.
std::shared_ptr<grpc::Channel> MakeChannel(const ChannelOptions& o, grpc::ChannelArguments args);

}  // namespace kiln::api
