#include "cli/trees.h"

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>
#include <unordered_map>

#include "api/convert.h"
#include "cas/client.h"
#include "cas/walk.h"
#include "cli/downloads.h"
#include "common/util.h"

namespace kiln::cli {

namespace {

namespace fs = std::filesystem;

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// "1 file", "3 files".
std::string Count(int64_t n, const char* one, const char* many) {
  return std::to_string(n) + " " + (n == 1 ? one : many);
}

}  // namespace

std::string HumanBytes(int64_t n) {
  char buf[64];
  if (n < 1024) std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(n));
  else if (n < (1 << 20)) std::snprintf(buf, sizeof buf, "%.1f KiB", n / 1024.0);
  else if (n < (1LL << 30)) std::snprintf(buf, sizeof buf, "%.1f MiB", n / 1048576.0);
  else std::snprintf(buf, sizeof buf, "%.2f GiB", n / 1073741824.0);
  return buf;
}

Result<SentTree> SendTree(Client& c, const SendOptions& o) {
  if (c.Cas() == nullptr) return Internal("no CAS client");
  std::error_code ec;
  std::string abs = fs::weakly_canonical(fs::absolute(o.dir, ec), ec).string();
  struct stat st {};
  if (::stat(abs.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return NotFound("input directory " + o.dir + " does not exist or is not a directory (set it with --input)");
  cas::WalkOptions w;
  for (const auto& p : o.include) w.include.push_back(CleanRelativePath(p));
  for (const auto& p : o.exclude) w.exclude.push_back(CleanRelativePath(p));
  // What an interrupted download (kiln outputs) may leave behind is not input.
  w.exclude.push_back(".kiln-download-*");
  w.exclude.push_back("*.kiln-tmp-*");
  w.use_git = o.use_git;
  w.max_files = o.max_files;
  // Declared outputs kiln downloaded here, unchanged since, are not inputs.
  DownloadedOutputs downloaded = FindDownloadedOutputs(abs, o.outputs, o.outputs_dir);
  if (!downloaded.areas.empty()) {
    w.keep = [&downloaded](const std::string& rel, const cas::Entry& e) { return !LeaveOut(downloaded, rel, e); };
  }
  cas::HashCache cache;
  if (o.hash_cache) {
    cache = cas::HashCache::Load(cas::HashCache::DefaultFile(abs));
    w.cache = &cache;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto tree = cas::BuildTree(abs, w);
  if (!tree.ok()) {
    return Status(tree.status().code(), "cannot send " + o.dir + ": " + tree.status().message());
  }
  double hash_s = Since(t0);
  if (o.hash_cache) {
    if (auto s = cache.Save(); !s.ok()) std::fprintf(stderr, "kiln: warning: %s\n", s.message().c_str());
  }
  std::fprintf(stderr, "kiln: hashed %s: %s, %s%s in %.2f s (%lld read, %lld unchanged since the last submit)\n",
               o.dir.c_str(), Count(tree->file_count, "file", "files").c_str(), HumanBytes(tree->file_bytes).c_str(),
               tree->used_git ? " (git's file list)" : "", hash_s, static_cast<long long>(tree->hashed_files),
               static_cast<long long>(tree->file_count - tree->hashed_files));
  if (!tree->left_out.empty()) {
    std::string list;
    for (size_t i = 0; i < tree->left_out.size() && i < 5; ++i) list += (i ? ", " : "") + tree->left_out[i];
    if (tree->left_out.size() > 5) list += ", ...";
    std::fprintf(stderr,
                 "kiln: left out %s kiln downloaded as declared outputs, unchanged since (%s): not inputs; "
                 "edit one and it is an input again\n",
                 Count(static_cast<int64_t>(tree->left_out.size()), "path", "paths").c_str(), list.c_str());
  }
  auto t1 = std::chrono::steady_clock::now();
  auto up = c.Cas()->UploadTree(*tree);
  if (!up.ok()) return up.status();
  std::fprintf(stderr,
               "kiln: uploaded %s (%lld bytes, %s) and %s (%lld bytes) in %.2f s; "
               "the farm had the other %s\n",
               Count(up->blobs, "file", "files").c_str(), static_cast<long long>(up->blob_bytes),
               HumanBytes(up->blob_bytes).c_str(), Count(up->nodes, "directory node", "directory nodes").c_str(),
               static_cast<long long>(up->node_bytes), Since(t1),
               Count(static_cast<int64_t>(tree->files.size()) - up->blobs, "distinct file", "distinct files").c_str());
  return SentTree{api::ToProto(tree->root), std::move(tree->left_out)};
}

Status DownloadOutputs(Client& c, const v1::Digest& root_pb, const std::string& dest) {
  if (c.Cas() == nullptr) return Internal("no CAS client");
  auto t0 = std::chrono::steady_clock::now();
  cas::Digest root = api::FromProto(root_pb);
  auto tree = c.Cas()->GetTree(root);
  if (!tree.ok()) return tree.status();
  std::error_code ec;
  // The directories about to be made for dest, below the nearest that exists.
  fs::path existing = fs::absolute(dest, ec).lexically_normal();
  if (!existing.has_filename()) existing = existing.parent_path();
  std::vector<std::string> made;
  for (struct stat s {}; ::lstat(existing.c_str(), &s) != 0 && existing.has_relative_path();) {
    made.insert(made.begin(), existing.filename().string());
    existing = existing.parent_path();
  }
  fs::create_directories(dest, ec);
  if (ec) return FailedPrecondition("cannot create " + dest + ": " + ec.message());
  if (!made.empty()) {
    for (size_t i = 1; i < made.size(); ++i) made[i] = made[i - 1] + "/" + made[i];
    std::string real = RealPathOf(existing.string());
    Status s = real.empty() ? Status::Ok() : NoteCreatedDirectories(real, made);
    if (!s.ok()) std::fprintf(stderr, "kiln: warning: %s\n", s.message().c_str());
  }
  std::string staging = dest + "/.kiln-download-" + RandomHex(4);
  if (::mkdir(staging.c_str(), 0700) != 0) return FailedPrecondition("cannot create " + staging);
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code e;
      fs::remove_all(dir, e);
    }
  } cleanup{staging};
  // Fetch every distinct blob once, then move (or copy, for a repeat) into place.
  std::vector<cas::Digest> blobs;
  // What is about to be written, and whether something is at its path now.
  std::vector<Written> written;
  {
    auto by_hash = tree->by_hash();
    auto entries = cas::Flatten(root, by_hash, int64_t{10} << 20);
    if (!entries.ok()) return Status(entries.status().code(), "bad output tree: " + entries.status().message());
    std::unordered_map<std::string, bool> seen;
    for (const auto& pe : *entries) {
      struct stat s {};
      written.push_back(Written{pe.path, pe.entry, ::lstat((dest + "/" + pe.path).c_str(), &s) == 0});
      if (pe.entry.kind == cas::Kind::kFile && !seen[pe.entry.digest.hash]) {
        seen[pe.entry.digest.hash] = true;
        blobs.push_back(pe.entry.digest);
      }
    }
  }
  auto staged = [&](const cas::Digest& d) { return staging + "/" + d.hash; };
  if (auto s = c.Cas()->FetchBlobs(blobs, staged); !s.ok()) return s;
  std::unordered_map<std::string, std::string> placed;  // hash -> first path written
  std::set<std::string> placed_paths;
  auto st = cas::WriteTree(*tree, dest, [&](const cas::Entry& e, const std::string& path) -> Status {
    mode_t mode = e.executable ? 0755 : 0644;
    auto it = placed.find(e.digest.hash);
    std::string src = staged(e.digest);
    if (it != placed.end()) {
      std::error_code ce;
      src = path + ".kiln-tmp-" + RandomHex(4);
      fs::copy_file(it->second, src, fs::copy_options::overwrite_existing, ce);
      if (ce) return FailedPrecondition("cannot write " + path + ": " + ce.message());
    }
    if (::chmod(src.c_str(), mode) != 0 || ::rename(src.c_str(), path.c_str()) != 0) {
      ::unlink(src.c_str());
      return FailedPrecondition("cannot write " + path + ": " + std::strerror(errno));
    }
    placed.emplace(e.digest.hash, path);
    placed_paths.insert(path);
    return Status::Ok();
  });
  // Remember what was written (after a failure: the files placed), so that
  // the next submit leaves it out of its inputs (downloads.h). Failing to
  // costs a cache miss, not the download.
  if (!st.ok()) {
    std::erase_if(written, [&](const Written& w) { return !placed_paths.count(dest + "/" + w.path); });
  }
  if (std::string real = RealPathOf(dest); !real.empty()) {
    DownloadRecord rec = LoadDownloadRecord(real);
    NoteDownload(rec, written);
    if (Status s = SaveDownloadRecord(real, std::move(rec)); !s.ok())
      std::fprintf(stderr, "kiln: warning: %s; the next submit will send these outputs as inputs\n",
                   s.message().c_str());
  }
  if (!st.ok()) return st.status();
  std::fprintf(stderr, "kiln: outputs %s: %s (%s) written under %s in %.2f s\n", root.ToString().c_str(),
               Count(st->files, "file", "files").c_str(), HumanBytes(st->bytes).c_str(), dest.c_str(), Since(t0));
  return Status::Ok();
}

}  // namespace kiln::cli
