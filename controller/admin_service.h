#pragma once
// AdminService: projects, clusters, workers, warm workspaces, trust, the
// audit trail and the farm's history (kiln stats), for operators.

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

namespace kiln::audit {
class AuditStore;
}
namespace kiln::auth {
class TrustStore;
}
namespace kiln::cluster {
class StateStore;
}
namespace kiln::queue {
class CatalogStore;
class StatsStore;
class WorkerStore;
}  // namespace kiln::queue

namespace kiln::controller {

class Deployer;
class Guard;
class Signal;

// What AdminService uses, and nothing else. All must outlive the service.
struct AdminServiceDeps {
  Guard& guard;
  auth::TrustStore& trust;                               // tokens, join tokens, worker certificates
  std::function<bool(const std::string&)> disconnect;    // closes a worker's stream here, if it has one
  queue::CatalogStore& catalog;
  queue::WorkerStore& workers;
  Signal& config_wake;    // a project's configuration changed here
  Signal& dispatch_wake;  // a mapping changed: queued jobs may be claimable
  audit::AuditStore& audit;  // ListAudit (the stores above write the rows)
  queue::StatsStore& stats;  // GetStats (kiln stats): the farm's history
  cluster::StateStore* cluster_state = nullptr;  // clusters' desired state; null: SetClusterState is UNIMPLEMENTED
  Deployer* deployer = nullptr;                  // kiln clusters plan / apply; null: UNIMPLEMENTED
};

std::unique_ptr<grpc::Service> MakeAdminService(const AdminServiceDeps& deps);

}  // namespace kiln::controller
