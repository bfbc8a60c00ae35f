#pragma once
// Talking to the controller's CasService: upload what it lacks of a tree,
// fetch trees and blobs. Every byte fetched is verified against its digest.

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cas/walk.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::cas {

struct UploadStats {
  int64_t blobs = 0, blob_bytes = 0;  // blobs that crossed the wire
  int64_t nodes = 0, node_bytes = 0;  // directory nodes that crossed the wire
  int64_t missing_checked = 0;        // digests asked about
};

struct FetchedTree {
  Digest root;
  std::vector<std::pair<Digest, Directory>> nodes;
  std::unordered_map<std::string, const Directory*> by_hash() const;
};

class CasClient {
 public:
  explicit CasClient(std::shared_ptr<grpc::Channel> channel, std::chrono::seconds rpc_timeout = std::chrono::seconds(300));

  // Uploads every blob and node of `t` that CAS lacks (blobs before nodes).
  Result<UploadStats> UploadTree(const BuiltTree& t);
  // Uploads blobs given by a reader (for files: their path). Streams those
  // over 1 MiB, resuming an interrupted stream up to 3 times.
  Status UploadBlob(const Digest& d, const std::string& path, UploadStats* stats);

  Result<FetchedTree> GetTree(const Digest& root);
  // Writes each blob to the path `dest(d)` returns (created with mode 0644,
  // via a temporary file and rename); verifies every digest.
  Status FetchBlobs(const std::vector<Digest>& blobs, const std::function<std::string(const Digest&)>& dest);

  v1::CasService::Stub& stub() { return *stub_; }

 private:
  std::unique_ptr<grpc::ClientContext> Ctx() const;
  Status StreamFile(const Digest& d, const std::string& path);
  Status ReadToFile(const Digest& d, const std::string& path);

  std::unique_ptr<v1::CasService::Stub> stub_;
  std::chrono::seconds timeout_;
};

// Writes the tree into `dest` (created if missing): directories, files
// (replacing what is there, atomically per file), symlinks. Files come from
// `fetch_into(digest, path)`; the caller decides whether to copy, link or
// download.
struct MaterializeStats {
  int64_t files = 0, dirs = 0, links = 0, bytes = 0;
};
Result<MaterializeStats> WriteTree(const FetchedTree& tree, const std::string& dest,
                                   const std::function<Status(const Entry&, const std::string& path)>& place_file);

}  // namespace kiln::cas
