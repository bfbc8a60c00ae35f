#pragma once
// The health checker's judgement of one worker (docs/operations.md,
// "Health"): a report is checked against the controller's thresholds, and a
// worker's state moves healthy -> unhealthy at the first failed check and
// back only after its checks have passed for recover_after. Pure: the
// worker service records what it decides (workers.health, sql/020).

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "config/config.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::controller {

struct HealthThresholds {
  int64_t min_free_bytes = int64_t{1} << 30;   // per store (work_dir, images, cas)
  int min_free_percent = 5;                    // per store; 0: off
  std::chrono::milliseconds max_clock_skew{30'000};
  double max_load_per_cpu = 0;                 // 0: off
  std::chrono::milliseconds recover_after{30'000};
  int max_infra_failures = 3;                  // in infra_window; 0: off
  std::chrono::milliseconds infra_window{600'000};
};

// The thresholds in effect: read with each report, replaced on SIGHUP.
class HealthSettings {
 public:
  explicit HealthSettings(HealthThresholds t = {}) : t_(t) {}
  HealthThresholds Get() const {
    std::lock_guard g(mu_);
    return t_;
  }
  void Set(const HealthThresholds& t) {
    std::lock_guard g(mu_);
    t_ = t;
  }

 private:
  mutable std::mutex mu_;
  HealthThresholds t_;
};

// The controller's health settings as thresholds.
HealthThresholds ThresholdsOf(const config::ControllerConfig& c);

// Bounds what a worker sent: InvalidArgument names the field (the report is
// then ignored and nothing changes).
Status ValidateHealthReport(const v1::HealthReport& r);

// The first check the report fails, as a sentence an operator understands
// (with the numbers), or "" if it passes. now_ms: the controller's clock.
struct HealthFailure {
  std::string check;   // disk, clock, load, runc ("" : passes)
  std::string reason;
};
HealthFailure CheckHealthReport(const v1::HealthReport& r, int64_t now_ms, const HealthThresholds& t);

// What workers.health_report keeps of a (valid) report: the disks, load,
// runc check, the worker's clock and its skew from now_ms.
std::string HealthReportJson(const v1::HealthReport& r, int64_t now_ms);

// One worker's health as this controller judges it, report after report.
class HealthState {
 public:
  using Clock = std::chrono::steady_clock;
  explicit HealthState(bool healthy = true) : healthy_(healthy) {}

  struct Change {
    bool changed = false;        // health changed: record and log it
    bool reason_changed = false; // still unhealthy, for another check: record the new reason
    bool healthy = true;
    std::string reason;          // "" when healthy
  };
  // Takes one report's verdict at `now`.
  Change Observe(const HealthFailure& f, Clock::time_point now, std::chrono::milliseconds recover_after);

  bool healthy() const { return healthy_; }

  // An infrastructure failure of a job on this worker (a setup error of its
  // own: result.infrastructure), at `now`.
  void NoteInfraFailure(Clock::time_point now, const std::string& what);
  // The failures recorded with the worker (sql/023: unix ms, oldest first,
  // by the database's clock `now_ms`), as they stand at `now`: what a new
  // session of the worker goes on from.
  void SeedInfraFailures(const std::vector<int64_t>& at_ms, int64_t now_ms, Clock::time_point now,
                         const std::string& last);
  // Fails (check "infra") while max or more infrastructure failures fell in
  // the window before `now`; forgets older ones.
  HealthFailure CheckInfraFailures(Clock::time_point now, const HealthThresholds& t);

 private:
  std::deque<Clock::time_point> infra_;  // recent infrastructure failures, oldest first (at most 64)
  std::string last_infra_;
  bool healthy_;
  std::string check_;               // the failing check while unhealthy
  bool passing_ = false;            // unhealthy, but passing since passing_since_
  Clock::time_point passing_since_{};
};

}  // namespace kiln::controller
