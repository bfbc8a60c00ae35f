#pragma once
// JobService: submit, read, list, cancel, watch and explain jobs, for the
// CLI and CI pipelines.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>

namespace kiln::queue {
class JobStore;
}
namespace kiln::cache {
class CompileCacheStore;
}

namespace kiln::controller {

class Cas;
class ProjectCache;
class Signal;

// What JobService uses, and nothing else. All must outlive the service.
struct JobServiceDeps {
  queue::JobStore& jobs;
  ProjectCache& projects;
  Cas& cas;                              // input trees, images, tree diffs
  cache::CompileCacheStore& compiles;    // the compile half of ExplainJob
  Signal& dispatch_wake;                 // a job was queued here
  Signal& remote_wake;                   // ... tell the other controllers
  Signal& job_events;                    // a job changed (wakes WatchJob)
  const std::atomic<bool>& stopping;     // ends WatchJob streams
};

std::unique_ptr<grpc::Service> MakeJobService(const JobServiceDeps& deps);

}  // namespace kiln::controller
