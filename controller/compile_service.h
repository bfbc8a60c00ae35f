#pragma once
// The compile cache on the controller: the worker RPCs that read and write
// it on behalf of a running job (answered by WorkerService), CacheService for
// clients (kiln cache stats, kiln cache impact), and the compile half of
// ExplainJob. Everything a worker sends is checked before it is stored.

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/status.h"
#include "controller/metrics.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::cache {
class CompileCacheStore;
}
namespace kiln::cas {
class BlobStore;
}

namespace kiln::controller {

class ProjectCache;

// The compile cache on behalf of `worker_id` (the caller's certificate):
// only for the attempt of a job that worker runs.
grpc::Status LookupCompile(cache::CompileCacheStore& store, const std::string& worker_id,
                           const v1::LookupCompileRequest* req, v1::LookupCompileResponse* resp);
grpc::Status LookupCompileResult(cache::CompileCacheStore& store, const std::string& worker_id,
                                 const v1::LookupCompileResultRequest* req, v1::LookupCompileResultResponse* resp);
// The object must already be in `blobs` (FailedPrecondition otherwise).
grpc::Status StoreCompile(cache::CompileCacheStore& store, cas::BlobStore& blobs, const std::string& worker_id,
                          const v1::StoreCompileRequest* req, v1::StoreCompileResponse* resp);
// A stored record counts its units in `m`.
grpc::Status RecordCompiles(cache::CompileCacheStore& store, const std::string& worker_id,
                            const v1::RecordCompilesRequest* req, const CompileMetrics& m);
// Adds the job's compile cache record to an explanation.
Status ExplainCompiles(cache::CompileCacheStore& store, int64_t job_id, size_t max_events, v1::Explanation* resp);

// CacheService uses these, and nothing else; both must outlive it.
class Guard;

struct CacheServiceDeps {
  Guard& guard;
  cache::CompileCacheStore& compiles;
  ProjectCache& projects;  // a project's cache scope
};

std::unique_ptr<grpc::Service> MakeCacheService(const CacheServiceDeps& deps);

}  // namespace kiln::controller
