#include "cas/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <random>
#include <unordered_map>

#include "common/write_all.h"

namespace kiln::cas {

namespace {

namespace fs = std::filesystem;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

std::string RandomId() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string s(16, '0');
  uint64_t v = rng();
  for (auto& c : s) c = kHex[v & 15], v >>= 4;
  return s;
}

bool ValidUploadId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  return true;
}

Status WriteAll(int fd, std::string_view data, const std::string& path) {
  if (!kiln::WriteAll(fd, data)) return Unavailable(Errno("cannot write " + path));
  return Status::Ok();
}

Status Mismatch(const Digest& want, const Digest& got) {
  return InvalidArgument("uploaded content does not match its digest: expected " + want.ToString() + ", got " +
                         got.ToString());
}

class DirStore;

class DirWriter : public BlobWriter {
 public:
  DirWriter(DirStore* store, Digest d, std::string tmp, int fd, int64_t size)
      : store_(store), d_(std::move(d)), tmp_(std::move(tmp)), fd_(fd), size_(size) {}
  ~DirWriter() override {
    if (fd_ >= 0) ::close(fd_);
  }
  int64_t committed() const override { return size_; }
  Status Append(std::string_view data) override {
    if (size_ + static_cast<int64_t>(data.size()) > d_.size)
      return InvalidArgument("upload of " + d_.ToString() + " is longer than the digest's size");
    if (auto s = WriteAll(fd_, data, tmp_); !s.ok()) return s;
    size_ += static_cast<int64_t>(data.size());
    return Status::Ok();
  }
  Status Commit() override;

 private:
  DirStore* store_;
  Digest d_;
  std::string tmp_;
  int fd_;
  int64_t size_;
};

class DirStore : public BlobStore {
 public:
  DirStore(std::string root, int64_t touch_after_s) : root_(std::move(root)), touch_after_s_(touch_after_s) {}

  std::string PathOf(const Digest& d) const { return root_ + "/blobs/" + d.hash.substr(0, 2) + "/" + d.hash; }
  std::string UploadPath(const Digest& d, const std::string& id) const {
    return root_ + "/uploads/" + d.hash + "." + id;
  }

  // A blob seen within the last touch_after_s is taken as present without
  // a stat: its mtime was then at most touch_after_s old, and the collector
  // takes only blobs unused for cas_min_age (at least 4 times as long). A
  // submit of a large tree asks for thousands of blobs, mostly the same
  // ones as the last submit.
  bool Has(const Digest& d) override {
    const int64_t now = ::time(nullptr);
    const std::string key = d.Key();
    {
      std::lock_guard g(seen_mu_);
      auto it = seen_.find(key);
      if (it != seen_.end() && it->second >= now - touch_after_s_) return true;
    }
    std::string p = PathOf(d);
    struct stat s {};
    // A size other than the claimed one: not this blob (the claim is wrong,
    // or the copy is damaged); either way absent, and never deleted here.
    if (::stat(p.c_str(), &s) != 0 || s.st_size != d.size) return false;
    // Mark it used. If the collector took it meanwhile, it is absent.
    if (s.st_mtime < now - touch_after_s_ && ::utimensat(AT_FDCWD, p.c_str(), nullptr, 0) != 0) return false;
    std::lock_guard g(seen_mu_);
    if (seen_.size() >= kMaxSeen) seen_.clear();  // a bound, not a policy: the next asks stat again
    seen_[key] = now;
    return true;
  }

  // Moves a verified, flushed temporary file into place.
  Status Publish(const Digest& d, const std::string& tmp) {
    std::string p = PathOf(d);
    std::error_code ec;
    fs::create_directories(fs::path(p).parent_path(), ec);
    if (::rename(tmp.c_str(), p.c_str()) != 0) {
      auto s = Unavailable(Errno("cannot store blob " + d.ToString()));
      ::unlink(tmp.c_str());
      return s;
    }
    return Status::Ok();
  }

  // Writes a verified temporary file; returns its path. Flushed to disk
  // (sync), or with its write to disk started (a batch flushes it later).
  Result<std::string> WriteTemp(const Digest& d, std::string_view data, bool sync) {
    if (static_cast<int64_t>(data.size()) != d.size || DigestOf(data) != d) return Mismatch(d, DigestOf(data));
    std::string tmp = root_ + "/uploads/put-" + RandomId();
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0) return Unavailable(Errno("cannot create " + tmp));
    Status s = WriteAll(fd, data, tmp);
    if (s.ok() && sync && ::fsync(fd) != 0) s = Unavailable(Errno("cannot flush " + tmp));
    if (s.ok() && !sync) (void)::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);  // a hint: its failure is the flush's
    ::close(fd);
    if (!s.ok()) {
      ::unlink(tmp.c_str());
      return s;
    }
    return tmp;
  }

  Status Put(const Digest& d, std::string_view data) override {
    if (Has(d)) return Status::Ok();
    auto tmp = WriteTemp(d, data, /*sync=*/true);
    if (!tmp.ok()) return tmp.status();
    return Publish(d, *tmp);
  }

  std::vector<Status> PutMany(const std::vector<std::pair<Digest, std::string_view>>& blobs) override {
    std::vector<Status> out(blobs.size());
    std::vector<std::pair<size_t, std::string>> temps;
    for (size_t i = 0; i < blobs.size(); ++i) {
      if (Has(blobs[i].first)) continue;
      auto tmp = WriteTemp(blobs[i].first, blobs[i].second, /*sync=*/false);
      if (!tmp.ok()) out[i] = tmp.status();
      else temps.emplace_back(i, *tmp);
    }
    if (temps.empty()) return out;
    // Each file flushed, then the renames. Their writes are under way
    // already, so the first flush commits the batch and the rest find it
    // done. Not syncfs(): that also waits for every other dirty file on the
    // file system (a build's outputs on a build host: 0.4 s for one small
    // blob after a large build).
    for (auto& [i, tmp] : temps) {
      int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
      Status synced = fd >= 0 && ::fsync(fd) == 0 ? Status::Ok() : Unavailable(Errno("cannot flush " + tmp + " to disk"));
      if (fd >= 0) ::close(fd);
      if (!synced.ok()) {
        out[i] = synced;
        ::unlink(tmp.c_str());
      } else {
        out[i] = Publish(blobs[i].first, tmp);
      }
    }
    return out;
  }

  Result<std::string> Read(const Digest& d, int64_t offset, int64_t limit) override {
    std::string p = PathOf(d);
    int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) return NotFound("blob " + d.ToString() + " is not in the store");
      return Unavailable(Errno("cannot open blob " + d.ToString()));
    }
    struct stat s {};
    ::fstat(fd, &s);
    if (s.st_size != d.size) {
      ::close(fd);
      return NotFound("blob " + d.ToString() + " is not in the store (damaged copy)");
    }
    if (offset < 0 || offset > d.size) {
      ::close(fd);
      return OutOfRange("read offset " + std::to_string(offset) + " is outside blob " + d.ToString());
    }
    int64_t n = d.size - offset;
    if (limit > 0 && limit < n) n = limit;
    std::string out(static_cast<size_t>(n), '\0');
    int64_t got = 0;
    while (got < n) {
      ssize_t r = ::pread(fd, out.data() + got, static_cast<size_t>(n - got), offset + got);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        ::close(fd);
        return Unavailable(Errno("cannot read blob " + d.ToString()));
      }
      got += r;
    }
    ::close(fd);
    return out;
  }

  Result<std::unique_ptr<BlobWriter>> OpenWriter(const Digest& d, const std::string& upload_id) override {
    if (!ValidUploadId(upload_id))
      return InvalidArgument("upload id must be 1 to 64 letters, digits, '-' or '_'");
    std::string tmp = UploadPath(d, upload_id);
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return Unavailable(Errno("cannot create " + tmp));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return FailedPrecondition("upload " + upload_id + " of " + d.ToString() +
                                " is being written by another stream; wait for it or use another upload id");
    }
    struct stat s {};
    ::fstat(fd, &s);
    return std::unique_ptr<BlobWriter>(std::make_unique<DirWriter>(this, d, tmp, fd, s.st_size));
  }

  int64_t PendingSize(const Digest& d, const std::string& upload_id) override {
    if (!ValidUploadId(upload_id)) return 0;
    struct stat s {};
    if (::stat(UploadPath(d, upload_id).c_str(), &s) != 0) return 0;
    return s.st_size;
  }

  void ForEach(const std::function<void(const BlobInfo&)>& fn) override {
    std::error_code ec;
    for (const auto& shard : fs::directory_iterator(root_ + "/blobs", ec)) {
      std::error_code ec2;
      for (const auto& f : fs::directory_iterator(shard.path(), ec2)) {
        std::string name = f.path().filename();
        if (!IsHash(name)) continue;
        struct stat s {};
        if (::stat(f.path().c_str(), &s) != 0) continue;
        fn(BlobInfo{Digest{name, s.st_size}, s.st_mtime});
      }
    }
  }

  bool RemoveIfUnused(const Digest& d, int64_t unused_since_s) override {
    {
      std::lock_guard g(seen_mu_);
      seen_.erase(d.Key());
    }
    std::string p = PathOf(d);
    struct stat s {};
    if (::stat(p.c_str(), &s) != 0 || s.st_mtime >= unused_since_s) return false;
    // Move it aside first, then look again: a Has() that marked it used in
    // between either saw it moved (and said absent) or left a fresh mtime,
    // in which case it goes back.
    std::string aside = root_ + "/uploads/gc-" + d.hash;
    if (::rename(p.c_str(), aside.c_str()) != 0) return false;
    if (::stat(aside.c_str(), &s) == 0 && s.st_mtime >= unused_since_s) {
      ::rename(aside.c_str(), p.c_str());
      return false;
    }
    return ::unlink(aside.c_str()) == 0;
  }

  int RemoveStaleUploads(int64_t older_than_s) override {
    int n = 0;
    std::error_code ec;
    for (const auto& f : fs::directory_iterator(root_ + "/uploads", ec)) {
      struct stat s {};
      if (::lstat(f.path().c_str(), &s) == 0 && s.st_mtime < older_than_s && ::unlink(f.path().c_str()) == 0) ++n;
    }
    return n;
  }

 private:
  static constexpr size_t kMaxSeen = 1 << 20;
  std::string root_;
  int64_t touch_after_s_;
  std::mutex seen_mu_;
  std::unordered_map<std::string, int64_t> seen_;  // Digest::Key() -> when Has() last saw it on disk (unix s)
};

Status DirWriter::Commit() {
  if (size_ != d_.size)
    return InvalidArgument("upload of " + d_.ToString() + " ended after " + std::to_string(size_) + " bytes");
  if (::fchmod(fd_, 0444) != 0 || ::fsync(fd_) != 0) return Unavailable(Errno("cannot flush " + tmp_));
  int rfd = ::open(tmp_.c_str(), O_RDONLY | O_CLOEXEC);
  if (rfd < 0) return Unavailable(Errno("cannot reopen " + tmp_));
  auto got = DigestFd(rfd, tmp_);
  ::close(rfd);
  if (!got.ok()) return got.status();
  if (*got != d_) {
    ::unlink(tmp_.c_str());
    return Mismatch(d_, *got);
  }
  return store_->Publish(d_, tmp_);
}

}  // namespace

Result<std::unique_ptr<BlobStore>> OpenDirStore(const std::string& root, int64_t touch_after_s) {
  std::error_code ec;
  fs::create_directories(root + "/blobs", ec);
  if (!ec) fs::create_directories(root + "/uploads", ec);
  if (ec) return FailedPrecondition("cannot create the CAS directory " + root + ": " + ec.message());
  if (::access((root + "/uploads").c_str(), W_OK) != 0)
    return FailedPrecondition(Errno("the CAS directory " + root + " is not writable"));
  return std::unique_ptr<BlobStore>(std::make_unique<DirStore>(root, touch_after_s));
}

}  // namespace kiln::cas
