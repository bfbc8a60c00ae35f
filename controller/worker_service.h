#pragma once
// WorkerService: one bidirectional stream per connected worker (register,
// heartbeats, job updates, logs, workspace reports), and the compile cache's
// worker RPCs.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "controller/health.h"
#include "controller/metrics.h"

namespace kiln::queue {
class DispatchStore;
class WorkerStore;
}  // namespace kiln::queue
namespace kiln::cache {
class CompileCacheStore;
}
namespace kiln::cas {
class BlobStore;
}

namespace kiln::controller {

class ActionBroker;
class ContentScopes;
class Enroller;
class Guard;
class Registry;
class ReportQueue;
class Signal;

// What WorkerService uses, and nothing else. All must outlive the service.
struct WorkerServiceDeps {
  Guard& guard;                         // a worker is its certificate
  Enroller& enroller;                   // certificate renewal
  ContentScopes& scopes;                // outputs join their job's scope
  queue::WorkerStore& workers;          // registration, heartbeats, workspaces
  queue::DispatchStore& dispatch;       // a reconnecting worker's jobs are adopted
  cache::CompileCacheStore& compiles;   // the compile cache RPCs
  cas::BlobStore& blobs;                // a stored compile's object must be in CAS
  Registry& registry;                   // this controller's streams
  ActionBroker& actions;                // remote actions: queued here, run on workers' slots
  ReportQueue& reports;                 // updates and logs, for the applier
  Signal& dispatch_wake;                // a worker came, or a slot freed
  const std::atomic<bool>& stopping;
  std::string controller_id;
  std::chrono::milliseconds lease;
  std::chrono::milliseconds heartbeat_interval;
  CompileMetrics compile_metrics{};     // what the workers' compile records count
  JobMetrics job_metrics{};             // jobs a reconnecting worker's adoption ends
  // The health checker's thresholds (controller/health.h), replaced on SIGHUP.
  std::shared_ptr<const HealthSettings> health = std::make_shared<HealthSettings>();
};

std::unique_ptr<grpc::Service> MakeWorkerService(const WorkerServiceDeps& deps);

}  // namespace kiln::controller
