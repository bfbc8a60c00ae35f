#include "worker/health.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstdlib>
#include <thread>

#include "common/util.h"
#include "worker/sandbox.h"

namespace kiln::worker {

bool FreeDisk(const std::string& path, int64_t& free_bytes, int64_t& total_bytes) {
  struct statvfs v {};
  if (::statvfs(path.c_str(), &v) != 0) return false;
  free_bytes = static_cast<int64_t>(v.f_bavail) * static_cast<int64_t>(v.f_frsize);
  total_bytes = static_cast<int64_t>(v.f_blocks) * static_cast<int64_t>(v.f_frsize);
  return true;
}

HealthProbe::HealthProbe(std::vector<std::pair<std::string, std::string>> stores, Sandbox* sandbox,
                         std::chrono::milliseconds check_interval)
    : stores_(std::move(stores)), sandbox_(sandbox), check_interval_(check_interval) {}

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
    if (!runc_.checked() || now - runc_at_ >= check_interval_) {
      Status s = sandbox_->Check();
      runc_.set_checked(true);
      runc_.set_ok(s.ok());
      runc_.set_error(s.ok() ? "" : s.message().substr(0, 512));
      runc_.set_checked_ms(NowUnixMs());
      runc_at_ = now;
    }
    *r.mutable_runc() = runc_;
  }
  r.set_clock_ms(NowUnixMs());  // last: the controller compares it with when it reads the report
  return r;
}

}  // namespace kiln::worker
