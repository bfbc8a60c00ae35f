#include "controller/health.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <set>

#include <nlohmann/json.hpp>

namespace kiln::controller {
namespace {

std::string Mb(int64_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

std::string Fixed(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

}  // namespace

HealthThresholds ThresholdsOf(const config::ControllerConfig& c) {
  return {c.health_min_free_disk,  c.health_min_free_percent,    c.health_max_clock_skew, c.health_max_load_per_cpu,
          c.health_recover_after, c.health_max_infra_failures, c.health_infra_window};
}

Status ValidateHealthReport(const v1::HealthReport& r) {
  if (r.clock_ms() <= 0) return InvalidArgument("health report: clock_ms must be positive");
  if (r.disks_size() > 8) return InvalidArgument("health report: at most 8 disks");
  static const std::set<std::string> kStores = {"work_dir", "images", "cas"};
  std::set<std::string> seen;
  for (const auto& d : r.disks()) {
    if (!kStores.count(d.store())) return InvalidArgument("health report: unknown store \"" + d.store().substr(0, 32) + "\"");
    if (!seen.insert(d.store()).second) return InvalidArgument("health report: store " + d.store() + " twice");
    if (d.free_bytes() < 0 || d.total_bytes() < 0 || d.free_bytes() > d.total_bytes())
      return InvalidArgument("health report: store " + d.store() + " needs 0 <= free_bytes <= total_bytes");
  }
  if (!std::isfinite(r.load1()) || r.load1() < 0 || r.load1() > 1e6)
    return InvalidArgument("health report: load1 out of range");
  if (r.cpus() < 0 || r.cpus() > 65536) return InvalidArgument("health report: cpus out of range");
  if (r.runc().error().size() > 512) return InvalidArgument("health report: runc error longer than 512 bytes");
  return Status::Ok();
}

HealthFailure CheckHealthReport(const v1::HealthReport& r, int64_t now_ms, const HealthThresholds& t) {
  for (const auto& d : r.disks()) {
    const double pct = d.total_bytes() > 0 ? 100.0 * static_cast<double>(d.free_bytes()) / static_cast<double>(d.total_bytes()) : 0;
    if (d.free_bytes() < t.min_free_bytes)
      return {"disk", "free disk in " + d.store() + " " + Mb(d.free_bytes()) + " (" + Fixed(pct) + "%) below " +
                          Mb(t.min_free_bytes) + " (health_min_free_disk)"};
    if (t.min_free_percent > 0 && d.total_bytes() > 0 && pct < t.min_free_percent)
      return {"disk", "free disk in " + d.store() + " " + Fixed(pct) + "% (" + Mb(d.free_bytes()) + " of " +
                          Mb(d.total_bytes()) + ") below " + std::to_string(t.min_free_percent) +
                          "% (health_min_free_percent)"};
  }
  const int64_t skew = now_ms - r.clock_ms();
  if (std::llabs(skew) > t.max_clock_skew.count())
    return {"clock", "clock " + std::string(skew > 0 ? "behind" : "ahead of") + " the controller's by " +
                         Fixed(static_cast<double>(std::llabs(skew)) / 1000.0) + " s, more than " +
                         Fixed(static_cast<double>(t.max_clock_skew.count()) / 1000.0) + " s (health_max_clock_skew)"};
  if (t.max_load_per_cpu > 0 && r.cpus() > 0 && r.load1() > t.max_load_per_cpu * r.cpus())
    return {"load", "load average " + Fixed(r.load1()) + " on " + std::to_string(r.cpus()) + " CPUs above " +
                        Fixed(t.max_load_per_cpu) + " per CPU (health_max_load_per_cpu)"};
  if (r.runc().checked() && !r.runc().ok())
    return {"runc", "runc check failed: " + r.runc().error()};
  return {};
}

std::string HealthReportJson(const v1::HealthReport& r, int64_t now_ms) {
  nlohmann::json disks = nlohmann::json::object();
  for (const auto& d : r.disks()) disks[d.store()] = {{"free_bytes", d.free_bytes()}, {"total_bytes", d.total_bytes()}};
  nlohmann::json j = {{"disks", disks},
                      {"load1", r.load1()},
                      {"cpus", r.cpus()},
                      {"clock_ms", r.clock_ms()},
                      {"clock_skew_ms", now_ms - r.clock_ms()},
                      {"received_ms", now_ms}};
  if (r.runc().checked())
    j["runc"] = {{"ok", r.runc().ok()}, {"error", r.runc().error()}, {"checked_ms", r.runc().checked_ms()}};
  return j.dump();
}

void HealthState::NoteInfraFailure(Clock::time_point now, const std::string& what) {
  infra_.push_back(now);
  if (infra_.size() > 64) infra_.pop_front();
  last_infra_ = what.substr(0, 300);
}

void HealthState::SeedInfraFailures(const std::vector<int64_t>& at_ms, int64_t now_ms, Clock::time_point now,
                                    const std::string& last) {
  infra_.clear();
  for (int64_t at : at_ms) {
    const int64_t ago = std::max<int64_t>(0, now_ms - at);
    infra_.push_back(now - std::chrono::milliseconds(ago));
  }
  while (infra_.size() > 64) infra_.pop_front();
  last_infra_ = last.substr(0, 300);
}

HealthFailure HealthState::CheckInfraFailures(Clock::time_point now, const HealthThresholds& t) {
  while (!infra_.empty() && now - infra_.front() > t.infra_window) infra_.pop_front();
  if (t.max_infra_failures <= 0 || static_cast<int>(infra_.size()) < t.max_infra_failures) return {};
  return {"infra", std::to_string(infra_.size()) + " infrastructure failures of jobs in the last " +
                       std::to_string(t.infra_window.count() / 1000) + " s, at least " +
                       std::to_string(t.max_infra_failures) + " (health_max_infra_failures); the last: " + last_infra_};
}

HealthState::Change HealthState::Observe(const HealthFailure& f, Clock::time_point now,
                                         std::chrono::milliseconds recover_after) {
  Change c;
  if (!f.check.empty()) {
    passing_ = false;
    c.healthy = false;
    c.reason = f.reason;
    c.changed = healthy_;
    c.reason_changed = !healthy_ && check_ != f.check;
    healthy_ = false;
    check_ = f.check;
    return c;
  }
  if (healthy_) return c;
  if (!passing_) {
    passing_ = true;
    passing_since_ = now;
  }
  if (now - passing_since_ < recover_after) {
    c.healthy = false;
    return c;
  }
  healthy_ = true;
  passing_ = false;
  check_.clear();
  c.changed = true;
  return c;
}

}  // namespace kiln::controller
