#include "worker/workspaces.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "api/convert.h"
#include "cas/digest.h"
#include "cas/tree.h"
#include "common/util.h"
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
// other jobs' links, and every link() changes it. Writing changes the mtime
// (and only root can write these read-only root files).
template <typename F>
bool Matches(const F& f, const struct stat& st) {
  return static_cast<int64_t>(st.st_ino) == f.ino && st.st_size == f.size && Ns(st.st_mtim) == f.mtime_ns;
}

}  // namespace

WorkspaceStore::WorkspaceStore(std::string dir, int64_t max_bytes) : dir_(std::move(dir)), max_bytes_(max_bytes) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    Meta m;
    if (fs::exists(e.path() / kInUse) || !Load(e.path(), &m)) {
      spdlog::info("removing workspace {}: a job was using it when the worker stopped", e.path().string());
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

bool WorkspaceStore::Load(const std::string& dir, Meta* m) const {
  std::ifstream in(dir + "/" + kMeta);
  if (!in) return false;
  try {
    const json j = json::parse(in);
    m->project = j.value("project", "");
    m->name = j.value("name", "");
    m->root = j.value("root", "");
    m->bytes = j.value("bytes", int64_t{0});
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
  json j = {{"project", m.project}, {"name", m.name},        {"root", m.root},
            {"bytes", m.bytes},     {"last_use_ms", m.last_use_ms}, {"files", files}};
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
    fs::remove_all(dir, ec);  // never a stranger's leftovers
    fs::create_directories(dir + "/src", ec);
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
                                                        const cas::Digest& root) {
  const std::string key = Key(project, name);
  const std::string dir = PathOf(project, name);
  const std::string src = dir + "/src";
  Meta m;
  {
    // The job has it: its record is this thread's until the sync ends.
    std::lock_guard g(mu_);
    auto it = metas_.find(key);
    if (it != metas_.end()) {
      m.project = it->second.project;
      m.name = it->second.name;
      m.root = it->second.root;
      m.files = std::move(it->second.files);
    }
  }
  std::error_code ec;
  if (m.project.empty() || !fs::is_directory(src)) {
    // Its record or directory went missing: start it over.
    spdlog::warn("workspace {}: its record or directory is missing; starting it over", key);
    fs::remove_all(dir, ec);
    fs::create_directories(src, ec);
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
  SyncReport rep;
  rep.fresh = m.root.empty();
  if (rep.fresh) {
    // A new workspace: the tree as a fresh job gets it (links to the cache).
    auto made = local.Materialize(client, *tree, src);
    if (!made.ok()) return made.status();
    rep.added = made->files;
  }
  auto entries = cas::Flatten(root, tree->by_hash(), int64_t{10} << 20);
  if (!entries.ok()) return entries.status();
  std::map<std::string, const cas::Entry*> want;
  for (const auto& pe : *entries) want[pe.path] = &pe.entry;
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
      if (::lstat((src + "/" + path).c_str(), &st) == 0) record(path, *e, st);
    }
  } else {
    // Gone from the tree, deepest first: files deleted, directories only if
    // empty (what builds wrote in them stays).
    for (auto it = m.files.rbegin(); it != m.files.rend(); ++it) {
      auto w = want.find(it->first);
      bool kind_changed = w != want.end() && (w->second->kind == cas::Kind::kDir) != (it->second.value == "d");
      if (w != want.end() && !kind_changed) continue;
      if (w == want.end()) ++rep.removed;
      // Under a directory the build replaced (by a symlink, say): not
      // followed; that directory's own entry deals with it.
      if (!ParentsAreDirs(src, it->first)) continue;
      std::string p = src + "/" + it->first;
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
    // last job's end found them, or as looked at now).
    for (const auto& [path, e] : want) {
      auto old = m.files.find(path);
      bool same_entry = old != m.files.end() && old->second.value == value(*e);
      if (same_entry && old->second.intact) {
        File f = old->second;
        f.intact = false;  // until this job's end says so
        seen.emplace_hint(seen.end(), path, std::move(f));
        ++rep.unchanged;
        continue;
      }
      std::string p = src + "/" + path;
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
        if (ec || ::lstat(p.c_str(), &st) != 0) return FailedPrecondition("cannot create " + p + ": " + ec.message());
        record(path, *e, st);
        ++rep.added;
        continue;
      }
      if (same_entry && exists && Matches(old->second, st)) {
        record(path, *e, st);
        ++rep.unchanged;
        continue;
      }
      // Replaced by rename: a new file, with a new mtime (make rebuilds
      // what depends on it), owned by root and read-only to the build.
      if (exists && S_ISDIR(st.st_mode)) fs::remove_all(p, ec);
      std::string tmp = p + ".kiln-sync";
      ::unlink(tmp.c_str());
      if (e->kind == cas::Kind::kSymlink) {
        if (::symlink(e->target.c_str(), tmp.c_str()) != 0)
          return FailedPrecondition("cannot create symlink " + p + ": " + strerror(errno));
      } else {
        auto blob = local.Blob(client, e->digest);
        if (!blob.ok()) return blob.status();
        fs::copy_file(*blob, tmp, fs::copy_options::overwrite_existing, ec);
        if (ec || ::chmod(tmp.c_str(), e->executable ? 0555 : 0444) != 0)
          return FailedPrecondition("cannot write " + p + ": " + (ec ? ec.message() : strerror(errno)));
      }
      if (::rename(tmp.c_str(), p.c_str()) != 0) return FailedPrecondition("cannot replace " + p + ": " + strerror(errno));
      if (::lstat(p.c_str(), &st) == 0) record(path, *e, st);
      if (old == m.files.end()) ++rep.added;
      else ++rep.changed;
    }
  }
  // Kept in memory; meta.json is written at Release (until then the in-use
  // marker says a restarted worker must not trust this workspace).
  std::lock_guard g(mu_);
  Meta& held = metas_[key];
  held.project = project;
  held.name = name;
  held.root = root.Key();
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
    CheckIntact(dir + "/src", files);
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
