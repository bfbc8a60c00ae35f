#include "cli/downloads.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cas/digest.h"
#include "cas/walk.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kOwnedByOthers = "-";
constexpr const char* kCreatedDir = "d";

std::string EntryText(const cas::Entry& e) {
  switch (e.kind) {
    case cas::Kind::kDir: return kCreatedDir;
    case cas::Kind::kSymlink: return "l:" + e.target;
    case cas::Kind::kFile: break;
  }
  return (e.executable ? "x:" : "f:") + e.digest.Key();
}

// `p` is `area` or lies below it.
bool Within(const std::string& p, const std::string& area) {
  if (p.size() == area.size()) return p == area;
  return p.size() > area.size() && p.compare(0, area.size(), area) == 0 && p[area.size()] == '/';
}

}  // namespace

std::string CleanRelativePath(std::string p) {
  while (p.rfind("./", 0) == 0) p = p.substr(2);
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string RealPathOf(const std::string& p) {
  std::error_code ec;
  auto r = fs::canonical(p, ec);
  return ec ? "" : r.string();
}

void NoteDownload(DownloadRecord& rec, const std::vector<Written>& written) {
  for (const auto& w : written) {
    if (w.entry.kind == cas::Kind::kDir) {
      if (!w.existed) rec[w.path] = kCreatedDir;
      continue;
    }
    auto it = rec.find(w.path);
    bool kilns = !w.existed || (it != rec.end() && it->second != kOwnedByOthers && it->second != kCreatedDir);
    rec[w.path] = kilns ? EntryText(w.entry) : kOwnedByOthers;
  }
}

std::string DownloadRecordFile(const std::string& real_dir) {
  return cas::UserCacheDir() + "/downloads/" + cas::DigestOf(std::string_view(real_dir)).hash;
}

DownloadRecord LoadDownloadRecord(const std::string& real_dir) {
  std::ifstream in(DownloadRecordFile(real_dir), std::ios::binary);
  if (!in) return {};
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  // Another directory's record (it names its directory) or a damaged one: none.
  auto field = [&](const char* k) { return j.is_object() && j.contains(k) ? j[k] : nlohmann::json(); };
  if (field("version") != 1 || field("dir") != real_dir || !field("paths").is_object()) return {};
  DownloadRecord rec;
  for (const auto& [path, what] : j["paths"].items()) {
    if (what.is_string()) rec[path] = what.get<std::string>();
  }
  return rec;
}

Status SaveDownloadRecord(const std::string& real_dir, DownloadRecord rec) {
  for (auto it = rec.begin(); it != rec.end();) {
    struct stat st {};
    std::string p = it->first.empty() ? real_dir : real_dir + "/" + it->first;
    if (::lstat(p.c_str(), &st) != 0) it = rec.erase(it);
    else ++it;
  }
  std::string file = DownloadRecordFile(real_dir);
  std::error_code ec;
  fs::create_directories(fs::path(file).parent_path(), ec);
  if (ec) return FailedPrecondition("cannot create " + fs::path(file).parent_path().string() + ": " + ec.message());
  nlohmann::json j = {{"version", 1}, {"dir", real_dir}, {"paths", rec}};
  std::string tmp = file + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    // dump(-1, ' ', false, replace): a name that is not UTF-8 must not throw.
    out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (!out.flush()) {
      ::unlink(tmp.c_str());
      return FailedPrecondition("cannot write " + tmp + ": " + std::strerror(errno));
    }
  }
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return FailedPrecondition("cannot write " + file + ": " + std::strerror(e));
  }
  return Status::Ok();
}

Status NoteCreatedDirectories(const std::string& real_dir, const std::vector<std::string>& dirs) {
  DownloadRecord rec = LoadDownloadRecord(real_dir);
  for (const auto& d : dirs) rec[d] = kCreatedDir;
  return SaveDownloadRecord(real_dir, std::move(rec));
}

bool LeaveOut(const DownloadedOutputs& d, const std::string& rel, const cas::Entry& e) {
  auto it = d.written.find(rel);
  if (it == d.written.end() || it->second != EntryText(e)) return false;
  for (const auto& area : d.areas) {
    if (Within(rel, area)) return true;
    // A directory kiln created on the way to an output (out/ for out/bin/app).
    if (e.kind == cas::Kind::kDir && Within(area, rel)) return true;
  }
  return false;
}

DownloadedOutputs FindDownloadedOutputs(const std::string& input_dir, const std::vector<std::string>& outputs,
                                        const std::string& outputs_dir) {
  DownloadedOutputs d;
  std::string tree = RealPathOf(input_dir);
  if (tree.empty()) return d;
  for (const auto& o : outputs) {
    std::string c = CleanRelativePath(o);
    if (!c.empty() && c != ".") d.areas.push_back(c);
  }
  d.written = LoadDownloadRecord(tree);
  std::string dest = outputs_dir.empty() ? tree : RealPathOf(outputs_dir);
  if (dest.size() > tree.size() && Within(dest, tree)) {
    // The outputs directory inside the tree: everything kiln wrote there,
    // from the records of each directory on the way down to it (those kiln
    // created for it are in the nearest one that existed).
    std::string at = dest.substr(tree.size() + 1);
    d.areas.push_back(at);
    for (size_t i = 0;; ++i) {
      i = at.find('/', i);
      std::string dir = at.substr(0, i);
      for (const auto& [path, what] : LoadDownloadRecord(tree + "/" + dir))
        d.written[path.empty() ? dir : dir + "/" + path] = what;
      if (i == std::string::npos) break;
    }
  }
  if (d.written.empty()) d.areas.clear();
  return d;
}

}  // namespace kiln::cli
