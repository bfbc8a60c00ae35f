#pragma once
// The deployer (refresh → plan → apply) of managed clusters: refresh reads
// a cluster's desired state, its provider instances and its workers; plan
// is cluster/plan.h's difference; apply carries the steps out through the
// cluster's provider (today: `process`, kiln-worker processes on this
// host). `kiln clusters plan` changes nothing; `kiln clusters apply` and
// the autoscaler (controller/autoscaler.h) apply the same plans.

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "audit/entry.h"
#include "cluster/instance_store.h"
#include "cluster/plan.h"
#include "common/status.h"

namespace kiln::auth {
class TrustStore;
}
namespace kiln::cluster {
class InstanceStore;
class StateStore;
struct DecisionRow;
}  // namespace kiln::cluster

namespace kiln::controller {

struct DeployerDeps {
  cluster::StateStore& state;
  cluster::InstanceStore& instances;
  auth::TrustStore& trust;        // a join token for each worker started (TLS farms)
  std::function<std::string()> controller_address;  // what started workers dial (known once the server listens)
  std::string tls_dir;            // its ca.crt is the workers' ca_file; empty: insecure
  std::string worker_binary;      // kiln-worker, when provider settings name none
  std::string default_root;       // the process provider's state directories, when settings name none
  std::string controller_id;
  // Called for each instance destroyed because it never registered.
  std::function<void(const std::string& cluster)> on_unregistered;
};

class Deployer {
 public:
  explicit Deployer(DeployerDeps d);

  // Refresh: a managed cluster's desired state, its instances as the rows
  // and the provider see them, its workers, the database's clock and the
  // autoscaler's last decision. NotFound for a cluster that does not exist,
  // FailedPrecondition for one that is not managed.
  struct Refreshed {
    cluster::Spec spec;
    cluster::Actual actual;
    int64_t now_ms = 0;
    std::optional<cluster::LastDecision> last;
  };
  Result<Refreshed> Refresh(const std::string& cluster);
  // The plan from a refresh (pure), to `desired` workers as MakePlan's.
  cluster::Plan PlanFrom(const Refreshed& r, int desired) const;

  // The plan of one managed cluster to `desired` workers (< 0: the
  // autoscaler's last decision, else as many as serve now; within
  // min..max). NotFound for a cluster that does not exist,
  // FailedPrecondition for one that is not managed.
  Result<cluster::Plan> MakePlan(const std::string& cluster, int desired = -1);
  // Every managed cluster's plan, by name.
  Result<std::vector<cluster::Plan>> PlanAll();

  // The newest `limit` autoscaler decisions of a cluster, newest first.
  // NotFound for a cluster that does not exist (an unmanaged one has none).
  Result<std::vector<cluster::DecisionRow>> History(const std::string& cluster, int limit);

  // Held from plan to apply, so that two applies (two admins, a retry
  // while the first still runs, the autoscaler) never both start the
  // workers one plan lacks: one at a time on this controller (a mutex),
  // and in the farm (InstanceStore::HoldApplyLock). Without the farm's lock
  // (the database away, another apply holding it too long) nothing may be
  // applied: `status` says why.
  struct Serial {
    std::unique_lock<std::mutex> local;
    std::unique_ptr<cluster::InstanceStore::ApplyLock> farm;
    Status status;
  };
  Serial Serialize();

  // Carries out `plan`, under `serial` (Serialize's, with its status OK).
  // A step that fails is logged and left for the next apply (the rows stay
  // consistent with what runs); the others are still tried, unless the
  // farm's lock is found lost before one (then none after it is). Recorded
  // as cluster.apply by `who` when any step was done.
  struct Applied {
    std::vector<std::string> steps;  // those done, as "start c-1a2b3c", "drain c-4d5e6f (idle for 300s, ...)"
    Status error;                    // the first step that failed; OK if none
  };
  Applied Apply(const cluster::Plan& plan, const audit::Who& who, const Serial& serial);

 private:
  DeployerDeps d_;
  std::mutex apply_mu_;
};

}  // namespace kiln::controller
