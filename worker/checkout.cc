#include "common/util.h"
#include "worker/checkout.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>
#include <vector>

#include "common/mounts.h"
#include "worker/exec.h"

namespace kiln::worker {
namespace {

namespace fs = std::filesystem;


// Copies a sparse file, holes kept: a new file system of gigabytes is a few
// megabytes of data.
Status CopySparse(const std::string& from, const std::string& to) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return FailedPrecondition(Errno("cannot open " + from));
  int out = ::open(to.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (out < 0) {
    ::close(in);
    return FailedPrecondition(Errno("cannot create " + to));
  }
  Status st;
  struct stat s {};
  if (::fstat(in, &s) != 0 || ::ftruncate(out, s.st_size) != 0) st = FailedPrecondition(Errno("cannot size " + to));
  for (off_t pos = 0; st.ok() && pos < s.st_size;) {
    off_t data = ::lseek(in, pos, SEEK_DATA);
    if (data < 0) break;  // only a hole is left
    off_t hole = ::lseek(in, data, SEEK_HOLE);
    if (hole < 0) hole = s.st_size;
    loff_t src = data, dst = data;
    while (src < hole) {
      ssize_t n = ::copy_file_range(in, &src, out, &dst, static_cast<size_t>(hole - src), 0);
      if (n <= 0) {
        st = FailedPrecondition(Errno("cannot copy " + from + " to " + to));
        break;
      }
    }
    pos = hole;
  }
  ::close(in);
  if (::close(out) != 0 && st.ok()) st = FailedPrecondition(Errno("cannot write " + to));
  return st;
}

bool IsMountPoint(const std::string& path) {
  struct stat a {}, b {};
  if (::lstat(path.c_str(), &a) != 0 || ::lstat((path + "/..").c_str(), &b) != 0) return false;
  return a.st_dev != b.st_dev;
}

}  // namespace

Checkouts::Checkouts(std::string dir, uint32_t uid, uint32_t gid) : dir_(std::move(dir)), uid_(uid), gid_(gid) {
  std::error_code ec;
  fs::remove_all(dir_, ec);  // templates are remade on first use (mkfs may have changed)
  fs::create_directories(dir_, ec);
  std::ifstream fss("/proc/filesystems");
  std::string all((std::istreambuf_iterator<char>(fss)), std::istreambuf_iterator<char>());
  std::string v;
  if (::geteuid() != 0) overlay_ = FailedPrecondition("the worker is not root");
  else if (all.find("\toverlay\n") == std::string::npos) overlay_ = FailedPrecondition("the kernel has no overlay file system (modprobe overlay)");
  else if (all.find("\text4\n") == std::string::npos) overlay_ = FailedPrecondition("the kernel has no ext4 file system");
  else if (::access("/dev/loop-control", W_OK) != 0) overlay_ = FailedPrecondition("there are no loop devices (/dev/loop-control; modprobe loop)");
  else if (Exec({"mkfs.ext4", "-V"}, &v) != 0) overlay_ = FailedPrecondition("mkfs.ext4 is missing (apt install e2fsprogs)");
  if (!overlay_.ok()) return;
  // What the checks cannot tell (work_dir on NFS, no loop device nodes in
  // a container): one small checkout, made and removed.
  const std::string probe = dir_ + "/probe";
  auto made = Make(probe, int64_t{16} << 20, [](const std::string&) { return Status::Ok(); });
  bool unmounted = Unmount(probe);
  fs::remove_all(probe, ec);
  if (!made.ok()) overlay_ = FailedPrecondition("a probe checkout failed: " + made.status().message());
  else if (!unmounted) overlay_ = FailedPrecondition("a probe checkout could not be unmounted");
}

Result<std::string> Checkouts::Template(int64_t bytes) {
  // Called with mu_ held.
  if (auto it = templates_.find(bytes); it != templates_.end()) return it->second;
  std::string path = dir_ + "/ext4-" + std::to_string(bytes);
  std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || ::ftruncate(fd, bytes) != 0) {
    if (fd >= 0) ::close(fd);
    return FailedPrecondition(Errno("cannot create " + tmp));
  }
  ::close(fd);
  // No journal (a checkout does not outlive a crash), nothing reserved for
  // root, the root directory the build's.
  std::string out;
  int rc = Exec({"mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E",
                 "lazy_itable_init=1,nodiscard,root_owner=" + std::to_string(uid_) + ":" + std::to_string(gid_), tmp},
                &out);
  if (rc != 0) {
    ::unlink(tmp.c_str());
    return FailedPrecondition("mkfs.ext4 failed (exit " + std::to_string(rc) + "): " + out);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return FailedPrecondition(Errno("cannot store " + path));
  templates_[bytes] = path;
  return path;
}

Status Checkouts::MountDisk(const std::string& base, int64_t bytes) {
  const std::string image = base + "/disk.img", disk = base + "/disk";
  std::error_code ec;
  fs::create_directories(disk, ec);
  bool fresh = ::access(image.c_str(), F_OK) != 0;
  std::lock_guard g(mu_);
  if (fresh) {
    auto tmpl = Template(bytes);
    if (!tmpl.ok()) return tmpl.status();
    if (Status s = CopySparse(*tmpl, image); !s.ok()) return s;
  }
  // discard: what the build deletes is given back to the host.
  std::string out;
  // noinit_itable: no background zeroing of inode tables (the file system
  // is new and lives as long as its job or workspace).
  int rc = Exec({"mount", "-t", "ext4", "-o", "loop,discard,nosuid,nodev,noatime,noinit_itable", image, disk}, &out);
  if (rc != 0) return FailedPrecondition("cannot mount the checkout's disk " + image + ": " + out);
  if (fresh) {
    for (const char* d : {"/upper", "/work"}) {
      std::string p = disk + d;
      if (::mkdir(p.c_str(), 0755) != 0 || ::chown(p.c_str(), uid_, gid_) != 0)
        return FailedPrecondition(Errno("cannot create " + p));
    }
    ::rmdir((disk + "/lost+found").c_str());
  }
  return Status::Ok();
}

Result<std::string> Checkouts::MountTree(const std::string& base, bool redirects) {
  const std::string src = base + "/src";
  std::error_code ec;
  fs::create_directories(src, ec);
  // No metacopy, no index; redirects only where asked (see the header).
  std::string opts = "lowerdir=" + base + "/lower,upperdir=" + base + "/disk/upper,workdir=" + base +
                     "/disk/work,redirect_dir=" + (redirects ? "on" : "off") + ",index=off,metacopy=off,xino=off";
  if (::mount("overlay", src.c_str(), "overlay", MS_NOSUID | MS_NODEV, opts.c_str()) != 0)
    return FailedPrecondition(Errno("cannot mount the checkout " + src));
  return src;
}

Result<std::string> Checkouts::Make(const std::string& base, int64_t disk_bytes,
                                    const std::function<Status(const std::string&)>& fill) {
  const bool overlay = overlay_.ok();
  const std::string tree = base + (overlay ? "/lower" : "/src");
  std::error_code ec;
  fs::create_directories(tree, ec);
  if (ec) return FailedPrecondition("cannot create " + tree + ": " + ec.message());
  std::future<Status> disk;
  if (overlay) disk = std::async(std::launch::async, [&] { return MountDisk(base, disk_bytes); });
  Status made = fill(tree);
  if (made.ok()) OwnDirs(tree, uid_, gid_);
  Status mounted = overlay ? disk.get() : Status::Ok();
  if (!made.ok()) return made;
  if (!mounted.ok()) return mounted;
  // A job's own checkout is never edited offline: directories rename as
  // in a local checkout.
  return overlay ? MountTree(base, /*redirects=*/true) : Result<std::string>(tree);
}

bool Checkouts::Unmount(const std::string& base) {
  bool clean = true;
  for (const char* p : {"/src", "/disk"}) {
    std::string path = base + p;
    if (IsMountPoint(path)) clean = UnmountPath(path) && clean;
  }
  return clean;
}

bool Checkouts::DiskFull(const std::string& base, bool saw_enospc) {
  struct statvfs v {};
  if (::statvfs((base + "/disk").c_str(), &v) != 0 || v.f_blocks == 0) return false;
  const int64_t free = static_cast<int64_t>(v.f_bavail) * static_cast<int64_t>(v.f_frsize);
  const double used = 1.0 - static_cast<double>(v.f_bfree) / static_cast<double>(v.f_blocks);
  // Full now; or the build said ENOSPC and its disk is at least half used
  // (tools delete what they could not finish; a full /tmp says ENOSPC too).
  return free < (int64_t{1} << 20) || v.f_favail == 0 || (saw_enospc && used >= 0.5);
}

int64_t Checkouts::DiskSize(const std::string& base) {
  struct stat s {};
  return ::stat((base + "/disk.img").c_str(), &s) == 0 ? s.st_size : 0;
}

void OwnDirs(const std::string& dir, uint32_t uid, uint32_t gid) {
  std::error_code ec;
  ::lchown(dir.c_str(), uid, gid);
  ::chmod(dir.c_str(), 0755);
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (it->is_symlink(ec) || !it->is_directory(ec)) continue;
    ::lchown(it->path().c_str(), uid, gid);
    ::chmod(it->path().c_str(), 0755);
  }
}

}  // namespace kiln::worker
