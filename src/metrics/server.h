#pragma once
// Serves registries on http://ADDRESS/metrics (Prometheus' text format).

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "metrics/metrics.h"

namespace kiln::metrics {

class Server {
 public:
  // Listens on `address` (host:port; port 0 picks a free one) and serves
  // the registries, in order (config::CheckMetricsAddress checks the
  // address's form). Unavailable if it cannot bind.
  static Result<std::unique_ptr<Server>> Start(const std::string& address, const std::vector<Registry*>& registries);
  ~Server();

  // host:port actually bound.
  const std::string& address() const { return address_; }

  struct Impl;

 private:
  Server(std::unique_ptr<Impl> impl, std::string address);
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

}  // namespace kiln::metrics
