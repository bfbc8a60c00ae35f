// The deployer's plan (cluster/plan.h): what it starts, replaces, drains and
// destroys, and why.

#include <gtest/gtest.h>

#include "cluster/plan.h"

namespace kiln::cluster {
namespace {

constexpr int64_t kNow = 1'000'000'000;

Spec Cluster(int min, int max) {
  Spec s;
  s.cluster = "c";
  s.min_workers = min;
  s.max_workers = max;
  s.policy.scale_in_delay_ms = 60'000;
  return s;
}

// A registered, healthy, idle (since `idle_ms` ago) instance on configuration h.
void Add(Actual& a, const std::string& id, int running = 0, int64_t idle_ms = 120'000, const std::string& h = "h") {
  Instance in;
  in.id = id;
  in.config_hash = h;
  in.state = "running";
  in.worker_id = "w-" + id;
  in.created_at_ms = kNow - 600'000;
  in.register_deadline_ms = kNow - 500'000;
  a.instances.push_back(in);
  WorkerView w;
  w.state = "connected";
  w.running = running;
  w.idle_since_ms = kNow - idle_ms;
  a.workers[in.worker_id] = w;
}

int Count(const Plan& p, Op op) {
  int n = 0;
  for (const auto& s : p.steps) n += s.op == op ? 1 : 0;
  return n;
}

TEST(ClusterPlan, StartsUpToTheDesiredCountWithinMinAndMax) {
  Actual a;
  Add(a, "i1");
  auto p = MakePlan(Cluster(1, 3), 5, a, "h", kNow);
  EXPECT_EQ(p.desired, 3) << "clamped to max";
  EXPECT_EQ(p.serving, 1);
  EXPECT_EQ(Count(p, Op::kStart), 2);
  p = MakePlan(Cluster(2, 3), 0, Actual{}, "h", kNow);
  EXPECT_EQ(p.desired, 2) << "clamped to min";
  EXPECT_EQ(Count(p, Op::kStart), 2);
}

TEST(ClusterPlan, AClusterAsDesiredPlansNothing) {
  Actual a;
  Add(a, "i1");
  auto p = MakePlan(Cluster(1, 3), 1, a, "h", kNow);
  EXPECT_TRUE(p.empty());
  EXPECT_NE(Render(p).find("no changes"), std::string::npos) << Render(p);
  EXPECT_NE(Render(p).find("Plan: 0 to start, 0 to replace, 0 to drain, 0 to destroy."), std::string::npos);
}

TEST(ClusterPlan, ScaleInDrainsOnlyWorkersIdlePastTheDelayLongestIdleFirst) {
  Actual a;
  Add(a, "busy", /*running=*/2);
  Add(a, "fresh", 0, /*idle_ms=*/10'000);  // idle, but not for the scale-in delay
  Add(a, "old", 0, 500'000);
  Add(a, "older", 0, 900'000);
  auto p = MakePlan(Cluster(1, 4), 1, a, "h", kNow);
  ASSERT_EQ(Count(p, Op::kDrain), 2) << Render(p);
  EXPECT_EQ(p.steps[0].instance, "older");
  EXPECT_EQ(p.steps[1].instance, "old");
  EXPECT_EQ(Count(p, Op::kStart), 0);
}

TEST(ClusterPlan, AnUnhealthyWorkerOrAnOldConfigurationIsReplaced) {
  Actual a;
  Add(a, "sick");
  a.workers["w-sick"].healthy = false;
  a.workers["w-sick"].health_reason = "free disk in work_dir 12 MB below 1024 MB";
  Add(a, "stale", 0, 120'000, "old-hash");
  auto p = MakePlan(Cluster(2, 2), 2, a, "h", kNow);
  ASSERT_EQ(Count(p, Op::kReplace), 2) << Render(p);
  EXPECT_EQ(Count(p, Op::kStart), 0) << "a replacement starts its own successor";
  EXPECT_NE(Render(p).find("~ replace  sick  (worker w-sick is unhealthy: free disk"), std::string::npos) << Render(p);
  EXPECT_NE(Render(p).find("configuration old-hash is not the desired h"), std::string::npos) << Render(p);
}

TEST(ClusterPlan, NeverRegisteredGoneAndDrainedInstancesAreDestroyed) {
  Actual a;
  Instance late;
  late.id = "late";
  late.config_hash = "h";
  late.state = "starting";
  late.register_deadline_ms = kNow - 1;
  a.instances.push_back(late);
  Instance waiting = late;
  waiting.id = "waiting";
  waiting.register_deadline_ms = kNow + 30'000;
  a.instances.push_back(waiting);
  Add(a, "dead");
  a.workers["w-dead"].state = "lost";
  Add(a, "vanished");
  a.instances.back().alive = false;
  Add(a, "drained");
  a.instances.back().state = "draining";
  a.workers["w-drained"].state = "draining";
  Add(a, "still-draining", /*running=*/1);
  a.instances.back().state = "draining";
  a.workers["w-still-draining"].state = "draining";
  auto p = MakePlan(Cluster(1, 1), 1, a, "h", kNow);
  EXPECT_EQ(Count(p, Op::kDestroy), 4) << Render(p);
  for (const auto& s : p.steps) EXPECT_NE(s.instance, "still-draining") << "its job finishes first";
  for (const auto& s : p.steps) EXPECT_NE(s.instance, "waiting") << "before its deadline";
  EXPECT_EQ(p.serving, 1) << "the one still registering counts";
  EXPECT_EQ(Count(p, Op::kStart), 0);
}

TEST(ClusterPlan, AWorkerJustDisconnectedIsNotDestroyedWhileItMayReconnect) {
  Actual a;
  Add(a, "reconnecting", /*running=*/2);
  a.workers["w-reconnecting"].state = "disconnected";  // a controller restart, a network blip
  auto p = MakePlan(Cluster(1, 1), 1, a, "h", kNow);
  EXPECT_TRUE(p.empty()) << Render(p);
  EXPECT_EQ(p.serving, 1);
  a.workers["w-reconnecting"].state = "lost";  // a minute past its lease
  p = MakePlan(Cluster(1, 1), 1, a, "h", kNow);
  EXPECT_EQ(Count(p, Op::kDestroy), 1) << Render(p);
  EXPECT_EQ(Count(p, Op::kStart), 1) << Render(p);
}

TEST(ClusterPlan, TheConfigHashFollowsWhatIsDeployed) {
  Spec s = Cluster(1, 1);
  const std::string h = ConfigHash(s, "0.1.0");
  EXPECT_EQ(h, ConfigHash(s, "0.1.0"));
  EXPECT_NE(h, ConfigHash(s, "0.2.0"));
  Spec more = s;
  more.slots_per_worker = 4;
  EXPECT_NE(h, ConfigHash(more, "0.1.0"));
  Spec bounds = s;
  bounds.max_workers = 9;
  EXPECT_EQ(h, ConfigHash(bounds, "0.1.0")) << "the bounds are not the workers' configuration";
}

}  // namespace
}  // namespace kiln::cluster
