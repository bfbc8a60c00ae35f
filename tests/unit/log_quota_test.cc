// Which rules the log pruning pass applies to each project, and what a job
// whose log went for each says (controller/log_quota.*).

#include <gtest/gtest.h>

#include "controller/log_quota.h"

namespace kiln {
namespace {

TEST(LogQuotas, AProjectsSettingsOverrideTheFarmsDefaultsAndTheTextsSaySo) {
  config::ControllerConfig farm;  // 30d, no per-project cap, 100 GiB in all
  std::map<std::string, config::ProjectConfig> projects;
  projects["default"] = config::ProjectConfig{};
  projects["web"].log_retention_ms = 1000;
  projects["web"].log_max_bytes = int64_t{2} << 20;
  projects["keep"].log_retention_ms = 0;  // kept for ever, and no cap: nothing to do
  auto plan = controller::PlanLogQuotas(projects, farm);
  ASSERT_EQ(plan.projects.size(), 2u);  // "keep" has no rule at all
  const auto& def = plan.projects[0];
  EXPECT_EQ(def.project, "default");
  EXPECT_EQ(def.retention_ms, 30LL * 86'400'000);
  EXPECT_EQ(def.retention_why, "older than project default's log_retention of 30d, the farm's default");
  EXPECT_EQ(def.max_bytes, 0);
  const auto& web = plan.projects[1];
  EXPECT_EQ(web.project, "web");
  EXPECT_EQ(web.retention_ms, 1000);
  EXPECT_EQ(web.retention_why, "older than project web's log_retention of 1s");
  EXPECT_EQ(web.max_bytes, int64_t{2} << 20);
  EXPECT_EQ(web.max_bytes_why, "project web over its log_max_bytes of 2 MiB");
  EXPECT_EQ(plan.total_max_bytes, int64_t{100} << 30);
  EXPECT_EQ(plan.total_why, "the farm's stored logs over its log_max_bytes of 100 GiB");

  farm.project_log_max_bytes = 5000;
  farm.log_max_bytes = 0;
  plan = controller::PlanLogQuotas(projects, farm);
  ASSERT_EQ(plan.projects.size(), 3u);
  EXPECT_EQ(plan.projects[1].project, "keep");
  EXPECT_EQ(plan.projects[1].retention_ms, 0);
  EXPECT_EQ(plan.projects[1].max_bytes, 5000);
  EXPECT_EQ(plan.projects[1].max_bytes_why, "project keep over its log_max_bytes of 5000 bytes, the farm's "
                                            "project_log_max_bytes");
  EXPECT_EQ(plan.total_max_bytes, 0);
}

}  // namespace
}  // namespace kiln
