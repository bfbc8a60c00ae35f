#include "worker/workspaces.h"

#include <spdlog/spdlog.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "api/convert.h"
#include "cas/digest.h"
#include "cas/tree.h"
#include "common/util.h"
#include "worker/checkout.h"
#include "worker/disk_usage.h"
#include "worker/local_cas.h"

namespace kiln::worker {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kInUse = "in-use";  // present while a job has it: a crash leaves it behind
constexpr const char* kMeta = "meta.json";

int64_t Ns(const struct timespec& t) { return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec; }

std::string Key(const std::string& project, const std::string& name) { return project + "/" + name; }

// True if every directory above `rel` in `root` is a real directory: a build
// may have replaced one with a symlink, and the worker (root) must never
// delete or write through one.
bool ParentsAreDirs(const std::string& root, const std::string& rel) {
  size_t slash = 0;
  while ((slash = rel.find('/', slash)) != std::string::npos) {
    struct stat st {};
    if (::lstat((root + "/" + rel.substr(0, slash)).c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return false;
    ++slash;
  }
  return true;
}

// Not the ctime: files linked from the local cache share their inode with
// other jobs' links, and every link() changes it. Under an overlay nothing
// but the sync writes the tree; without one, writing changes the mtime.
template <typename F>
bool Matches(const F& f, const struct stat& st) {
  return static_cast<int64_t>(st.st_ino) == f.ino && st.st_size == f.size && Ns(st.st_mtim) == f.mtime_ns;
}

using Want = std::map<std::string, const cas::Entry*>;

// Adds to `out` every path of `want` below directory `dir`.
void AddBelow(const Want& want, const std::string& dir, std::set<std::string>& out) {
  const std::string prefix = dir + "/";
  for (auto it = want.lower_bound(prefix); it != want.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
    out.insert(it->first);
}

// Undoes in the overlay's upper layer what the last build did to its
// inputs: its copies of inputs it modified, the whiteouts of inputs it
// deleted and the opaque marks of input directories it replaced go; what
// it made beside them stays. `was` holds the last tree's paths (inputs
// since gone from the tree go too). Returns the paths of the tree whose
// files the build had changed: the sync writes them anew (with a new
// mtime, newer than every output that build made from its version).
template <typename Was>
std::set<std::string> UndoInputChanges(const std::string& upper, const Want& want, const Was& was, uint32_t uid,
                                       uint32_t gid) {
  std::set<std::string> changed;
  std::vector<std::string> dirs{""};
  while (!dirs.empty()) {
    std::string rel = dirs.back();
    dirs.pop_back();
    std::string at = rel.empty() ? upper : upper + "/" + rel;
    DIR* d = ::opendir(at.c_str());
    if (d == nullptr) continue;
    std::vector<std::string> names;
    while (const dirent* e = ::readdir(d))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
    ::closedir(d);
    for (const auto& n : names) {
      const std::string p = rel.empty() ? n : rel + "/" + n;
      const std::string full = upper + "/" + p;
      auto w = want.find(p);
      const bool in_tree = w != want.end();
      if (!in_tree && !was.count(p)) continue;  // the build's own
      struct stat st {};
      if (::lstat(full.c_str(), &st) != 0) continue;
      const bool tree_dir = in_tree && w->second->kind == cas::Kind::kDir;
      if (S_ISDIR(st.st_mode) && (tree_dir || !in_tree)) {
        // A directory of the tree is the build user's, 0755, whatever the
        // last build did to it (chmod -R a-w, say).
        if (tree_dir) {
          ::lchown(full.c_str(), uid, gid);
          ::chmod(full.c_str(), 0755);
        }
        // The build removed the input directory and made one of its own:
        // the tree's files show through it again.
        char v[4];
        if (tree_dir && ::lgetxattr(full.c_str(), "trusted.overlay.opaque", v, sizeof v) > 0) {
          ::lremovexattr(full.c_str(), "trusted.overlay.opaque");
          AddBelow(want, p, changed);
        }
        dirs.push_back(p);
        continue;
      }
      // A copy of an input, a whiteout (an input it deleted), or the
      // build's file or directory where the tree has another kind.
      std::error_code ec;
      if (S_ISDIR(st.st_mode)) fs::remove_all(full, ec);
      else ::unlink(full.c_str());
      if (in_tree) {
        changed.insert(p);
        if (tree_dir) AddBelow(want, p, changed);
      }
    }
  }
  return changed;
}

}  // namespace

WorkspaceStore::WorkspaceStore(std::string dir, int64_t max_bytes, Checkouts& checkouts)
    : dir_(std::move(dir)), max_bytes_(max_bytes), checkouts_(checkouts) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    Meta m;
    if (fs::exists(e.path() / kInUse) || !Load(e.path(), &m)) {
      spdlog::info("removing workspace {}: a job was using it when the worker stopped", e.path().string());
      checkouts_.Unmount(e.path());
      fs::remove_all(e.path(), ec);
      continue;
    }
    metas_[Key(m.project, m.name)] = std::move(m);
  }
}

std::string WorkspaceStore::PathOf(const std::string& project, const std::string& name) const {
  // Names may hold '/' (branches): the directory is named by a digest.
  return dir_ + "/" + cas::DigestOf(Key(project, name)).hash.substr(0, 24);
}

std::string WorkspaceStore::TreeOf(const std::string& dir) const {
  return dir + (checkouts_.overlay().ok() ? "/lower" : "/src");
}

bool WorkspaceStore::Load(const std::string& dir, Meta* m) const {
  std::ifstream in(dir + "/" + kMeta);
  if (!in) return false;
  try {
    const json j = json::parse(in);
    m->project = j.value("project", "");
    m->name = j.value("name", "");
    m->root = j.value("root", "");
    m->bytes = j.value("bytes", int64_t{0});
    m->disk_bytes = j.value("disk_bytes", int64_t{0});
    m->uid = j.value("uid", uint32_t{0});
    m->last_use_ms = j.value("last_use_ms", int64_t{0});
    const json files = j.value("files", json::object());
    for (const auto& [path, f] : files.items()) {
      m->files[path] = File{f.at(0).get<std::string>(), f.at(1).get<int64_t>(), f.at(2).get<int64_t>(),
                            f.at(3).get<int64_t>()};
    }
  } catch (const json::exception&) {
    return false;  // damaged: the workspace starts over
  }
  return !m->project.empty() && !m->name.empty();
}

bool WorkspaceStore::Save(const std::string& dir, const Meta& m) const {
  json files = json::object();
  for (const auto& [path, f] : m.files) files[path] = {f.value, f.ino, f.size, f.mtime_ns};
  json j = {{"project", m.project}, {"name", m.name},    {"root", m.root},   {"bytes", m.bytes},
            {"disk_bytes", m.disk_bytes}, {"uid", m.uid}, {"last_use_ms", m.last_use_ms}, {"files", files}};
  std::string tmp = dir + "/" + kMeta + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump();
    if (!out) return false;
  }
  return ::rename(tmp.c_str(), (dir + "/" + kMeta).c_str()) == 0;
}

v1::WorkspaceReport WorkspaceStore::ReportOf(const Meta& m, bool present) const {
  v1::WorkspaceReport r;
  r.set_project(m.project);
  r.set_name(m.name);
  r.set_present(present);
  if (auto d = cas::ParseDigest(m.root); present && d.ok()) *r.mutable_root() = api::ToProto(*d);
  r.set_bytes(present ? m.bytes : 0);
  return r;
}

std::optional<std::string> WorkspaceStore::Acquire(const std::string& project, const std::string& name) {
  const std::string key = Key(project, name);
  const std::string dir = PathOf(project, name);
  std::unique_lock g(mu_);
  if (!released_.wait_for(g, std::chrono::seconds(30), [&] { return !releasing_.count(key); })) return std::nullopt;
  if (in_use_.count(key)) return std::nullopt;
  std::error_code ec;
  if (!metas_.count(key)) {
    checkouts_.Unmount(dir);
    fs::remove_all(dir, ec);  // never a stranger's leftovers
    fs::create_directories(TreeOf(dir), ec);
    Meta m;
    m.project = project;
    m.name = name;
    if (ec || !Save(dir, m)) return std::nullopt;
    metas_[key] = m;
  }
  std::ofstream(dir + "/" + kInUse) << "1\n";
  in_use_.insert(key);
  metas_[key].last_use_ms = NowUnixMs();
  return dir + "/src";
}

Result<WorkspaceStore::SyncReport> WorkspaceStore::Sync(const std::string& project, const std::string& name,
                                                        cas::CasClient& client, LocalCas& local,
                                                        const cas::Digest& root, int64_t disk_bytes) {
  const std::string key = Key(project, name);
  const std::string dir = PathOf(project, name);
  const std::string tdir = TreeOf(dir);
  const bool overlay = checkouts_.overlay().ok();
  Meta m;
  {
    // The job has it: its record is this thread's until the sync ends.
    std::lock_guard g(mu_);
    auto it = metas_.find(key);
    if (it != metas_.end()) {
      m.project = it->second.project;
      m.name = it->second.name;
      m.root = it->second.root;
      m.disk_bytes = it->second.disk_bytes;
      m.uid = it->second.uid;
      m.files = std::move(it->second.files);
    }
  }
  std::error_code ec;
  const bool other_cap = overlay && !m.root.empty() && m.disk_bytes != disk_bytes;
  const bool other_user = !m.root.empty() && m.uid != checkouts_.uid();
  if (m.project.empty() || !fs::is_directory(tdir) || other_cap || other_user) {
    // Its record or directory went missing, its disk has another size, or
    // its files another owner (sandbox_uid changed): start it over.
    if (other_cap || other_user)
      spdlog::info("workspace {}: made with another {}; starting it over", key,
                   other_cap ? "disk cap than this job's" : "build user (sandbox_uid)");
    else spdlog::warn("workspace {}: its record or directory is missing; starting it over", key);
    checkouts_.Unmount(dir);
    fs::remove_all(dir, ec);
    fs::create_directories(tdir, ec);
    std::ofstream(dir + "/" + kInUse) << "1\n";  // Acquire's went with it
    m = Meta{};
    m.project = project;
    m.name = name;
  }
  // The empty tree (a job without inputs) needs no fetch: its node may not be stored.
  const cas::Digest empty = cas::DigestOf(cas::Directory{});
  auto tree = root == empty ? Result<cas::FetchedTree>(cas::FetchedTree{root, {{root, cas::Directory{}}}})
                  : client.GetTree(root);
  if (!tree.ok()) return tree.status();
  auto entries = cas::Flatten(root, tree->by_hash(), int64_t{10} << 20);
  if (!entries.ok()) return entries.status();
  Want want;
  for (const auto& pe : *entries) want[pe.path] = &pe.entry;
  SyncReport rep;
  rep.fresh = m.root.empty();
  if (overlay) {
    if (Status s = checkouts_.MountDisk(dir, disk_bytes); !s.ok()) return s;
    m.disk_bytes = disk_bytes;
  }
  // Inputs the last build changed are written anew, like changed ones.
  std::set<std::string> undone;
  const uint32_t uid = checkouts_.uid(), gid = checkouts_.gid();
  if (overlay && !rep.fresh) undone = UndoInputChanges(dir + "/disk/upper", want, m.files, uid, gid);
  if (rep.fresh) {
    // A new workspace: the tree as a fresh job gets it.
    auto made = local.Materialize(client, *tree, tdir, overlay ? LocalCas::Place::kLink : LocalCas::Place::kCopy);
    if (!made.ok()) return made.status();
    OwnDirs(tdir, uid, gid);
    rep.added = made->files;
  }
  auto value = [](const cas::Entry& e) { return e.kind == cas::Kind::kDir ? std::string("d") : cas::EntryValue(e); };
  // What the next sync compares with, taken as the sync goes.
  std::map<std::string, File> seen;
  auto record = [&](const std::string& path, const cas::Entry& e, const struct stat& st) {
    seen.emplace_hint(seen.end(), path,
                      File{value(e), static_cast<int64_t>(st.st_ino), st.st_size, Ns(st.st_mtim)});
  };
  if (rep.fresh) {
    for (const auto& [path, e] : want) {
      struct stat st {};
      if (::lstat((tdir + "/" + path).c_str(), &st) == 0) record(path, *e, st);
    }
  } else {
    // Gone from the tree, deepest first: files deleted, directories only if
    // empty (what builds wrote in them stays).
    for (auto it = m.files.rbegin(); it != m.files.rend(); ++it) {
      auto w = want.find(it->first);
      bool kind_changed = w != want.end() && (w->second->kind == cas::Kind::kDir) != (it->second.value == "d");
      if (w != want.end() && !kind_changed) continue;
      if (w == want.end()) ++rep.removed;
      // Under a directory a build replaced (by a symlink, say; without an
      // overlay): not followed; that directory's own entry deals with it.
      if (!ParentsAreDirs(tdir, it->first)) continue;
      std::string p = tdir + "/" + it->first;
      if (it->second.value == "d") {
        if (kind_changed) fs::remove_all(p, ec);  // a file takes its place
        else ::rmdir(p.c_str());
      } else {
        ::unlink(p.c_str());
      }
    }
    // Everything the tree has, parents first (so every directory above a
    // path is a real one by the time the path is written): untouched where
    // the entry and the file on disk are what the last sync left (as the
    // last job's end found them, or as looked at now) and the build left it.
    for (const auto& [path, e] : want) {
      auto old = m.files.find(path);
      bool same_entry = old != m.files.end() && old->second.value == value(*e);
      bool build_changed = undone.count(path) > 0;
      if (same_entry && old->second.intact && !build_changed) {
        File f = old->second;
        f.intact = false;  // until this job's end says so
        seen.emplace_hint(seen.end(), path, std::move(f));
        ++rep.unchanged;
        continue;
      }
      std::string p = tdir + "/" + path;
      struct stat st {};
      bool exists = ::lstat(p.c_str(), &st) == 0;
      if (e->kind == cas::Kind::kDir) {
        if (exists && S_ISDIR(st.st_mode)) {
          if (!same_entry) ++rep.added;
          else ++rep.unchanged;
          record(path, *e, st);
          continue;
        }
        if (exists) fs::remove_all(p, ec);
        fs::create_directory(p, ec);
        if (ec || ::lchown(p.c_str(), uid, gid) != 0 || ::lstat(p.c_str(), &st) != 0)
          return FailedPrecondition("cannot create " + p + ": " + (ec ? ec.message() : strerror(errno)));
        record(path, *e, st);
        ++rep.added;
        continue;
      }
      if (same_entry && exists && !build_changed && Matches(old->second, st)) {
        record(path, *e, st);
        ++rep.unchanged;
        continue;
      }
      // Replaced by rename: a new file, with a new mtime (make rebuilds
      // what depends on it), never written through (the old one may be a
      // link into the local cache).
      if (exists && S_ISDIR(st.st_mode)) fs::remove_all(p, ec);
      if (e->kind == cas::Kind::kSymlink) {
        std::string tmp = p + ".kiln-sync";
        ::unlink(tmp.c_str());
        if (::symlink(e->target.c_str(), tmp.c_str()) != 0 || ::lchown(tmp.c_str(), uid, gid) != 0 ||
            ::rename(tmp.c_str(), p.c_str()) != 0)
          return FailedPrecondition("cannot create symlink " + p + ": " + strerror(errno));
      } else if (Status s = local.CopyOut(client, e->digest, e->executable, p); !s.ok()) {
        return s;
      }
      if (::lstat(p.c_str(), &st) == 0) record(path, *e, st);
      if (old == m.files.end()) ++rep.added;
      else ++rep.changed;
    }
  }
  if (overlay) {
    auto src = checkouts_.MountTree(dir, /*redirects=*/false);  // the next sync edits the layers
    if (!src.ok()) return src.status();
  }
  // Kept in memory; meta.json is written at Release (until then the in-use
  // marker says a restarted worker must not trust this workspace).
  std::lock_guard g(mu_);
  Meta& held = metas_[key];
  held.project = project;
  held.name = name;
  held.root = root.Key();
  held.disk_bytes = m.disk_bytes;
  held.uid = checkouts_.uid();
  held.last_use_ms = NowUnixMs();
  held.files = std::move(seen);
  return rep;
}

void WorkspaceStore::CheckIntact(const std::string& src, std::map<std::string, File>& files) {
  // A directory the job removed or replaced (by a symlink, say): nothing
  // under it is looked at through it, and nothing under it is intact.
  std::set<std::string> lost;
  auto under_lost = [&](const std::string& path) {
    for (size_t slash = path.find('/'); slash != std::string::npos; slash = path.find('/', slash + 1))
      if (lost.count(path.substr(0, slash))) return true;
    return false;
  };
  for (auto& [path, f] : files) {  // parents before their children
    struct stat st {};
    f.intact = !under_lost(path) && ::lstat((src + "/" + path).c_str(), &st) == 0 &&
               (f.value == "d" ? S_ISDIR(st.st_mode) : Matches(f, st));
    if (!f.intact && f.value == "d") lost.insert(path);
  }
}

void WorkspaceStore::Delete(const std::string& key) {
  auto it = metas_.find(key);
  if (it == metas_.end()) return;
  std::error_code ec;
  checkouts_.Unmount(PathOf(it->second.project, it->second.name));
  fs::remove_all(PathOf(it->second.project, it->second.name), ec);
  metas_.erase(it);
}

void WorkspaceStore::Releasing(const std::string& project, const std::string& name) {
  std::lock_guard g(mu_);
  releasing_.insert(Key(project, name));
}

std::vector<v1::WorkspaceReport> WorkspaceStore::Release(const std::string& project, const std::string& name,
                                                         bool keep) {
  const std::string key = Key(project, name);
  const std::string dir = PathOf(project, name);
  // Unmounted before anything else: a disk still busy (a process of the
  // build holding a file) must not be mounted again, so the workspace goes.
  if (!checkouts_.Unmount(dir)) keep = false;
  int64_t bytes = keep ? DiskBytes(dir) : 0;
  // What the job left as it was synced, looked at now (off the build's
  // time: the job has been reported) rather than at the next sync. The
  // record is this job's until it is released below.
  std::map<std::string, File> files;
  if (keep) {
    {
      std::lock_guard g(mu_);
      if (auto it = metas_.find(key); it != metas_.end()) files = std::move(it->second.files);
    }
    CheckIntact(TreeOf(dir), files);
  }
  std::vector<v1::WorkspaceReport> out;
  std::unique_lock g(mu_);
  if (auto it = metas_.find(key); keep && it != metas_.end()) it->second.files = std::move(files);
  in_use_.erase(key);
  struct Done {  // whatever happens below, a job waiting for it goes on
    WorkspaceStore* s;
    std::string key;
    ~Done() {
      s->releasing_.erase(key);
      s->released_.notify_all();
    }
  } done{this, key};
  auto it = metas_.find(key);
  if (it == metas_.end()) return out;
  const bool dropped = drop_after_.erase(key) > 0;
  bool kept = keep && !dropped && !it->second.root.empty();  // never synced: nothing worth keeping
  if (kept) {
    it->second.bytes = bytes;
    kept = Save(dir, it->second);
    if (!kept) spdlog::warn("workspace {}: cannot write its record; removing it", key);
  }
  if (!kept) {
    out.push_back(ReportOf(it->second, false));
    Delete(key);
  } else {
    ::unlink((dir + "/" + kInUse).c_str());
    out.push_back(ReportOf(it->second, true));
  }
  // Least recently used ones go while the total is over the cap.
  int64_t total = 0;
  for (const auto& [k, m] : metas_) total += m.bytes;
  while (total > max_bytes_) {
    std::string victim;
    int64_t oldest = INT64_MAX;
    for (const auto& [k, m] : metas_)
      if (!in_use_.count(k) && !releasing_.count(k) && m.last_use_ms < oldest) oldest = m.last_use_ms, victim = k;
    if (victim.empty()) break;
    spdlog::info("workspace {} removed: {} bytes of workspaces, over workspace_max_bytes {}", victim, total,
                 max_bytes_);
    total -= metas_[victim].bytes;
    out.push_back(ReportOf(metas_[victim], false));
    Delete(victim);
  }
  return out;
}

std::optional<v1::WorkspaceReport> WorkspaceStore::Drop(const std::string& project, const std::string& name) {
  const std::string key = Key(project, name);
  std::lock_guard g(mu_);
  auto it = metas_.find(key);
  if (it == metas_.end()) {
    Meta m;
    m.project = project;
    m.name = name;
    return ReportOf(m, false);  // not here (any more): the controller may forget it
  }
  if (in_use_.count(key) || releasing_.count(key)) {
    drop_after_.insert(key);  // deleted when its job ends
    return std::nullopt;
  }
  auto r = ReportOf(it->second, false);
  Delete(key);
  return r;
}

std::vector<v1::WorkspaceReport> WorkspaceStore::List() const {
  std::lock_guard g(mu_);
  std::vector<v1::WorkspaceReport> out;
  for (const auto& [k, m] : metas_)
    if (!drop_after_.count(k)) out.push_back(ReportOf(m, true));
  return out;
}

}  // namespace kiln::worker
