#include "worker/images.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "api/convert.h"
#include "cas/oci.h"
#include "cas/unpack.h"
#include "worker/disk_usage.h"

namespace kiln::worker {

namespace {

namespace fs = std::filesystem;
constexpr const char* kComplete = ".kiln-image-complete";
// Where the sandbox mounts things. Made at unpack time: the rootfs is shared
// read-only by every job. (/kiln: the compile cache's wrapper and socket.)
const char* const kMountPoints[] = {"proc", "dev", "sys", "tmp", "src", "etc", "kiln", "kiln/bin", "kiln/run"};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

ImageStore::ImageStore(std::string dir, int64_t max_bytes, LocalCas* cas)
    : dir_(std::move(dir)), max_bytes_(max_bytes), cas_(cas) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    std::string name = e.path().filename();
    if (cas::IsHash(name) && fs::exists(e.path() / kComplete)) {
      // Unpacked by an older kiln-worker: add mount points it did not make
      // (no job runs yet).
      for (const char* d : kMountPoints) {
        struct stat s {};
        std::string p = (e.path() / "rootfs" / d).string();
        if (::lstat(p.c_str(), &s) != 0) fs::create_directories(p, ec);
      }
      auto entry = std::make_shared<Entry>();
      entry->ready = true;
      entry->bytes = DiskBytes(e.path());
      entries_[name] = entry;
    } else {
      spdlog::info("removing unfinished image directory {}", e.path().string());
      fs::remove_all(e.path(), ec);
    }
  }
}

ImageStore::Stats ImageStore::stats() const {
  std::lock_guard g(mu_);
  Stats s = stats_;
  for (const auto& [h, e] : entries_) s.bytes += e->bytes;
  return s;
}

Status ImageStore::Unpack(cas::CasClient& client, v1::ImageService::Stub& images, const std::string& hash, Entry* e) {
  auto began = std::chrono::steady_clock::now();
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetImageRequest req;
  req.set_digest("sha256:" + hash);
  v1::Image img;
  auto gs = images.GetImage(&ctx, req, &img);
  if (!gs.ok()) return api::FromGrpc(gs);
  auto manifest_path = cas_->Blob(client, cas::Digest{hash, img.manifest_size()});
  if (!manifest_path.ok()) return manifest_path.status();
  // The manifest blob is verified against the image digest by the fetch; the
  // layers it names are verified the same way.
  auto m = cas::oci::ParseManifest(ReadAll(*manifest_path));
  if (!m.ok()) return m.status();
  std::string tmp = dir_ + "/" + hash + ".partial";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp + "/rootfs", ec);
  for (const auto& l : m->layers) {
    auto layer = cas_->Blob(client, l.digest);
    if (!layer.ok()) return layer.status();
    auto st = cas::Unpack(*layer, tmp + "/rootfs", cas::UnpackOptions{});
    if (!st.ok()) {
      fs::remove_all(tmp, ec);
      return Status(st.status().code(), "image sha256:" + hash + ", layer " + l.digest.ToString() + ": " +
                                            st.status().message());
    }
  }
  // Mount points, made now: the rootfs is shared read-only by every job.
  for (const char* d : kMountPoints) {
    std::string p = tmp + "/rootfs/" + d;
    struct stat s {};
    if (::lstat(p.c_str(), &s) == 0 && !S_ISDIR(s.st_mode)) {
      fs::remove_all(tmp, ec);
      return InvalidArgument(std::string("image sha256:") + hash + ": /" + d + " is not a directory");
    }
    fs::create_directories(p, ec);
  }
  ::chmod((tmp + "/rootfs/tmp").c_str(), 01777);  // runc gives the tmpfs the mode of its mount point
  std::ofstream(tmp + "/" + kComplete) << "sha256:" << hash << "\n";
  fs::rename(tmp, dir_ + "/" + hash, ec);
  if (ec) return FailedPrecondition("cannot store image " + hash + ": " + ec.message());
  e->bytes = DiskBytes(dir_ + "/" + hash);
  spdlog::info("image sha256:{} unpacked: {} layers, {} bytes, in {} ms", hash, m->layers.size(), e->bytes,
               std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count());
  return Status::Ok();
}

Result<std::string> ImageStore::Acquire(cas::CasClient& client, v1::ImageService::Stub& images,
                                        const std::string& image) {
  auto hash = cas::oci::ParseImageRef(image);
  if (!hash.ok()) return hash.status();
  std::shared_ptr<Entry> e;
  {
    std::lock_guard g(mu_);
    auto& slot = entries_[*hash];
    if (!slot) slot = std::make_shared<Entry>();
    e = slot;
    e->users++;
    e->last_use = ++clock_;
  }
  {
    std::lock_guard u(e->unpack_mu);
    if (!e->ready) {
      Status s = Unpack(client, images, *hash, e.get());
      if (!s.ok()) {
        Release(image);
        return s;
      }
      e->ready = true;
      std::lock_guard g(mu_);
      stats_.unpacks++;
    }
  }
  Trim();
  return dir_ + "/" + *hash + "/rootfs";
}

void ImageStore::Release(const std::string& image) {
  auto hash = cas::oci::ParseImageRef(image);
  if (!hash.ok()) return;
  {
    std::lock_guard g(mu_);
    auto it = entries_.find(*hash);
    if (it != entries_.end() && it->second->users > 0) it->second->users--;
  }
  Trim();
}

void ImageStore::Trim() {
  std::lock_guard g(mu_);
  int64_t total = 0;
  for (const auto& [h, e] : entries_) total += e->bytes;
  while (total > max_bytes_) {
    std::string victim;
    uint64_t oldest = UINT64_MAX;
    for (const auto& [h, e] : entries_)
      if (e->ready && e->users == 0 && e->last_use < oldest) oldest = e->last_use, victim = h;
    if (victim.empty()) return;
    std::error_code ec;
    fs::remove_all(dir_ + "/" + victim, ec);
    spdlog::info("image sha256:{} removed from the image store: {} bytes in use, over image_cache_bytes {}", victim,
                 total, max_bytes_);
    total -= entries_[victim]->bytes;
    entries_.erase(victim);
  }
}

}  // namespace kiln::worker
