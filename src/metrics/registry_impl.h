#pragma once
// Private to src/metrics: a Registry's prometheus-cpp side.

#include <prometheus/collectable.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "metrics/metrics.h"

namespace kiln::metrics {

// What the exposer collects: the scrape hooks run first, then the families.
struct Registry::Impl : prometheus::Collectable {
  std::vector<prometheus::MetricFamily> Collect() const override;

  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  mutable std::mutex mu;  // hooks and when (a scrape runs them under it: one scrape at a time)
  std::vector<std::function<void()>> hooks;
  std::function<bool()> when;
};

}  // namespace kiln::metrics
