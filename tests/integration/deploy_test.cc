// The deployer with the process provider, and with the command provider
// driving deploy/provider-example.sh: real kiln-worker processes that the
// controller starts, drains, replaces and destroys (issue 27, item 4).

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <future>
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
  auto set = SetCommandCluster(KILN_SOURCE_DIR "/deploy/provider-example.sh", 2, 2, {"--scale-in-delay", "0s"});
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

// A create that fails after its instance started (a cloud call that timed
// out after the machine came up), whose undoing fails too, leaves the
// instance tracked: the next apply adopts its worker rather than starting
// a second one beside an untracked first.
TEST_F(Deploy, ACreateThatFailsAndCannotBeUndoneKeepsItsInstanceTracked) {
  StartController();
  const std::string wrapper = dir_.path() + "/late-provider", broken = dir_.path() + "/destroy-broken";
  test::WriteFile(wrapper, "#!/bin/sh\n"
                           "input=$(cat)\n"
                           "if [ \"$1\" = destroy ] && [ -e " + broken + " ]; then echo 'late: destroy refused' >&2; exit 1; fi\n"
                           "printf '%s' \"$input\" | " KILN_SOURCE_DIR "/deploy/provider-example.sh \"$@\" || exit $?\n"
                           "if [ \"$1\" = create ]; then echo 'late: timed out waiting for the machine' >&2; exit 1; fi\n");
  ASSERT_EQ(::chmod(wrapper.c_str(), 0755), 0);
  test::WriteFile(broken, "");
  auto set = SetCommandCluster(wrapper, 1, 1);
  ASSERT_EQ(set.exit_code, 0) << set.err;
  auto apply = Kiln({"clusters", "apply", "default"});
  EXPECT_NE(apply.exit_code, 0) << apply.out;
  EXPECT_NE(apply.err.find("late: timed out waiting for the machine"), std::string::npos) << apply.out << apply.err;
  EXPECT_EQ(Q("SELECT count(*) FROM cluster_instances"), "1") << "the instance that may run is still tracked";
  // Its worker came up all the same, and registers.
  ASSERT_TRUE(test::WaitFor([&] { return Deployed() == "1"; }, 60s)) << Q("SELECT * FROM workers");
  std::filesystem::remove(broken);
  // Adopted: nothing to start, and no second worker.
  auto plan = Kiln({"clusters", "plan", "default"});
  EXPECT_NE(plan.out.find("no changes"), std::string::npos) << plan.out;
  ASSERT_EQ(Kiln({"clusters", "apply", "default"}).exit_code, 0);
  EXPECT_EQ(Q("SELECT count(*) FROM workers"), "1");
  EXPECT_EQ(Q("SELECT count(*) FROM cluster_instances"), "1");
  auto run = Kiln({"submit", "--no-input", "--", "sh", "-c", "echo adopted"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "adopted\n");
}

// An apply whose farm lock is lost mid-way (its connection cut: here its
// backend terminated while a create runs) stops before its next step:
// another controller may be applying by then. The next apply finishes.
TEST_F(Deploy, AnApplyThatLosesTheFarmLockStopsBeforeItsNextStep) {
  StartController();
  const std::string wrapper = dir_.path() + "/slow-provider", began = dir_.path() + "/create-began",
                    go = dir_.path() + "/go";
  test::WriteFile(wrapper, "#!/bin/sh\n"
                           "if [ \"$1\" = create ] && mkdir " + began + " 2>/dev/null; then\n"
                           "  i=0; while [ ! -e " + go + " ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done\n"
                           "fi\n"
                           "exec " KILN_SOURCE_DIR "/deploy/provider-example.sh \"$@\"\n");
  ASSERT_EQ(::chmod(wrapper.c_str(), 0755), 0);
  auto set = SetCommandCluster(wrapper, 2, 2);
  ASSERT_EQ(set.exit_code, 0) << set.err;
  auto applying = std::async(std::launch::async, [&] { return Kiln({"clusters", "apply", "default"}); });
  ASSERT_TRUE(test::WaitFor([&] { return fs::exists(began); }, 30s));
  EXPECT_EQ(Q("SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory'"
              " AND classid = 1802071150 AND objid = 2 AND granted"),
            "1");
  test::WriteFile(go, "");
  auto apply = applying.get();
  EXPECT_NE(apply.exit_code, 0) << apply.out;
  EXPECT_NE(apply.err.find("the farm's apply lock was lost"), std::string::npos) << apply.out << apply.err;
  EXPECT_EQ(Q("SELECT count(*) FROM cluster_instances"), "1") << "the step after the loss was not carried out";
  // The next apply takes the lock again and starts the other.
  auto again = Kiln({"clusters", "apply", "default"});
  EXPECT_EQ(again.exit_code, 0) << again.out << again.err;
  ASSERT_TRUE(test::WaitFor([&] { return Deployed() == "2"; }, 60s)) << Kiln({"clusters", "plan"}).out;
  EXPECT_EQ(Q("SELECT count(*) FROM cluster_instances"), "2");
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
