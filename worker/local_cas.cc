#include "common/util.h"
#include "worker/local_cas.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "common/write_all.h"

namespace kiln::worker {

namespace {

namespace fs = std::filesystem;

// Cached files carry this mtime (1 s after the epoch), and so does every
// input of a fresh checkout. Anything that wrote through a hard link changed
// it, so such damage is seen before the next use.
constexpr time_t kMarkerMtime = 1;

mode_t ModeOf(bool exec) { return exec ? 0755 : 0644; }


}  // namespace

LocalCas::LocalCas(std::string dir, int64_t max_bytes, uint32_t uid, uint32_t gid)
    : dir_(std::move(dir)), max_bytes_(max_bytes), uid_(uid), gid_(gid) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  for (const auto& shard : fs::directory_iterator(dir_, ec)) {
    std::error_code ec2;
    for (const auto& f : fs::directory_iterator(shard.path(), ec2)) {
      std::string name = f.path().filename();
      struct stat s {};
      bool tmp = name.find(".kiln-tmp-") != std::string::npos;
      if (tmp || ::lstat(f.path().c_str(), &s) != 0 || !S_ISREG(s.st_mode)) {
        ::unlink(f.path().c_str());
        continue;
      }
      // A cache of an older worker (root's, read-only) or of another build
      // user: given to this one (the mtime stays, so damage still shows).
      bool exec = name.size() > 2 && name.compare(name.size() - 2, 2, ".x") == 0;
      if (s.st_uid != uid_ || s.st_gid != gid_ || (s.st_mode & 07777) != ModeOf(exec)) {
        if (::chown(f.path().c_str(), uid_, gid_) != 0 || ::chmod(f.path().c_str(), ModeOf(exec)) != 0) {
          ::unlink(f.path().c_str());
          continue;
        }
      }
      items_[name] = Item{s.st_size, 0, 0};
      total_ += s.st_size;
    }
  }
  spdlog::info("local CAS cache {}: {} files, {} bytes (cap {})", dir_, items_.size(), total_, max_bytes_);
}

int64_t LocalCas::bytes() const {
  std::lock_guard g(mu_);
  return total_;
}

std::string LocalCas::PathOf(const std::string& hash, bool exec) const {
  return dir_ + "/" + hash.substr(0, 2) + "/" + hash + (exec ? ".x" : "");
}

bool LocalCas::Intact(const std::string& path, int64_t size, bool exec) const {
  struct stat s {};
  if (::lstat(path.c_str(), &s) != 0 || !S_ISREG(s.st_mode)) return false;
  return s.st_size == size && s.st_mtime == kMarkerMtime && (s.st_mode & 07777) == ModeOf(exec) &&
         s.st_uid == uid_ && s.st_gid == gid_;
}

Status LocalCas::Seal(const std::string& path, bool exec, bool marker) const {
  if (::chown(path.c_str(), uid_, gid_) != 0 || ::chmod(path.c_str(), ModeOf(exec)) != 0)
    return FailedPrecondition(Errno("cannot seal " + path));
  if (!marker) return Status::Ok();
  struct timespec ts[2] = {{0, UTIME_NOW}, {kMarkerMtime, 0}};
  if (::utimensat(AT_FDCWD, path.c_str(), ts, 0) != 0) return FailedPrecondition(Errno("cannot seal " + path));
  return Status::Ok();
}

void LocalCas::Pin(const std::string& key, int64_t size) {
  std::lock_guard g(mu_);
  auto [it, fresh] = items_.try_emplace(key, Item{size, 0, 0});
  if (fresh) total_ += size;
  it->second.pins++;
  it->second.last_use = ++clock_;
}

void LocalCas::Unpin(const std::vector<std::string>& keys) {
  std::lock_guard g(mu_);
  for (const auto& k : keys) {
    auto it = items_.find(k);
    if (it != items_.end() && it->second.pins > 0) it->second.pins--;
  }
}

void LocalCas::Trim() {
  std::lock_guard g(mu_);
  if (total_ <= max_bytes_) return;
  std::vector<std::pair<uint64_t, std::string>> order;
  for (const auto& [k, it] : items_)
    if (it.pins == 0) order.emplace_back(it.last_use, k);
  std::sort(order.begin(), order.end());
  int64_t freed = 0;
  size_t n = 0;
  for (const auto& [use, k] : order) {
    if (total_ <= max_bytes_) break;
    bool exec = k.size() > 2 && k.compare(k.size() - 2, 2, ".x") == 0;
    std::string hash = exec ? k.substr(0, k.size() - 2) : k;
    ::unlink(PathOf(hash, exec).c_str());
    total_ -= items_[k].size;
    freed += items_[k].size;
    items_.erase(k);
    ++n;
  }
  spdlog::debug("local CAS cache: evicted {} files ({} bytes), {} bytes left", n, freed, total_);
}

Result<std::string> LocalCas::Blob(cas::CasClient& client, const cas::Digest& d) {
  std::lock_guard fg(fetch_mu_);
  std::string path = PathOf(d.hash, false);
  Pin(d.hash, d.size);
  if (!Intact(path, d.size, false)) {
    std::error_code ec;
    fs::create_directories(fs::path(path).parent_path(), ec);
    Status s = client.FetchBlobs({d}, [&](const cas::Digest&) { return path; });
    if (s.ok()) s = Seal(path, false);
    if (!s.ok()) {
      Unpin({d.hash});
      return s;
    }
  }
  Unpin({d.hash});
  return path;
}

std::optional<std::string> LocalCas::Cached(const cas::Digest& d) const {
  std::string path = PathOf(d.hash, false);
  if (!Intact(path, d.size, false)) return std::nullopt;
  return path;
}

Status LocalCas::Put(const cas::Digest& d, std::string_view data,
                     const std::function<Status(const std::string&)>& use) {
  std::string path = PathOf(d.hash, false);
  Pin(d.hash, d.size);
  struct Unpinner {
    LocalCas* c;
    std::string key;
    ~Unpinner() {
      c->Unpin({key});
      c->Trim();
    }
  } unpin{this, d.hash};
  {
    std::lock_guard fg(fetch_mu_);
    if (!Intact(path, d.size, false)) {
      std::error_code ec;
      fs::create_directories(fs::path(path).parent_path(), ec);
      // Replaced by rename, never rewritten in place: a job may link it now.
      std::string tmp = path + ".kiln-tmp-put";
      int fd = ::open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) return FailedPrecondition(Errno("cannot write " + tmp));
      bool written = WriteAll(fd, data);
      bool ok = ::close(fd) == 0 && written;
      if (!ok) {
        ::unlink(tmp.c_str());
        return FailedPrecondition("cannot write " + tmp + ": disk full?");
      }
      if (auto s = Seal(tmp, false); !s.ok()) return s;
      if (::rename(tmp.c_str(), path.c_str()) != 0) return FailedPrecondition(Errno("cannot store " + path));
    }
  }
  return use(path);
}

Result<MaterializeReport> LocalCas::Materialize(cas::CasClient& client, const cas::Digest& root,
                                                const std::string& dest, Place place) {
  auto tree = client.GetTree(root);
  if (!tree.ok()) return tree.status();
  return Materialize(client, *tree, dest, place);
}

Status LocalCas::Fetch(cas::CasClient& client, const std::map<std::string, cas::Digest>& plain,
                       const std::set<std::string>& exec, std::vector<std::string>& pinned, MaterializeReport& rep) {
  std::lock_guard fg(fetch_mu_);
  std::vector<cas::Digest> missing;
  for (const auto& [hash, d] : plain) {
    Pin(hash, d.size);
    pinned.push_back(hash);
    // A damaged copy is replaced by rename, never unlinked first: another
    // job may be linking it right now.
    if (!Intact(PathOf(hash, false), d.size, false)) missing.push_back(d);
  }
  for (const auto& d : missing) {
    std::error_code ec;
    fs::create_directories(fs::path(PathOf(d.hash, false)).parent_path(), ec);
    rep.fetched_files++;
    rep.fetched_bytes += d.size;
  }
  if (auto s = client.FetchBlobs(missing, [&](const cas::Digest& d) { return PathOf(d.hash, false); }); !s.ok())
    return s;
  for (const auto& d : missing)
    if (auto s = Seal(PathOf(d.hash, false), false); !s.ok()) return s;
  for (const auto& hash : exec) {
    std::string x = PathOf(hash, true);
    Pin(hash + ".x", plain.at(hash).size);
    pinned.push_back(hash + ".x");
    if (Intact(x, plain.at(hash).size, true)) continue;
    if (auto s = CopyReplacing(PathOf(hash, false), x, true, true); !s.ok()) return s;
  }
  return Status::Ok();
}

Result<MaterializeReport> LocalCas::CopyAll(cas::CasClient& client, const std::vector<Placement>& files) {
  std::map<std::string, cas::Digest> plain;
  std::set<std::string> exec;
  for (const auto& f : files) {
    plain[f.digest.hash] = f.digest;
    if (f.exec) exec.insert(f.digest.hash);
  }
  MaterializeReport rep;
  Pins pins{this, {}};
  if (auto s = Fetch(client, plain, exec, pins.keys, rep); !s.ok()) return s;
  for (const auto& f : files) {
    if (auto s = CopyReplacing(PathOf(f.digest.hash, f.exec), f.path, f.exec, true); !s.ok()) return s;
    rep.files++;
    rep.bytes += f.digest.size;
  }
  return rep;
}

Result<MaterializeReport> LocalCas::Materialize(cas::CasClient& client, const cas::FetchedTree& tree,
                                                const std::string& dest, Place place) {
  const cas::Digest& root = tree.root;
  // Which blobs (and executable copies) does the job need?
  std::map<std::string, cas::Digest> plain;  // hash -> digest
  std::set<std::string> exec;
  auto by_hash = tree.by_hash();
  auto entries = cas::Flatten(root, by_hash, int64_t{10} << 20);
  if (!entries.ok()) return entries.status();
  for (const auto& pe : *entries) {
    if (pe.entry.kind != cas::Kind::kFile) continue;
    plain[pe.entry.digest.hash] = pe.entry.digest;
    if (pe.entry.executable) exec.insert(pe.entry.digest.hash);
  }
  MaterializeReport rep;
  Pins pins{this, {}};
  if (auto s = Fetch(client, plain, exec, pins.keys, rep); !s.ok()) return s;
  auto st = cas::WriteTree(tree, dest, [&](const cas::Entry& e, const std::string& path) -> Status {
    const std::string from = PathOf(e.digest.hash, e.executable);
    if (place == Place::kLink) {
      if (::link(from.c_str(), path.c_str()) != 0)
        return FailedPrecondition(Errno("cannot link " + path + " from the local CAS cache"));
      return Status::Ok();
    }
    return CopyReplacing(from, path, e.executable, true);
  });
  if (!st.ok()) return st.status();
  rep.files = st->files;
  rep.bytes = st->bytes;
  return rep;
}

Status LocalCas::CopyOut(cas::CasClient& client, const cas::Digest& d, bool exec, const std::string& path) {
  auto blob = Blob(client, d);
  if (!blob.ok()) return blob.status();
  return CopyReplacing(*blob, path, exec, false);
}

Status LocalCas::CopyReplacing(const std::string& from, const std::string& path, bool exec, bool marker) const {
  std::string tmp = path + ".kiln-tmp-copy";  // (a leftover in the cache goes at the next start)
  std::error_code ec;
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing, ec);
  Status s = ec ? FailedPrecondition("cannot copy " + from + " to " + path + ": " + ec.message())
                : Seal(tmp, exec, marker);
  if (s.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) s = FailedPrecondition(Errno("cannot store " + path));
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

}  // namespace kiln::worker
