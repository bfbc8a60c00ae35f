#include "worker/cc_wrapper.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <filesystem>
#include <thread>

namespace kiln::worker {

namespace fs = std::filesystem;

bool IsCompilerName(std::string_view n) {
  if (n == "cc" || n == "c++") return true;
  if (n.substr(0, 17) == "x86_64-linux-gnu-") n.remove_prefix(17);
  if (n.substr(0, 3) != "gcc" && n.substr(0, 3) != "g++") return false;
  n.remove_prefix(3);
  if (n.empty()) return true;
  if (n[0] != '-' || n.size() == 1) return false;
  for (char c : n.substr(1))
    if (c < '0' || c > '9') return false;
  return true;
}

std::set<std::string> CompilersIn(const std::string& rootfs) {
  std::set<std::string> names;
  for (const char* bin : {"usr/local/bin", "usr/bin", "bin"}) {
    struct stat st {};
    std::string d = rootfs + "/" + bin;
    if (::lstat(d.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;  // never follow the image's links out
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(d, ec)) {
      std::string n = e.path().filename();
      if (IsCompilerName(n)) names.insert(n);
    }
  }
  return names;
}

std::unique_ptr<CompileCacheSetup> CompileCacheSetup::Install(const std::string& work_dir, std::string src,
                                                              int64_t memory_bytes) {
  if (src.empty()) {
    char self[PATH_MAX] = {0};
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) src = fs::path(std::string(self, static_cast<size_t>(n))).parent_path() / "kiln-cc";
  }
  std::string dir = work_dir + "/kiln-cc";
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  ::chmod(dir.c_str(), 0755);
  if (::access(src.c_str(), X_OK) != 0) {
    spdlog::warn("compile cache off: kiln-cc not found at {} (install it beside kiln-worker, or set "
                 "compile_cache_wrapper)", src);
    return nullptr;
  }
  if (fs::copy_file(src, dir + "/kiln-cc", fs::copy_options::overwrite_existing, ec);
      ec || ::chmod((dir + "/kiln-cc").c_str(), 0755) != 0) {
    spdlog::warn("compile cache off: cannot copy {} into {}: {}", src, dir, ec.message());
    return nullptr;
  }
  return std::make_unique<CompileCacheSetup>(work_dir, dir + "/kiln-cc", memory_bytes);
}

CompileCacheSetup::CompileCacheSetup(std::string work_dir, std::string master, int64_t memory_bytes)
    : work_dir_(std::move(work_dir)), master_(std::move(master)) {
  if (memory_bytes > 0) memory_ = std::make_unique<LookupMemory>(memory_bytes);
}

Result<std::string> CompileCacheSetup::WrapperDir(const std::string& image, const std::string& rootfs) {
  const std::string hash = image.substr(image.find(':') + 1);
  const std::string dir = work_dir_ + "/kiln-cc/" + hash;
  std::lock_guard g(mu_);
  if (ready_.count(hash)) return dir;
  std::set<std::string> names = CompilersIn(rootfs);
  std::string tmp = dir + ".partial";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (::link(master_.c_str(), (tmp + "/kiln-cc").c_str()) != 0)
    fs::copy_file(master_, tmp + "/kiln-cc", fs::copy_options::overwrite_existing, ec);
  for (const auto& n : names) fs::create_symlink("kiln-cc", tmp + "/" + n, ec);
  ::chmod(tmp.c_str(), 0755);
  fs::remove_all(dir, ec);
  fs::rename(tmp, dir, ec);
  if (ec) return FailedPrecondition("cannot prepare " + dir + ": " + ec.message());
  spdlog::info("compile cache wrapper for image {}: {} compilers ({})", image, names.size(),
               names.empty() ? "none" : *names.begin() + (names.size() > 1 ? ", ..." : ""));
  ready_.insert(hash);
  return dir;
}

void RecordCompiles(v1::WorkerService::StubInterface& stub, const v1::RecordCompilesRequest& r) {
  if (r.stats().units() == 0) return;
  // The build has ended: its statistics wait (up to the deadline) for a
  // controller that is restarting or a channel still reconnecting, rather
  // than failing fast and being lost (kiln why would show nothing).
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(30);
  for (int attempt = 0;; ++attempt) {
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline);
    ctx.set_wait_for_ready(true);
    v1::Empty e;
    auto s = stub.RecordCompiles(&ctx, r, &e);
    if (s.ok()) return;
    if (s.error_code() != grpc::UNAVAILABLE || attempt == 4 || std::chrono::system_clock::now() >= deadline) {
      spdlog::warn("job_id={} attempt={}: compile cache statistics not recorded: {}", r.job_id(), r.attempt(),
                   s.error_message());
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200 << attempt));
  }
}

}  // namespace kiln::worker
