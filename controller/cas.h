#pragma once
// The controller's content-addressed storage: blobs in a BlobStore, directory
// nodes in PostgreSQL, the checks a submitted tree must pass, and the
// collector.

#include <grpcpp/grpcpp.h>

#include <memory>

#include "cas/image_store.h"
#include "cas/store.h"
#include "cas/tree_store.h"
#include "config/config.h"

namespace kiln::controller {

class Cas {
 public:
  static Result<std::unique_ptr<Cas>> Open(const config::ControllerConfig& cfg);

  cas::BlobStore& blobs() { return *blobs_; }
  cas::TreeStore& trees() { return *trees_; }
  cas::ImageStore& images() { return *images_; }
  const config::ControllerConfig& cfg() const { return cfg_; }

  // A submitted input tree: every node and blob present, every symlink
  // inside the tree, at most cas_max_tree_files files. The error names the
  // offending path.
  Status CheckTree(const cas::Digest& root, const std::string& what);

  struct GcStats {
    int64_t blobs_removed = 0, bytes_removed = 0, blobs_kept = 0, bytes_kept = 0, trees_removed = 0;
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

std::unique_ptr<grpc::Service> MakeCasService(Cas* cas);
std::unique_ptr<grpc::Service> MakeImageService(Cas* cas);

}  // namespace kiln::controller
