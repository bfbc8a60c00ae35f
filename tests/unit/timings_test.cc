// What the controller accepts of a worker's phase timings (JobUpdate.timings,
// controller/request_checks.*): it is untrusted, and what passes is stored.

#include <gtest/gtest.h>

#include "config/config.h"
#include "controller/request_checks.h"

namespace kiln {
namespace {

v1::JobUpdate Final() {
  v1::JobUpdate u;
  u.set_job_id(7);
  u.set_attempt(1);
  u.set_status(v1::SUCCEEDED);
  u.set_started_at_ms(1'000'400);
  u.set_finished_at_ms(1'000'900);
  u.set_log_size(12);
  auto* t = u.mutable_timings();
  t->set_received_ms(1'000'000);
  t->set_inputs_ms(1'000'100);
  t->set_image_ms(1'000'300);
  t->set_ended_ms(1'000'800);
  t->set_input_bytes(4096);
  t->set_output_bytes(100);
  return u;
}

TEST(Timings, PhasesInOrderPass) {
  EXPECT_TRUE(controller::ValidateTimings(Final()).ok());
  v1::JobUpdate plain = Final();
  plain.mutable_timings()->set_image_ms(0);  // no image: a phase that did not happen
  EXPECT_TRUE(controller::ValidateTimings(plain).ok());
  v1::JobUpdate none = Final();
  none.clear_timings();
  none.set_status(v1::RUNNING);
  EXPECT_TRUE(controller::ValidateTimings(none).ok()) << "no timings: nothing to check";
}

TEST(Timings, OutOfOrderOrOutOfBoundsIsRefusedNamingTheValue) {
  v1::JobUpdate u = Final();
  u.mutable_timings()->set_ended_ms(1'000'200);  // before it started
  Status s = controller::ValidateTimings(u);
  ASSERT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_EQ(s.message(), "timings: ended_ms (1000200) is before started_at_ms (1000400)");

  u = Final();
  u.mutable_timings()->set_input_bytes(-1);
  EXPECT_EQ(controller::ValidateTimings(u).message(), "timings: a byte count is negative or over 1 PiB");
  u = Final();
  u.mutable_timings()->set_received_ms(-5);
  EXPECT_EQ(controller::ValidateTimings(u).message(), "timings: impossible received_ms");
  u = Final();
  u.set_finished_at_ms(u.started_at_ms() + 401LL * 86'400'000);
  EXPECT_EQ(controller::ValidateTimings(u).message(), "timings: finished_at_ms is more than 400 days after ended_ms");
  u = Final();
  u.set_status(v1::RUNNING);
  EXPECT_EQ(controller::ValidateTimings(u).message(), "timings come only with a final report");
  u = Final();
  u.set_finished_at_ms(0);
  EXPECT_EQ(controller::ValidateTimings(u).message(), "timings: a final report needs finished_at_ms");
}

TEST(ControllerConfig, HistoryDefaultsAndBounds) {
  config::ControllerConfig c;
  c.database_url = "host=/tmp";
  EXPECT_TRUE(c.job_timings);
  EXPECT_EQ(c.sample_interval.count(), 60'000);
  EXPECT_EQ(c.sample_retention.count(), 30LL * 86'400'000);
  ASSERT_TRUE(config::Apply(c, "sample_interval", "0").ok());
  ASSERT_TRUE(config::Apply(c, "sample_retention", "0").ok());
  ASSERT_TRUE(config::Apply(c, "job_timings", "false").ok());
  EXPECT_TRUE(config::Validate(c).ok());
  ASSERT_TRUE(config::Apply(c, "sample_interval", "10ms").ok());
  EXPECT_EQ(config::Validate(c).message(), "sample_interval must be at least 100ms (or 0: no samples)");
  ASSERT_TRUE(config::Apply(c, "sample_interval", "1s").ok());
  ASSERT_TRUE(config::Apply(c, "sample_retention", "500ms").ok());
  EXPECT_FALSE(config::Validate(c).ok());
  EXPECT_FALSE(config::Apply(c, "job_timings", "sometimes").ok());
}

}  // namespace
}  // namespace kiln
