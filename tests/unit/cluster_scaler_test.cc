// The autoscaler's decision (cluster/scaler.h): how many workers a cluster
// should have, and why.

#include <gtest/gtest.h>

#include "cluster/scaler.h"

namespace kiln::cluster {
namespace {

constexpr int64_t kNow = 1'000'000'000;
using A = Decision::Action;

Spec Cluster(int min, int max, int slots = 1) {
  Spec s;
  s.cluster = "c";
  s.min_workers = min;
  s.max_workers = max;
  s.slots_per_worker = slots;
  s.policy.target_queue_wait_ms = 30'000;
  s.policy.jobs_per_slot = 1.0;
  s.policy.scale_up_step = 1;
  s.policy.scale_up_cooldown_ms = 30'000;
  s.policy.scale_down_cooldown_ms = 120'000;
  return s;
}

Signals Load(int64_t queued, int64_t running, int64_t actions = 0, int64_t wait_ms = 0) {
  Signals g;
  g.queued_jobs = queued;
  g.running_jobs = running;
  g.queued_actions = actions;
  g.oldest_wait_ms = wait_ms;
  return g;
}

TEST(Scaler, ABurstScalesUpOneStepAtATimeAfterEachCooldown) {
  Spec s = Cluster(1, 3);
  // 40 jobs queued, one running on the one worker: 41 workers asked, 3 at most.
  auto d = Decide(s, 1, Load(40, 1), 0, kNow);
  EXPECT_EQ(d.action, A::kScaleUp);
  EXPECT_EQ(d.previous, 1);
  EXPECT_EQ(d.desired, 2) << "one step at a time";
  EXPECT_EQ(d.wanted, 3);
  EXPECT_EQ(d.reason, "40 jobs queued, 1 running, 0 actions queued: 41 workers of 1 slots at 1 jobs per slot; at most 1 more at a time");
  // Within the scale-up cooldown: held back, and said so.
  auto held = Decide(s, 2, Load(39, 2), kNow - 10'000, kNow);
  EXPECT_EQ(held.action, A::kHold);
  EXPECT_EQ(held.desired, 2);
  EXPECT_NE(held.reason.find("within the scale-up cooldown 30s"), std::string::npos) << held.reason;
  EXPECT_NE(held.reason.find("10s ago"), std::string::npos) << held.reason;
  // After it: the next step, to the maximum.
  auto up = Decide(s, 2, Load(30, 2), kNow - 30'000, kNow);
  EXPECT_EQ(up.action, A::kScaleUp);
  EXPECT_EQ(up.desired, 3);
  EXPECT_EQ(Decide(s, 3, Load(20, 3), kNow - 60'000, kNow).action, A::kNone) << "at the maximum: nothing to change";
}

TEST(Scaler, ALargerStepAndSlotsAndJobsPerSlotSizeTheFleet) {
  Spec s = Cluster(0, 10, 4);
  s.policy.scale_up_step = 5;
  s.policy.jobs_per_slot = 2.0;  // a worker of 4 slots carries 8 jobs
  auto d = Decide(s, 0, Load(17, 0), 0, kNow);
  EXPECT_EQ(d.action, A::kScaleUp);
  EXPECT_EQ(d.desired, 3) << "ceil(17 / 8)";
  // Remote actions count as load too.
  EXPECT_EQ(Decide(s, 0, Load(0, 0, 9), 0, kNow).desired, 2);
}

TEST(Scaler, AnIdleClusterScalesDownToItsMinimumAfterTheCooldown) {
  Spec s = Cluster(1, 3);
  auto held = Decide(s, 3, Load(0, 0), kNow - 60'000, kNow);
  EXPECT_EQ(held.action, A::kHold);
  EXPECT_EQ(held.desired, 3);
  EXPECT_NE(held.reason.find("within the scale-down cooldown 120s"), std::string::npos) << held.reason;
  auto down = Decide(s, 3, Load(0, 0), kNow - 120'000, kNow);
  EXPECT_EQ(down.action, A::kScaleDown);
  EXPECT_EQ(down.desired, 1) << "never below the minimum";
  // Running jobs keep their workers wanted.
  EXPECT_EQ(Decide(s, 3, Load(0, 2), kNow - 120'000, kNow).desired, 2);
}

TEST(Scaler, AWaitOverTheTargetAsksForOneMoreWhateverTheLoadSays) {
  Spec s = Cluster(1, 5, 4);
  // 2 queued on a worker of 4 slots would fit, but they have waited 45 s.
  auto d = Decide(s, 1, Load(2, 0, 0, 45'000), 0, kNow);
  EXPECT_EQ(d.action, A::kScaleUp);
  EXPECT_EQ(d.desired, 2);
  EXPECT_EQ(d.reason, "the oldest of 2 queued jobs has waited 45s, over the target 30s");
  s.policy.target_queue_wait_ms = 0;  // off
  EXPECT_EQ(Decide(s, 1, Load(2, 0, 0, 45'000), 0, kNow).action, A::kNone);
}

TEST(Scaler, BoundsChangedByAnOperatorApplyAtOnce) {
  Spec s = Cluster(2, 4);
  auto up = Decide(s, 0, Load(0, 0), kNow - 1'000, kNow);
  EXPECT_EQ(up.action, A::kScaleUp);
  EXPECT_EQ(up.desired, 2) << "below the minimum: no cooldown, and the minimum even past the step";
  EXPECT_NE(up.reason.find("0 is below the minimum 2"), std::string::npos) << up.reason;
  auto down = Decide(s, 6, Load(10, 6), kNow - 1'000, kNow);
  EXPECT_EQ(down.action, A::kScaleDown);
  EXPECT_EQ(down.desired, 4);
  EXPECT_EQ(down.reason, "6 is above the maximum 4");
}

}  // namespace
}  // namespace kiln::cluster
