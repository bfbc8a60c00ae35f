#include "cas/walk.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "common/util.h"

namespace kiln::cas {

namespace {

int64_t Ns(const struct timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; }

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

struct FileItem {
  std::string rel, abs;
  struct stat st {};
  bool exec = false;
  bool hashed = false;  // read and hashed, not answered by the hash cache
  Digest digest;
};

struct Node {
  std::map<std::string, std::unique_ptr<Node>> dirs;
  std::map<std::string, FileItem*> files;
  std::map<std::string, std::string> links;
  bool explicit_dir = false;  // walked as a whole (keeps it even when empty)
};

std::string Display(const std::string& rel) { return rel.empty() ? "." : rel; }

bool Matches(const std::vector<std::string>& pats, const std::string& rel) {
  for (const auto& p : pats) {
    if (fnmatch(p.c_str(), rel.c_str(), 0) == 0) return true;
    for (size_t i = rel.find('/'); i != std::string::npos; i = rel.find('/', i + 1))
      if (fnmatch(p.c_str(), rel.substr(0, i).c_str(), 0) == 0) return true;
  }
  return false;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

// What `git -C root ARGS` prints, or nullopt if it fails (not a work tree, no git).
std::optional<std::string> GitOutput(const std::string& root, const std::string& args) {
  std::string cmd = "git -C " + ShellQuote(root) + " " + args + " 2>/dev/null";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return std::nullopt;
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  if (::pclose(f) != 0) return std::nullopt;
  return out;
}

// git's file list for `root`, or nullopt when it is not in a work tree.
std::optional<std::vector<std::string>> GitFiles(const std::string& root) {
  auto listed = GitOutput(root, "ls-files -z --cached --others --exclude-standard");
  if (!listed) return std::nullopt;
  const std::string& out = *listed;
  std::set<std::string> seen;
  std::vector<std::string> files;
  size_t i = 0;
  while (i < out.size()) {
    size_t j = out.find('\0', i);
    if (j == std::string::npos) j = out.size();
    std::string p = out.substr(i, j - i);
    while (!p.empty() && p.back() == '/') p.pop_back();  // a nested repository
    if (!p.empty() && seen.insert(p).second) files.push_back(std::move(p));
    i = j + 1;
  }
  return files;
}

}  // namespace

std::string GitBranch(const std::string& root) {
  auto out = GitOutput(root, "rev-parse --abbrev-ref HEAD");
  return out ? Trim(*out) : "";
}

namespace {

class Walker {
 public:
  Walker(std::string root, const WalkOptions& o) : root_(std::move(root)), o_(o) {}

  Status WalkDir(Node* node, const std::string& rel) {
    std::string abs = rel.empty() ? root_ : root_ + "/" + rel;
    int fd = ::open(abs.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return FailedPrecondition(Errno("cannot open directory " + Display(rel)));
    DIR* dir = ::fdopendir(fd);
    if (dir == nullptr) {
      ::close(fd);
      return FailedPrecondition(Errno("cannot read directory " + Display(rel)));
    }
    node->explicit_dir = true;
    Status st;
    std::vector<std::string> names;
    while (struct dirent* de = ::readdir(dir)) {
      std::string name = de->d_name;
      if (name == "." || name == "..") continue;
      names.push_back(std::move(name));
    }
    for (const auto& name : names) {
      std::string child = JoinPath(rel, name);
      if (!o_.exclude.empty() && Matches(o_.exclude, child)) continue;
      if (auto c = CheckName(name); !c.ok()) {
        st = InvalidArgument(c.message() + " (in directory " + Display(rel) + "); rename it or exclude it with --exclude");
        break;
      }
      struct stat s {};
      if (::fstatat(fd, name.c_str(), &s, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno == ENOENT) continue;  // vanished while we looked
        st = FailedPrecondition(Errno("cannot stat " + child));
        break;
      }
      st = AddEntry(node, child, name, s);
      if (!st.ok()) break;
    }
    ::closedir(dir);
    return st;
  }

  // Adds `rel` (known to exist with stat `s`) under `node`.
  Status AddEntry(Node* node, const std::string& rel, const std::string& name, const struct stat& s) {
    if (S_ISDIR(s.st_mode)) {
      auto& child = node->dirs[name];
      if (!child) child = std::make_unique<Node>();
      return WalkDir(child.get(), rel);
    }
    if (S_ISREG(s.st_mode)) {
      if (!o_.include.empty() && !Matches(o_.include, rel)) return Status::Ok();
      if (o_.max_file_bytes > 0 && s.st_size > o_.max_file_bytes)
        return ResourceExhausted(rel + ": file of " + std::to_string(s.st_size) + " bytes is over the limit of " +
                                 std::to_string(o_.max_file_bytes) + " bytes");
      if (o_.max_files > 0 && static_cast<int64_t>(items_.size()) >= o_.max_files)
        return ResourceExhausted("the tree has more than " + std::to_string(o_.max_files) +
                                 " files; is this the right directory? Narrow it with --exclude or --include");
      auto item = std::make_unique<FileItem>();
      item->rel = rel;
      item->abs = root_ + "/" + rel;
      item->st = s;
      item->exec = (s.st_mode & S_IXUSR) != 0;
      node->files[name] = item.get();
      items_.push_back(std::move(item));
      return Status::Ok();
    }
    if (S_ISLNK(s.st_mode)) {
      if (!o_.include.empty() && !Matches(o_.include, rel)) return Status::Ok();
      std::string abs = root_ + "/" + rel;
      std::string target(4096, '\0');
      ssize_t n = ::readlink(abs.c_str(), target.data(), target.size());
      if (n < 0) return FailedPrecondition(Errno("cannot read symlink " + rel));
      target.resize(static_cast<size_t>(n));
      if (auto c = CheckTarget(target); !c.ok()) return InvalidArgument(rel + ": " + c.message());
      auto slash = rel.rfind('/');
      if (!LinkStaysInside(slash == std::string::npos ? "" : rel.substr(0, slash), target))
        return InvalidArgument(rel + ": symlink target '" + target +
                               "' leaves the tree; only links inside the tree are allowed");
      node->links[name] = target;
      return Status::Ok();
    }
    return InvalidArgument(rel + ": not a regular file, directory or symlink (sockets, fifos and devices "
                                 "cannot be sent); exclude it with --exclude");
  }

  // Adds one listed path, creating the directories above it; they must be
  // real directories (a symlink on the way is refused, never followed).
  Status AddPath(Node* top, const std::string& rel, bool missing_ok) {
    Node* node = top;
    size_t i = 0;
    for (;;) {
      size_t j = rel.find('/', i);
      std::string part_rel = rel.substr(0, j);
      std::string name = rel.substr(i, j == std::string::npos ? std::string::npos : j - i);
      struct stat s {};
      if (::lstat((root_ + "/" + part_rel).c_str(), &s) != 0) {
        if (errno == ENOENT && missing_ok) return Status::Ok();
        if (errno == ENOENT || errno == ENOTDIR) return NotFound(part_rel + ": no such file or directory");
        return FailedPrecondition(Errno("cannot stat " + part_rel));
      }
      if (j == std::string::npos) {
        if (!o_.exclude.empty() && Matches(o_.exclude, rel)) return Status::Ok();
        if (S_ISDIR(s.st_mode) && node->dirs.count(name) && node->dirs[name]->explicit_dir) return Status::Ok();
        return AddEntry(node, rel, name, s);
      }
      if (!S_ISDIR(s.st_mode))
        return InvalidArgument(part_rel + ": is not a directory (a symlink is never followed), so " + rel +
                               " cannot be taken");
      auto& child = node->dirs[name];
      if (!child) child = std::make_unique<Node>();
      node = child.get();
      i = j + 1;
    }
  }

  Status HashAll() {
    std::vector<FileItem*> todo;
    for (auto& it : items_) {
      if (o_.cache != nullptr) {
        if (auto d = o_.cache->Lookup(it->rel, it->st)) {
          it->digest = *d;
          continue;
        }
      }
      todo.push_back(it.get());
    }
    hashed_ = static_cast<int64_t>(todo.size());
    for (auto* it : todo) it->hashed = true;
    int n = o_.threads > 0 ? o_.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    n = std::min<int>(n, static_cast<int>(todo.size()));
    std::atomic<size_t> next{0};
    std::mutex mu;
    Status first;
    auto work = [&] {
      for (;;) {
        size_t k = next++;
        if (k >= todo.size()) return;
        auto d = DigestFile(todo[k]->abs);
        if (!d.ok()) {
          std::lock_guard g(mu);
          if (first.ok()) first = FailedPrecondition(d.status().message());
          return;
        }
        todo[k]->digest = *d;
      }
    };
    std::vector<std::thread> threads;
    for (int t = 1; t < n; ++t) threads.emplace_back(work);
    work();
    for (auto& t : threads) t.join();
    if (!first.ok()) return first;
    if (o_.cache != nullptr)
      for (auto* it : todo) o_.cache->Record(it->rel, it->st, it->digest);
    return Status::Ok();
  }

  // The node's digest, or nullopt when the directory is left out: it ended
  // up empty only because of what `keep` left out below it (see WalkOptions).
  std::optional<Digest> Finish(Node* node, const std::string& rel, BuiltTree* out) {
    Directory d;
    bool any_pruned = false;
    auto keep = [&](const std::string& child, const Entry& e) {
      if (!o_.keep || o_.keep(child, e)) return true;
      any_pruned = true;
      if (e.kind != Kind::kDir) out->left_out.push_back(child);
      return false;
    };
    for (auto& [name, child] : node->dirs) {
      std::string child_rel = JoinPath(rel, name);
      Entry e;
      e.name = name;
      e.kind = Kind::kDir;
      auto dg = Finish(child.get(), child_rel, out);
      if (!dg) {
        any_pruned = true;
        continue;
      }
      e.digest = *dg;
      d.entries.push_back(std::move(e));
    }
    for (auto& [name, f] : node->files) {
      Entry e;
      e.name = name;
      e.kind = Kind::kFile;
      e.digest = f->digest;
      e.executable = f->exec;
      if (!keep(f->rel, e)) {
        if (f->hashed) --hashed_;  // hashed_files counts the tree's files only
        continue;
      }
      out->files.emplace(f->digest, f->abs);
      ++out->file_count;
      out->file_bytes += f->digest.size;
      d.entries.push_back(std::move(e));
    }
    for (auto& [name, target] : node->links) {
      Entry e;
      e.name = name;
      e.kind = Kind::kSymlink;
      e.target = target;
      if (!keep(JoinPath(rel, name), e)) continue;
      d.entries.push_back(std::move(e));
    }
    if (!rel.empty() && any_pruned && d.entries.empty()) {
      // Emptied by `keep`: a directory that is there only as the parent of
      // listed paths (git's list) would not be there without them; one
      // walked as a whole is `keep`'s to decide.
      if (!node->explicit_dir) return std::nullopt;
      Entry e;
      e.name = rel.substr(rel.rfind('/') + 1);
      e.kind = Kind::kDir;
      e.digest = DigestOf(d);
      if (!o_.keep(rel, e)) return std::nullopt;
    }
    std::sort(d.entries.begin(), d.entries.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
    Digest dg = DigestOf(d);
    ++out->dir_count;
    out->nodes.emplace(dg, std::move(d));
    return dg;
  }

  int64_t hashed() const { return hashed_; }

 private:
  std::string root_;
  const WalkOptions& o_;
  std::vector<std::unique_ptr<FileItem>> items_;
  int64_t hashed_ = 0;
};

}  // namespace

Result<BuiltTree> BuildTree(const std::string& root_in, const WalkOptions& opts) {
  std::string root = root_in;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  struct stat s {};
  if (::stat(root.c_str(), &s) != 0) return NotFound(Errno("cannot read " + root));
  if (!S_ISDIR(s.st_mode)) return InvalidArgument(root + " is not a directory");
  Walker w(root, opts);
  Node top;
  BuiltTree out;
  std::vector<std::string> paths = opts.paths;
  bool missing_ok = false;
  if (paths.empty() && opts.use_git) {
    if (auto files = GitFiles(root)) {
      paths = std::move(*files);
      missing_ok = true;  // deleted in the work tree, still in git's index
      out.used_git = true;
    }
  }
  if (paths.empty() && !out.used_git) {
    if (auto st = w.WalkDir(&top, ""); !st.ok()) return st;
  } else {
    for (const auto& p : paths) {
      if (auto st = CheckRelativePath(p, "path"); !st.ok()) return st;
      if (auto st = w.AddPath(&top, p, missing_ok); !st.ok()) return st;
    }
  }
  if (auto st = w.HashAll(); !st.ok()) return st;
  out.root = *w.Finish(&top, "", &out);  // the root is never left out
  std::sort(out.left_out.begin(), out.left_out.end());
  out.hashed_files = w.hashed();
  return out;
}

// ---- HashCache ----

HashCache HashCache::Load(const std::string& file) {
  HashCache c;
  c.file_ = file;
  c.loaded_ns_ = NowNs();
  std::ifstream in(file, std::ios::binary);
  if (!in) return c;
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  constexpr std::string_view kHeader = "kiln-hashcache-1\n";
  if (!std::string_view(data).starts_with(kHeader)) return c;
  size_t i = kHeader.size();
  while (i < data.size()) {
    size_t end = data.find('\0', i);
    if (end == std::string::npos) break;
    std::istringstream rec(data.substr(i, end - i));
    Item it;
    std::string path;
    rec >> it.ino >> it.size >> it.mtime_ns >> it.ctime_ns >> it.hash;
    rec.get();  // the space before the path
    std::getline(rec, path, '\0');
    if (rec && IsHash(it.hash) && !path.empty()) c.old_[path] = it;
    i = end + 1;
  }
  return c;
}

std::optional<Digest> HashCache::Lookup(const std::string& rel, const struct stat& st) {
  auto it = old_.find(rel);
  if (it == old_.end()) return std::nullopt;
  const Item& i = it->second;
  if (i.ino != st.st_ino || i.size != st.st_size || i.mtime_ns != Ns(st.st_mtim) || i.ctime_ns != Ns(st.st_ctim))
    return std::nullopt;
  seen_[rel] = i;
  return Digest{i.hash, i.size};
}

void HashCache::Record(const std::string& rel, const struct stat& st, const Digest& d) {
  // A file changed within the last seconds may change again within the same
  // timestamp tick without a visible difference: do not trust it yet.
  if (Ns(st.st_mtim) > loaded_ns_ - 2'000'000'000LL) return;
  if (d.size != st.st_size) return;  // changed while we read it
  seen_[rel] = Item{static_cast<uint64_t>(st.st_ino), st.st_size, Ns(st.st_mtim), Ns(st.st_ctim), d.hash};
}

Status HashCache::Save() const {
  if (file_.empty()) return Status::Ok();
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(file_).parent_path(), ec);
  std::string tmp = file_ + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return FailedPrecondition(Errno("cannot write hash cache " + tmp));
    out << "kiln-hashcache-1\n";
    for (const auto& [path, i] : seen_)
      out << i.ino << ' ' << i.size << ' ' << i.mtime_ns << ' ' << i.ctime_ns << ' ' << i.hash << ' ' << path << '\0';
    if (!out.flush()) return FailedPrecondition(Errno("cannot write hash cache " + tmp));
  }
  if (::rename(tmp.c_str(), file_.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return FailedPrecondition(Errno("cannot replace hash cache " + file_));
  }
  return Status::Ok();
}

std::string UserCacheDir() {
  std::string base;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x != nullptr && *x == '/') base = x;
  else if (const char* h = std::getenv("HOME"); h != nullptr && *h == '/') base = std::string(h) + "/.cache";
  else base = "/tmp/kiln-cache-" + std::to_string(::getuid());
  return base + "/kiln";
}

std::string HashCache::DefaultFile(const std::string& abs_root) {
  return UserCacheDir() + "/hashes/" + DigestOf(std::string_view(abs_root)).hash;
}

}  // namespace kiln::cas
