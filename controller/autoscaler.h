#pragma once
// The autoscaler (issue 27, item 3): on the farm's leader only (db/leader.h),
// every `autoscale_interval`, for each managed cluster: read what its queue
// and fleet look like, decide its desired worker count (cluster/scaler.h),
// and carry out the deployer's plan to it (controller/deployer.h), the same
// plan `kiln clusters apply` carries out. Each decision that changes or
// holds back the count, and each plan carried out, is a row of
// cluster_decisions (`kiln clusters history`). A plan whose step failed is
// tried again with backoff (doubling from the interval up to five minutes).
// A new leader goes on from the last decision's count and cooldowns.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "metrics/metrics.h"

namespace kiln::cluster {
class InstanceStore;
class StateStore;
}  // namespace kiln::cluster

namespace kiln::controller {

class Deployer;

struct AutoscalerMetrics {
  metrics::CounterFamily decisions;  // kiln_autoscaler_decisions_total{cluster,action}
  metrics::CounterFamily failures;   // kiln_cluster_apply_failures_total{cluster}
  metrics::GaugeFamily desired;      // kiln_cluster_desired_workers{cluster} (the leader's registry)
};

struct AutoscalerDeps {
  cluster::StateStore& state;
  cluster::InstanceStore& instances;
  Deployer& deployer;
  std::function<int(const std::string& cluster)> queued_actions;  // remote actions waiting here
  std::string controller_id;
  std::chrono::milliseconds interval;  // the loop's; the first backoff
  AutoscalerMetrics metrics;
};

class Autoscaler {
 public:
  explicit Autoscaler(AutoscalerDeps d);
  // One pass over every managed cluster (the leader's loop calls it every
  // interval). Errors are logged and retried at a later pass.
  void Tick();

 private:
  void TickCluster(const std::string& cluster);
  AutoscalerDeps d_;
  struct Memory {
    std::string recorded;  // the last row's action, desired and wish (holds are recorded once)
    std::string error;     // the last failure recorded
    std::string warned;    // the last "cannot read/plan" logged
    int failures = 0;      // in a row
    std::chrono::steady_clock::time_point retry_at{};
  };
  std::map<std::string, Memory> memory_;  // by cluster; only Tick's thread
};

}  // namespace kiln::controller
