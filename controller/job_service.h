#pragma once
// JobService: submit, read, list, cancel, watch and explain jobs, for the
// CLI and CI pipelines.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "controller/metrics.h"

namespace kiln::auth {
class SecretBox;
}
namespace kiln::queue {
class JobStore;
}
namespace kiln::cache {
class CompileCacheStore;
}
namespace kiln::cas {
class BlobStore;
class ImageStore;
class TreeStore;
}  // namespace kiln::cas

namespace kiln::controller {

class ContentScopes;
class Guard;
class ProjectCache;
class Signal;

// What JobService uses, and nothing else. All must outlive the service.
struct JobServiceDeps {
  Guard& guard;                          // who may act on which project
  ContentScopes& scopes;                 // an input tree must be in the project's scope
  queue::JobStore& jobs;
  ProjectCache& projects;
  cas::TreeStore& trees;                 // input trees are checked, and diffed by ExplainJob
  cas::BlobStore& blobs;                 // ... their files must be in CAS
  cas::ImageStore& images;               // a job's image must be imported
  int64_t max_tree_files;                // cas_max_tree_files
  cache::CompileCacheStore& compiles;    // the compile half of ExplainJob
  const auth::SecretBox* secrets;        // seals secret env; null: the farm has no secrets key
  Signal& dispatch_wake;                 // a job was queued here
  Signal& remote_wake;                   // ... tell the other controllers
  Signal& job_events;                    // a job changed (wakes WatchJob)
  const std::atomic<bool>& stopping;     // ends WatchJob streams
  JobMetrics metrics{};                  // submits and action cache lookups
};

std::unique_ptr<grpc::Service> MakeJobService(const JobServiceDeps& deps);

}  // namespace kiln::controller
