#pragma once
// The controller's content-addressed storage: blobs in a BlobStore, directory
// nodes and images in PostgreSQL, and the collector (the composition root
// owns a Cas; services get only the stores they use).

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <unordered_set>
#include <vector>

#include "cas/image_store.h"
#include "cas/store.h"
#include "cas/tree_store.h"
#include "config/config.h"
#include "controller/metrics.h"

namespace kiln::controller {

class Cas {
 public:
  static Result<std::unique_ptr<Cas>> Open(const config::ControllerConfig& cfg);

  cas::BlobStore& blobs() { return *blobs_; }
  cas::TreeStore& trees() { return *trees_; }
  cas::ImageStore& images() { return *images_; }

  struct GcStats {
    int64_t blobs_removed = 0, bytes_removed = 0, blobs_kept = 0, bytes_kept = 0, trees_removed = 0;
    std::vector<std::string> removed;  // hashes of the removed blobs
  };
  // One collection pass (see docs/architecture.md, "Garbage collection").
  Result<GcStats> Collect();

 private:
  Cas(const config::ControllerConfig& cfg) : cfg_(cfg) {}
  config::ControllerConfig cfg_;
  std::unique_ptr<cas::BlobStore> blobs_;
  std::unique_ptr<cas::TreeStore> trees_;
  std::unique_ptr<cas::ImageStore> images_;
};

// A submitted input tree: every node and blob present, the root and every
// directory entry stating its node's true size, every symlink inside the
// tree, at most max_files files. The error names the offending path or
// digest (ResourceExhausted past max_files, FailedPrecondition if missing,
// InvalidArgument for a wrong size).
// `hashes`, if given, receives every node and file hash of the tree.
// `seen`, if given, says which hashes the caller may use (its scopes):
// the others are refused as if absent.
using SeenFn = std::function<Result<std::unordered_set<std::string>>(const std::vector<std::string>&)>;
Status CheckTree(cas::TreeStore& trees, cas::BlobStore& blobs, const cas::Digest& root, int64_t max_files,
                 const std::string& what, std::vector<std::string>* hashes = nullptr, const SeenFn& seen = {});

// What CasService uses, and nothing else; the stores must outlive it.
class ContentScopes;
class Guard;

struct CasServiceDeps {
  Guard& guard;  // uploads: a submit token or a worker; reads: a read token or a worker
  ContentScopes& scopes;  // what each caller sees of the content
  cas::BlobStore& blobs;
  cas::TreeStore& trees;
  int64_t max_blob_bytes;  // cas_max_blob_bytes
  CasMetrics metrics{};    // uploads and reads
};
std::unique_ptr<grpc::Service> MakeCasService(const CasServiceDeps& deps);

// What ImageService uses, and nothing else; the stores must outlive it.
struct ImageServiceDeps {
  Guard& guard;  // registering and removing: admin; reading: any token or a worker
  ContentScopes& scopes;  // a registered image's blobs are every worker's
  cas::ImageStore& images;
  cas::BlobStore& blobs;  // manifests and configs are read from CAS
};
std::unique_ptr<grpc::Service> MakeImageService(const ImageServiceDeps& deps);

}  // namespace kiln::controller
