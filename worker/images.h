#pragma once
// The worker's image store: each image (by manifest digest) is fetched from
// CAS, verified and unpacked once into work_dir/images/<hex>, shared
// read-only by the jobs that run in it, and removed least recently used first
// past a size cap.

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "cas/client.h"
#include "worker/local_cas.h"

namespace kiln::worker {

class ImageStore {
 public:
  ImageStore(std::string dir, int64_t max_bytes, LocalCas* cas);

  // The rootfs of `image` ("sha256:<hex>"), unpacked once; held until
  // Release. Two jobs asking for a new image unpack it once.
  Result<std::string> Acquire(cas::CasClient& client, v1::ImageService::Stub& images, const std::string& image);
  void Release(const std::string& image);

  struct Stats {
    int64_t unpacks = 0;
    int64_t bytes = 0;  // of the unpacked images now on disk
  };
  Stats stats() const;

 private:
  struct Entry {
    std::mutex unpack_mu;
    bool ready = false;
    int users = 0;
    uint64_t last_use = 0;
    int64_t bytes = 0;
  };
  Status Unpack(cas::CasClient& client, v1::ImageService::Stub& images, const std::string& hash, Entry* e);
  void Trim();

  std::string dir_;
  int64_t max_bytes_;
  LocalCas* cas_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Entry>> entries_;
  uint64_t clock_ = 0;
  Stats stats_;
};

}  // namespace kiln::worker
