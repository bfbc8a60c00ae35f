#include "worker/health.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "cc/probe.h"
#include "common/util.h"
#include "worker/runner.h"
#include "worker/sandbox.h"

namespace kiln::worker {

bool FreeDisk(const std::string& path, int64_t& free_bytes, int64_t& total_bytes) {
  struct statvfs v {};
  if (::statvfs(path.c_str(), &v) != 0) return false;
  free_bytes = static_cast<int64_t>(v.f_bavail) * static_cast<int64_t>(v.f_frsize);
  total_bytes = static_cast<int64_t>(v.f_blocks) * static_cast<int64_t>(v.f_frsize);
  return true;
}

Status ProbeContainer(Sandbox& sandbox, const std::string& dir, const std::string& kiln_cc, int timeout_s,
                      const std::atomic<bool>* cancel, int n) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir + "/rootfs", ec);
  if (!ec) fs::create_directories(dir + "/job", ec);
  // A hard link costs no space (kiln-cc's copy is in work_dir too): a full
  // disk, which the disk checks report, does not fail this check as well.
  const std::string init = dir + "/rootfs/kiln-probe";
  if (!ec && ::link(kiln_cc.c_str(), init.c_str()) != 0) fs::copy_file(kiln_cc, init, ec);
  if (!ec) fs::permissions(init, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                     fs::perms::others_read | fs::perms::others_exec, ec);
  if (!ec) fs::permissions(dir + "/job", fs::perms::all, ec);  // the build user's /src
  if (ec) {
    const std::string why = ec.message();
    fs::remove_all(dir, ec);
    return Unavailable("cannot prepare the container probe in " + dir + ": " + why);
  }
  RunRequest req;
  req.job_id = 0;  // job ids start at 1: its container's name is no job's
  req.attempt = n;
  req.spec.argv = {"/kiln-probe", "--kiln-probe"};
  req.spec.timeout_s = timeout_s;
  req.job_dir = dir + "/job";
  std::atomic<bool> no{false};
  std::string out;
  RunOutcome o = sandbox.Run(
      req, dir + "/rootfs", [](int64_t) {}, [&out](const std::string& chunk) {
        if (out.size() < 4096) out += chunk;
      },
      cancel != nullptr ? *cancel : no, no);
  fs::remove_all(dir, ec);
  if (o.status == queue::JobStatus::kSucceeded && out.find(cc::kKilnProbeAnswer) != std::string::npos)
    return Status::Ok();
  if (o.status == queue::JobStatus::kCancelled) return Unavailable("the container probe was cancelled");
  if (o.start_error == StartError::kSetup) return Unavailable("cannot prepare the container probe: " + o.result.error);
  std::string why = !o.result.error.empty() ? o.result.error : "exit code " + std::to_string(o.result.exit_code);
  if (o.result.timed_out) why = "it did not finish within " + std::to_string(timeout_s) + " s";
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  if (out.size() > 300) out = out.substr(out.size() - 300);
  return FailedPrecondition("runc could not start a container (" + why + ")" + (out.empty() ? "" : ": " + out));
}

HealthProbe::HealthProbe(std::vector<std::pair<std::string, std::string>> stores, Sandbox* sandbox,
                         std::chrono::milliseconds check_interval, StartContainer start_container)
    : stores_(std::move(stores)),
      sandbox_(sandbox),
      start_container_(std::move(start_container)),
      check_interval_(check_interval) {}

HealthProbe::~HealthProbe() {
  stopping_ = true;
  std::thread t;
  {
    std::lock_guard g(mu_);
    t = std::move(probe_);
  }
  if (t.joinable()) t.join();
}

void HealthProbe::SetInterval(std::chrono::milliseconds check_interval) {
  std::lock_guard g(mu_);
  check_interval_ = check_interval;
}

v1::HealthReport HealthProbe::Measure() {
  v1::HealthReport r;
  for (const auto& [name, dir] : stores_) {
    int64_t free = 0, total = 0;
    if (!FreeDisk(dir, free, total)) continue;
    auto* d = r.add_disks();
    d->set_store(name);
    d->set_free_bytes(free);
    d->set_total_bytes(total);
  }
  double load[1] = {0};
  if (::getloadavg(load, 1) == 1) r.set_load1(load[0]);
  r.set_cpus(static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency())));
  if (sandbox_ != nullptr) {
    std::lock_guard g(mu_);
    auto now = std::chrono::steady_clock::now();
    // The check that confirms a first failure comes sooner; then the interval.
    const auto wait = failures_ == 1 ? std::min(check_interval_, kRecheckAfter) : check_interval_;
    if (!probing_ && (!started_ || now - runc_at_ >= wait)) {
      started_ = true;
      probing_ = true;
      runc_at_ = now;
      if (probe_.joinable()) probe_.join();  // it ended: probing_ was false
      probe_ = std::thread([this] {
        Status s = sandbox_->Check();
        if (s.ok() && start_container_) s = start_container_(stopping_);
        std::lock_guard done(mu_);
        if (s.code() == Code::kUnavailable) {
          // Not runc's doing (the probe could not be set up): the last
          // verdict stands, and the next interval tries again.
          if (!stopping_) spdlog::warn("health: container probe skipped: {}", s.message());
          probing_ = false;
          return;
        }
        failures_ = s.ok() ? 0 : failures_ + 1;
        if (failures_ == 1 && !(runc_.checked() && !runc_.ok())) {
          // Once is no verdict: the next check comes soon and decides.
          spdlog::warn("health: container probe failed; runc is reported failing if the next check fails too "
                       "recheck_in_ms={}: {}",
                       std::min(check_interval_, kRecheckAfter).count(), s.message());
          probing_ = false;
          return;
        }
        runc_.set_checked(true);
        runc_.set_ok(s.ok());
        runc_.set_error(s.ok() ? "" : s.message().substr(0, 512));
        runc_.set_checked_ms(NowUnixMs());
        probing_ = false;
      });
    }
    if (runc_.checked()) *r.mutable_runc() = runc_;
  }
  r.set_clock_ms(NowUnixMs());  // last: the controller compares it with when it reads the report
  return r;
}

}  // namespace kiln::worker
