// The health checker's judgement (controller/health.*): which report fails
// which check, with what words, and when a worker returns to service.

#include "controller/health.h"

#include <gtest/gtest.h>

namespace kiln::controller {
namespace {

using namespace std::chrono_literals;

v1::HealthReport Report(int64_t now_ms, int64_t free_mb, int64_t total_mb = 1000) {
  v1::HealthReport r;
  r.set_clock_ms(now_ms);
  auto* d = r.add_disks();
  d->set_store("work_dir");
  d->set_free_bytes(free_mb << 20);
  d->set_total_bytes(total_mb << 20);
  r.set_load1(0.5);
  r.set_cpus(2);
  return r;
}

TEST(HealthCheck, AFullDiskFailsWithTheNumbers) {
  HealthThresholds t;
  t.min_free_bytes = int64_t{100} << 20;
  t.min_free_percent = 0;
  auto f = CheckHealthReport(Report(1'000'000, 12), 1'000'000, t);
  EXPECT_EQ(f.check, "disk");
  EXPECT_EQ(f.reason, "free disk in work_dir 12 MiB (1.2%) below 100 MiB (health_min_free_disk)");
  EXPECT_EQ(CheckHealthReport(Report(1'000'000, 200), 1'000'000, t).check, "");
}

TEST(HealthCheck, PercentClockLoadAndRuncEachFail) {
  HealthThresholds t;
  t.min_free_bytes = 0;
  t.min_free_percent = 10;
  EXPECT_EQ(CheckHealthReport(Report(1'000'000, 50), 1'000'000, t).reason,
            "free disk in work_dir 5.0% (50 MiB of 1000 MiB) below 10% (health_min_free_percent)");
  t.min_free_percent = 0;
  auto skew = CheckHealthReport(Report(1'000'000, 50), 1'045'000, t);
  EXPECT_EQ(skew.reason, "clock behind the controller's by 45.0 s, more than 30.0 s (health_max_clock_skew)");
  auto r = Report(1'000'000, 50);
  r.set_load1(9);
  EXPECT_EQ(CheckHealthReport(r, 1'000'000, t).check, "") << "load is off by default";
  t.max_load_per_cpu = 4;
  EXPECT_EQ(CheckHealthReport(r, 1'000'000, t).reason, "load average 9.0 on 2 CPUs above 4.0 per CPU (health_max_load_per_cpu)");
  r.set_load1(1);
  r.mutable_runc()->set_checked(true);
  r.mutable_runc()->set_error("runc is not installed (apt install runc)");
  EXPECT_EQ(CheckHealthReport(r, 1'000'000, t).reason, "runc check failed: runc is not installed (apt install runc)");
}

TEST(HealthCheck, UntrustedReportsAreBounded) {
  auto r = Report(1000, 10);
  EXPECT_TRUE(ValidateHealthReport(r).ok());
  auto bad = r;
  bad.mutable_disks(0)->set_free_bytes(int64_t{2000} << 20);
  EXPECT_FALSE(ValidateHealthReport(bad).ok());
  bad = r;
  bad.mutable_disks(0)->set_store("../etc");
  EXPECT_FALSE(ValidateHealthReport(bad).ok());
  bad = r;
  *bad.add_disks() = r.disks(0);
  EXPECT_FALSE(ValidateHealthReport(bad).ok());
  bad = r;
  bad.set_load1(-1);
  EXPECT_FALSE(ValidateHealthReport(bad).ok());
  bad = r;
  bad.set_clock_ms(0);
  EXPECT_FALSE(ValidateHealthReport(bad).ok());
  bad = r;
  bad.mutable_runc()->set_error(std::string(513, 'x'));
  EXPECT_FALSE(ValidateHealthReport(bad).ok());
}

TEST(HealthState, UnhealthyAtOnceHealthyOnlyAfterPassingForRecoverAfter) {
  HealthState s;
  auto t0 = HealthState::Clock::now();
  EXPECT_FALSE(s.Observe({}, t0, 10s).changed);
  auto c = s.Observe({"disk", "full"}, t0, 10s);
  EXPECT_TRUE(c.changed);
  EXPECT_FALSE(c.healthy);
  EXPECT_EQ(c.reason, "full");
  EXPECT_FALSE(s.Observe({"disk", "still full"}, t0 + 1s, 10s).reason_changed);
  EXPECT_TRUE(s.Observe({"clock", "skewed"}, t0 + 2s, 10s).reason_changed);
  EXPECT_FALSE(s.Observe({}, t0 + 3s, 10s).changed);
  EXPECT_FALSE(s.Observe({}, t0 + 12s, 10s).changed);
  // A failure meanwhile starts the wait again.
  EXPECT_FALSE(s.Observe({"disk", "full"}, t0 + 12500ms, 10s).changed);
  EXPECT_FALSE(s.Observe({}, t0 + 13s, 10s).changed);
  EXPECT_FALSE(s.healthy());
  c = s.Observe({}, t0 + 23s, 10s);
  EXPECT_TRUE(c.changed);
  EXPECT_TRUE(c.healthy);
  EXPECT_TRUE(s.healthy());
}

TEST(HealthState, AWorkerRecordedUnhealthyStaysSoUntilItPasses) {
  HealthState s(/*healthy=*/false);
  auto t0 = HealthState::Clock::now();
  EXPECT_FALSE(s.Observe({}, t0, 1s).changed);
  EXPECT_TRUE(s.Observe({}, t0 + 1s, 1s).changed);
}

}  // namespace
}  // namespace kiln::controller
