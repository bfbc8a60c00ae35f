#include "cas/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <vector>

#include "common/text.h"

namespace kiln::cas {

namespace {

namespace fs = std::filesystem;

// Names from the archive as messages quote them: control bytes escaped, cut.
std::string Q(const std::string& s) { return Printable(s, 200); }

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// libarchive's message for the last error, which may quote the archive.
std::string ArchiveError(archive* a) {
  const char* e = archive_error_string(a);
  return e != nullptr ? Printable(e, 300) : "unknown error";
}

// "./a//b/" -> "a/b"; empty for the archive's root; nullopt-like error for
// absolute paths and "..".
Result<std::string> Clean(const char* raw, const std::string& what) {
  if (raw == nullptr) return InvalidArgument(what + " without a name");
  std::string in = raw, out;
  if (!in.empty() && in.front() == '/') return InvalidArgument(what + " '" + Q(in) + "' is an absolute path");
  size_t i = 0;
  while (i <= in.size()) {
    size_t j = in.find('/', i);
    if (j == std::string::npos) j = in.size();
    std::string part = in.substr(i, j - i);
    if (part == "..") return InvalidArgument(what + " '" + Q(in) + "' leaves the archive's tree (\"..\")");
    if (!part.empty() && part != ".") {
      if (!out.empty()) out += '/';
      out += part;
    }
    i = j + 1;
  }
  return out;
}

struct ArchiveCloser {
  void operator()(archive* a) const { archive_read_free(a); }
};

class Unpacker {
 public:
  Unpacker(std::string dest, const UnpackOptions& o) : dest_(std::move(dest)), o_(o) {}

  // Creates the directories above `rel`; none may be a symlink.
  Status Parents(const std::string& rel) {
    size_t pos = 0;
    while ((pos = rel.find('/', pos)) != std::string::npos) {
      std::string part = rel.substr(0, pos++);
      std::string p = dest_ + "/" + part;
      struct stat s {};
      if (::lstat(p.c_str(), &s) == 0) {
        if (S_ISLNK(s.st_mode))
          return InvalidArgument("entry '" + Q(rel) + "' goes through the symlink '" + Q(part) + "'; refused");
        if (!S_ISDIR(s.st_mode))
          return InvalidArgument("entry '" + Q(rel) + "' lies under '" + Q(part) + "', which is not a directory");
        continue;
      }
      if (::mkdir(p.c_str(), 0755) != 0 && errno != EEXIST) return FailedPrecondition(Errno("cannot create " + Q(p)));
    }
    return Status::Ok();
  }

  // Makes room for a new entry at `p` (removes what a lower layer had there).
  Status Clear(const std::string& p, bool keep_dir) {
    struct stat s {};
    if (::lstat(p.c_str(), &s) != 0) return Status::Ok();
    if (S_ISDIR(s.st_mode)) {
      if (keep_dir) return Status::Ok();
      std::error_code ec;
      fs::remove_all(p, ec);
      if (ec) return FailedPrecondition("cannot replace " + Q(p) + ": " + ec.message());
      return Status::Ok();
    }
    if (::unlink(p.c_str()) != 0) return FailedPrecondition(Errno("cannot replace " + Q(p)));
    return Status::Ok();
  }

  Status Whiteout(const std::string& rel) {
    auto slash = rel.rfind('/');
    std::string dir = slash == std::string::npos ? "" : rel.substr(0, slash);
    std::string base = slash == std::string::npos ? rel : rel.substr(slash + 1);
    const bool opaque = base == ".wh..wh..opq";
    // ".wh." and ".wh.." would name the directory itself, ".wh..." its
    // parent: outside the destination at its root.
    std::string name = base.substr(4);
    if (!opaque && (name.empty() || name == "." || name == ".."))
      return InvalidArgument("whiteout '" + Q(rel) + "' names no entry of its directory");
    if (auto s = Parents(rel); !s.ok()) return s;
    std::string dir_path = dir.empty() ? dest_ : dest_ + "/" + dir;
    if (opaque) {
      // Hide what lower layers had in this directory (not what this layer added).
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(dir_path, ec)) {
        std::string child = dir.empty() ? e.path().filename().string() : dir + "/" + e.path().filename().string();
        if (!created_.count(child)) fs::remove_all(e.path(), ec);
      }
      return Status::Ok();
    }
    std::string victim = dir_path + "/" + name;
    std::error_code ec;
    fs::remove_all(victim, ec);
    return Status::Ok();
  }

  Status Entry(archive* a, archive_entry* e) {
    auto rel = Clean(archive_entry_pathname(e), "entry");
    if (!rel.ok()) return rel.status();
    if (rel->empty()) return Status::Ok();  // the archive's root directory
    std::string base = rel->substr(rel->rfind('/') == std::string::npos ? 0 : rel->rfind('/') + 1);
    if (o_.whiteouts && base.rfind(".wh.", 0) == 0) return Whiteout(*rel);
    if (auto s = Parents(*rel); !s.ok()) return s;
    std::string p = dest_ + "/" + *rel;
    mode_t mode = archive_entry_perm(e) & 01777;  // no setuid/setgid bits
    ++st_.entries;
    if (const char* hl = archive_entry_hardlink(e)) {
      auto target = Clean(hl, "hardlink target of '" + Q(*rel) + "'");
      if (!target.ok()) return target.status();
      if (auto s = Parents(*target); !s.ok()) return s;
      struct stat ts {};
      std::string tp = dest_ + "/" + *target;
      if (::lstat(tp.c_str(), &ts) != 0 || !S_ISREG(ts.st_mode))
        return InvalidArgument("hardlink '" + Q(*rel) + "' names '" + Q(*target) +
                               "', which is not a file of the archive");
      if (auto s = Clear(p, false); !s.ok()) return s;
      if (::link(tp.c_str(), p.c_str()) != 0) return FailedPrecondition(Errno("cannot link " + Q(p)));
      created_.insert(*rel);
      return Status::Ok();
    }
    switch (archive_entry_filetype(e)) {
      case AE_IFDIR: {
        if (auto s = Clear(p, true); !s.ok()) return s;
        struct stat s {};
        if (::lstat(p.c_str(), &s) != 0 && ::mkdir(p.c_str(), 0755) != 0)
          return FailedPrecondition(Errno("cannot create " + Q(p)));
        ::chmod(p.c_str(), mode | 0700);
        break;
      }
      case AE_IFREG: {
        if (auto s = Clear(p, false); !s.ok()) return s;
        int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) return FailedPrecondition(Errno("cannot create " + Q(p)));
        const void* buf;
        size_t n;
        la_int64_t off;
        int r;
        while ((r = archive_read_data_block(a, &buf, &n, &off)) == ARCHIVE_OK) {
          st_.bytes += static_cast<int64_t>(n);
          if (o_.max_bytes > 0 && st_.bytes > o_.max_bytes) {
            ::close(fd);
            return ResourceExhausted("the archive unpacks to more than " + std::to_string(o_.max_bytes) + " bytes");
          }
          if (::pwrite(fd, buf, n, off) != static_cast<ssize_t>(n)) {
            auto s = FailedPrecondition(Errno("cannot write " + Q(p)));
            ::close(fd);
            return s;
          }
        }
        if (r != ARCHIVE_EOF) {
          ::close(fd);
          return InvalidArgument("damaged archive at '" + Q(*rel) + "': " + ArchiveError(a));
        }
        ::fchmod(fd, mode);
        ::close(fd);
        break;
      }
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(e);
        if (target == nullptr || *target == '\0') return InvalidArgument("symlink '" + Q(*rel) + "' has no target");
        if (auto s = Clear(p, false); !s.ok()) return s;
        // Never followed here; inside the container it resolves in the image's root.
        if (::symlink(target, p.c_str()) != 0) return FailedPrecondition(Errno("cannot create symlink " + Q(p)));
        break;
      }
      case AE_IFCHR:
      case AE_IFBLK:
        return InvalidArgument("entry '" + Q(*rel) + "' is a device node; images may not contain device nodes");
      default:
        return InvalidArgument("entry '" + Q(*rel) + "' is a fifo or socket; images may not contain them");
    }
    created_.insert(*rel);
    return Status::Ok();
  }

  const UnpackStats& stats() const { return st_; }

 private:
  std::string dest_;
  const UnpackOptions& o_;
  UnpackStats st_;
  std::set<std::string> created_;
};

}  // namespace

Result<UnpackStats> Unpack(const std::string& archive_path, const std::string& dest, const UnpackOptions& o) {
  std::unique_ptr<archive, ArchiveCloser> a(archive_read_new());
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open_filename(a.get(), archive_path.c_str(), 1 << 16) != ARCHIVE_OK)
    return InvalidArgument("cannot read " + archive_path + " as a tar archive: " + ArchiveError(a.get()));
  Unpacker u(dest, o);
  archive_entry* e = nullptr;
  for (;;) {
    int r = archive_read_next_header(a.get(), &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
      return InvalidArgument("damaged archive " + archive_path + ": " + ArchiveError(a.get()));
    if (auto s = u.Entry(a.get(), e); !s.ok()) return s;
  }
  return u.stats();
}

}  // namespace kiln::cas
