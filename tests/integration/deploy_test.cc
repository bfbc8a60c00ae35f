// The deployer with the process provider, and with the command provider
// driving deploy/provider-example.sh: real kiln-worker processes that the
// controller starts, drains, replaces and destroys (issue 27, item 4).

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "harness/deploy_farm.h"

namespace kiln {
namespace {
namespace fs = std::filesystem;

class Deploy : public DeployFarm {
 protected:
  // Everything a plan could change: instance rows, worker rows, the
  // desired state, the audit trail and the provider's directories.
  std::string Snapshot() {
    std::string files;
    std::error_code ec;
    if (fs::exists(Root(), ec))
      for (const auto& e : fs::recursive_directory_iterator(Root(), ec)) files += e.path().string() + ";";
    return Q("SELECT (SELECT coalesce(string_agg(id || state || config_hash, ',' ORDER BY id), '') FROM cluster_instances)"
             " || '|' || (SELECT coalesce(string_agg(id || state || health, ',' ORDER BY id), '') FROM workers)"
             " || '|' || (SELECT updated_at::text FROM cluster_state)"
             " || '|' || (SELECT count(*) FROM audit_log)") +
           "|" + files;
  }
};

TEST_F(Deploy, PlanChangesNothingApplyStartsWorkersAndReplacesAnUnhealthyOne) {
  StartController();
  auto set = Kiln({"clusters", "set", "default", "--min", "2", "--max", "3", "--provider", "process",
                   "--provider-settings", ProcessSettings(),
                   "--worker-config", R"({"allow_plain_jobs": true})"});
  ASSERT_EQ(set.exit_code, 0) << set.err;

  // plan: two to start, and nothing changes.
  const std::string before = Snapshot();
  auto plan = Kiln({"clusters", "plan", "default"});
  ASSERT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_NE(plan.out.find("cluster default: 0 serving, 2 desired"), std::string::npos) << plan.out;
  EXPECT_NE(plan.out.find("Plan: 2 to start, 0 to replace, 0 to drain, 0 to destroy."), std::string::npos) << plan.out;
  EXPECT_EQ(Snapshot(), before) << "kiln clusters plan changed something";
  EXPECT_FALSE(fs::exists(Root()));

  // apply: two real workers register, each in its own work_dir.
  auto apply = Kiln({"clusters", "apply", "default"});
  ASSERT_EQ(apply.exit_code, 0) << apply.err << apply.out;
  EXPECT_NE(apply.out.find("done: start default-"), std::string::npos) << apply.out;
  ASSERT_TRUE(test::WaitFor([&] { return Deployed() == "2"; }, 60s)) << Q("SELECT * FROM workers");
  EXPECT_EQ(Q("SELECT count(*) FROM cluster_instances"), "2");
  auto settled = Kiln({"clusters", "plan"});
  EXPECT_NE(settled.out.find("no changes"), std::string::npos) << settled.out;
  auto run = Kiln({"submit", "--no-input", "--", "sh", "-c", "echo on a deployed worker"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "on a deployed worker\n");

  // A worker turns unhealthy (the health checker's column, set by hand here).
  const std::string sick = Q("SELECT id FROM workers WHERE state = 'connected' ORDER BY id LIMIT 1");
  Q("UPDATE workers SET health = 'unhealthy', health_reason = 'test: work_dir full' WHERE id = '" + sick + "'");
  const std::string sick_instance =
      Q("SELECT i.id FROM cluster_instances i JOIN workers w ON w.work_dir = i.work_dir WHERE w.id = '" + sick + "'");
  ASSERT_FALSE(sick_instance.empty());
  auto replan = Kiln({"clusters", "plan", "default"});
  EXPECT_NE(replan.out.find("~ replace  " + sick_instance + "  (worker " + sick + " is unhealthy: test: work_dir full)"),
            std::string::npos)
      << replan.out;
  auto replace = Kiln({"clusters", "apply", "default"});
  ASSERT_EQ(replace.exit_code, 0) << replace.err << replace.out;
  EXPECT_NE(replace.out.find("done: drain " + sick_instance), std::string::npos) << replace.out;
  // Its successor registers; the drained worker exits, and the next apply destroys it.
  ASSERT_TRUE(test::WaitFor([&] { return Q("SELECT state FROM workers WHERE id = '" + sick + "'") == "disconnected"; },
                            60s));
  ASSERT_TRUE(test::WaitFor([&] { return Deployed() == "2"; }, 60s));
  ASSERT_TRUE(test::WaitFor(
      [&] {
        auto a = Kiln({"clusters", "apply", "default"});
        return a.out.find("done: destroy " + sick_instance) != std::string::npos;
      },
      30s));
  EXPECT_FALSE(fs::exists(Root() + "/" + sick_instance));
  EXPECT_EQ(Q("SELECT count(*) FROM cluster_instances"), "2");
  EXPECT_EQ(Q("SELECT count(*) FROM workers WHERE state = 'connected' AND health = 'healthy'"), "2");
  EXPECT_NE(Kiln({"clusters", "plan"}).out.find("no changes"), std::string::npos);
  EXPECT_EQ(Q("SELECT count(*) > 0 FROM audit_log WHERE action = 'cluster.apply'"), "t");
}

TEST_F(Deploy, TheCommandProviderWithTheExampleScriptStartsAndDrainsRealWorkers) {
  StartController();
  const std::string example = Root() + "/example";
  auto set = Kiln({"clusters", "set", "default", "--min", "2", "--max", "2", "--scale-in-delay", "0s",
                   "--provider", "command", "--provider-settings",
                   R"({"command": ")" KILN_SOURCE_DIR R"(/deploy/provider-example.sh", "root": ")" + example +
                       R"(", "worker_binary": ")" + test::BinPath("kiln-worker") + R"(", "work_dir_base": ")" +
                       Root() + R"(/work"})",
                   "--worker-config", R"({"allow_plain_jobs": true})"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  auto apply = Kiln({"clusters", "apply", "default"});
  ASSERT_EQ(apply.exit_code, 0) << apply.err << apply.out;
  // They enrol on this TLS farm with the CA certificate and join token the
  // script got on stdin, each with its own work_dir (<work_dir_base>/<id>).
  ASSERT_TRUE(test::WaitFor([&] { return Deployed() == "2"; }, 60s)) << Q("SELECT * FROM workers");
  EXPECT_EQ(Q("SELECT count(*) FROM workers w JOIN cluster_instances i ON w.work_dir = i.work_dir "
              "WHERE w.work_dir = '" + Root() + "/work/' || i.id"),
            "2");
  EXPECT_NE(Kiln({"clusters", "plan"}).out.find("no changes"), std::string::npos);
  auto run = Kiln({"submit", "--no-input", "--", "sh", "-c", "echo through the command provider"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "through the command provider\n");

  // Scaled to none: both drain (SIGTERM from the script), exit, and are destroyed.
  ASSERT_EQ(Kiln({"clusters", "set", "default", "--min", "0", "--max", "0"}).exit_code, 0);
  ASSERT_TRUE(test::WaitFor(
      [&] {
        (void)Kiln({"clusters", "apply", "default"});
        return Q("SELECT count(*) FROM cluster_instances") == "0";
      },
      60s))
      << Kiln({"clusters", "plan"}).out;
  EXPECT_EQ(Deployed(), "0");
  EXPECT_TRUE(fs::is_empty(example + "/default")) << "the script removed what it kept";
}

TEST_F(Deploy, APlanNeedsAManagedClusterAndApplyAnAdmin) {
  StartController();
  auto unmanaged = Kiln({"clusters", "plan", "default"});
  EXPECT_EQ(unmanaged.exit_code, 5);
  EXPECT_NE(unmanaged.err.find("kiln clusters set default --min N --max N"), std::string::npos) << unmanaged.err;
  auto none = Kiln({"clusters", "plan"});
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_NE(none.out.find("no managed clusters"), std::string::npos) << none.out;
}

}  // namespace
}  // namespace kiln
