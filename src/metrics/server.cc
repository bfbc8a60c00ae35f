#include "metrics/server.h"

#include <prometheus/exposer.h>


#include "metrics/registry_impl.h"

namespace kiln::metrics {

struct Server::Impl {
  std::unique_ptr<prometheus::Exposer> exposer;
  std::vector<std::shared_ptr<Registry::Impl>> keep;
};

Server::Server(std::unique_ptr<Impl> impl, std::string address) : impl_(std::move(impl)), address_(std::move(address)) {}
Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::Start(const std::string& address, const std::vector<Registry*>& registries) {
  auto impl = std::make_unique<Impl>();
  try {
    // One thread: scrapes are rare, and the hooks take one at a time anyway.
    impl->exposer = std::make_unique<prometheus::Exposer>(address, 1);
  } catch (const std::exception& e) {
    return Unavailable("cannot serve metrics on " + address + ": " + e.what() +
                       " (address in use or not this machine's: set metrics_address)");
  }
  for (Registry* r : registries) {
    impl->keep.push_back(r->impl());
    impl->exposer->RegisterCollectable(std::static_pointer_cast<prometheus::Collectable>(r->impl()));
  }
  auto ports = impl->exposer->GetListeningPorts();
  std::string bound = address.substr(0, address.rfind(':') + 1) + std::to_string(ports.empty() ? 0 : ports.front());
  return std::unique_ptr<Server>(new Server(std::move(impl), bound));
}

}  // namespace kiln::metrics
