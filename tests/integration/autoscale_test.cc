// The autoscaler (issue 27, item 3) with real kiln-worker processes through
// the process provider: a burst scales a cluster up to its maximum and, once
// idle past the scale-in delay, back to its minimum, with no job failed or
// run twice; a killed leader is replaced and scaling goes on, adopting the
// workers the old leader started; an instance that never registers is
// destroyed at its deadline and counted.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "harness/deploy_farm.h"
#include "harness/prometheus.h"

namespace kiln {
namespace {

class Autoscale : public DeployFarm {
 protected:
  void SetUp() override {
    extra_conf_ = "autoscale_interval = 300ms\n";
    DeployFarm::SetUp();
  }
  // kiln clusters set for a cluster of 1 to 3 one-slot workers whose
  // workers dial `controller` (empty: the one that starts them), with short
  // cooldowns and scale-in delay.
  void Manage(const std::string& controller = "") {
    auto set = Kiln({"clusters", "set", "default", "--min", "1", "--max", "3", "--slots", "1", "--provider", "process",
                     "--provider-settings", ProcessSettings(controller), "--worker-config",
                     R"({"allow_plain_jobs": true})", "--jobs-per-slot", "1",
                     "--scale-up-step", "1", "--scale-up-cooldown", "1s", "--scale-down-cooldown", "1s",
                     "--scale-in-delay", "2s", "--target-queue-wait", "0"});
    ASSERT_EQ(set.exit_code, 0) << set.err;
  }
  // `n` distinct short jobs (distinct: identical ones would wait for the
  // first's result instead of running).
  std::vector<int64_t> Burst(int n, const std::string& tag, int controller = 0) {
    auto stub = Jobs(controller);
    std::vector<int64_t> ids;
    for (int i = 0; i < n; ++i)
      ids.push_back(Submit(*stub, {"sh", "-c", "sleep 0.4; echo " + tag + " " + std::to_string(i)}));
    return ids;
  }
  // Every job succeeded on its first attempt.
  void ExpectEachRanOnce(const std::vector<int64_t>& ids, int controller = 0) {
    auto stub = Jobs(controller);
    for (auto id : ids) {
      auto j = Get(*stub, id);
      EXPECT_EQ(j.status(), v1::SUCCEEDED) << "job " << id;
      EXPECT_EQ(j.attempt(), 1) << "job " << id << " ran more than once";
    }
  }
  // Whether a row of `kiln clusters history` has all of `cells`.
  static bool HasRow(const std::string& table, const std::vector<std::string>& cells) {
    size_t at = 0;
    while (at < table.size()) {
      size_t end = table.find('\n', at);
      if (end == std::string::npos) end = table.size();
      const std::string line = table.substr(at, end - at);
      bool all = true;
      for (const auto& c : cells) all = all && line.find(c) != std::string::npos;
      if (all) return true;
      at = end + 1;
    }
    return false;
  }
  std::string History(int controller = 0) {
    auto h = Kiln({"clusters", "history", "default", "--limit", "1000"}, controller);
    EXPECT_EQ(h.exit_code, 0) << h.err;
    return h.out;
  }
};

TEST_F(Autoscale, ABurstScalesUpToTheMaximumAndBackDownToTheMinimum) {
  StartController();
  Manage();
  // The minimum first: one worker, started by the autoscaler alone.
  ASSERT_TRUE(test::WaitFor([&] { return Deployed() == "1"; }, 60s)) << History();
  auto ids = Burst(40, "burst");
  int most = 1;
  ASSERT_TRUE(test::WaitFor(
      [&] {
        most = std::max(most, Running());
        return Deployed() == "3";
      },
      90s))
      << History();
  ASSERT_TRUE(test::WaitFor(
      [&] {
        most = std::max(most, Running());
        return AllEnded(1ms);
      },
      120s));
  ExpectEachRanOnce(ids);
  // Idle: drained and destroyed back to the minimum.
  ASSERT_TRUE(test::WaitFor(
      [&] {
        most = std::max(most, Running());
        return Deployed() == "1" && Running() == 1;
      },
      60s))
      << History();
  EXPECT_LE(most, 3) << "never more workers than the maximum";
  EXPECT_EQ(Q("SELECT count(*) FROM cluster_decisions WHERE desired > 3"), "0") << History();
  // What the autoscaler did, as an operator reads it.
  const std::string h = History();
  EXPECT_TRUE(HasRow(h, {"scale_up", "0 -> 1", "below the minimum 1", "start default-"})) << h;
  EXPECT_TRUE(HasRow(h, {"scale_up", "1 -> 2", "jobs queued", "start default-"})) << h;
  EXPECT_TRUE(HasRow(h, {"scale_up", "2 -> 3", "start default-"})) << h;
  EXPECT_TRUE(HasRow(h, {"scale_down", "-> 1 "})) << h;  // in one step or two, as the jobs end
  EXPECT_NE(h.find("; drain default-"), std::string::npos) << h;
  // The plan aims at the autoscaler's count and, once the drained workers'
  // instances are destroyed, has nothing left to do.
  test::CommandResult plan;
  EXPECT_TRUE(test::WaitFor(
      [&] {
        plan = Kiln({"clusters", "plan", "default"});
        return plan.out.find("no changes") != std::string::npos;
      },
      30s))
      << plan.out;
  EXPECT_NE(plan.out.find("cluster default: 1 serving, 1 desired"), std::string::npos) << plan.out;
  const std::string settled = History();
  EXPECT_NE(settled.find("; destroy default-"), std::string::npos) << settled;
  // As JSON too.
  auto json = Kiln({"--json", "clusters", "history", "default"});
  EXPECT_EQ(json.exit_code, 0) << json.err;
  EXPECT_NE(json.out.find("\"action\": \"scale_down\""), std::string::npos) << json.out;
}

// Jobs no worker of the cluster can run (a property its workers lack) do
// not scale it: the scale-up the runnable ones cause saw only them.
TEST_F(Autoscale, JobsItsWorkersCannotRunDoNotScaleTheCluster) {
  StartController();
  Manage();
  ASSERT_TRUE(test::WaitFor([&] { return Deployed() == "1"; }, 60s)) << History();
  for (int i = 0; i < 8; ++i) {
    auto r = Kiln({"submit", "--detach", "--no-input", "--require", "gpu=yes", "--", "sh", "-c",
                   "echo gpu " + std::to_string(i)});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  auto ids = Burst(6, "cpu");
  ASSERT_TRUE(test::WaitFor([&] { return HasRow(History(), {"scale_up", "1 -> 2"}); }, 60s)) << History();
  // Each decision saw at most the 6 runnable jobs queued, never the 8 others.
  std::istringstream rows(History());
  std::string line;
  int decisions = 0;
  while (std::getline(rows, line)) {
    std::istringstream f(line);
    std::string date, time, action, before, arrow, after, queued;
    if (!(f >> date >> time >> action >> before >> arrow >> after >> queued) || date == "TIME") continue;
    ++decisions;
    EXPECT_LE(std::stoi(queued), 6) << line;
  }
  EXPECT_GE(decisions, 2);
  ASSERT_TRUE(test::WaitFor([&] { return Count("status = 'succeeded'") == 6; }, 60s));
  ExpectEachRanOnce(ids);
  EXPECT_EQ(Count("status = 'queued'"), 8);
}

TEST_F(Autoscale, AKilledLeaderIsReplacedAndScalingGoesOnWithItsWorkers) {
  // Controller 0 leads (it starts first); the workers it starts dial
  // controller 1, which outlives it.
  StartController();
  // The farm's leader lock (db/leader.h kFarmLeaderLock: "kiln", 1) held.
  ASSERT_TRUE(test::WaitFor(
      [&] {
        return Q("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 1802071150"
                 " AND objid = 1") == "1";
      },
      20s));
  StartController();
  Manage(addresses_[1]);
  ASSERT_TRUE(test::WaitFor([&] { return Deployed() == "1"; }, 60s)) << History();
  auto first = Burst(12, "before", 1);
  ASSERT_TRUE(test::WaitFor([&] { return Deployed() == "2"; }, 60s)) << History();
  const std::string by_first = Q("SELECT string_agg(DISTINCT controller, ',') FROM cluster_decisions");

  ::kill(controllers_[0]->pid(), SIGKILL);
  // Controller 1 leads within seconds, adopts the running workers (no
  // duplicates), and goes on scaling: up for a new burst, then down.
  auto second = Burst(30, "after", 1);
  int most = 0;
  ASSERT_TRUE(test::WaitFor(
      [&] {
        most = std::max(most, Running());
        return Deployed() == "3";
      },
      90s))
      << History(1);
  ASSERT_TRUE(test::WaitFor(
      [&] {
        most = std::max(most, Running());
        return AllEnded(1ms);
      },
      120s));
  ExpectEachRanOnce(first, 1);
  ExpectEachRanOnce(second, 1);
  ASSERT_TRUE(test::WaitFor(
      [&] {
        most = std::max(most, Running());
        return Deployed() == "1" && Running() == 1;
      },
      60s))
      << History(1);
  EXPECT_LE(most, 3) << "the new leader started duplicates of the old one's workers";
  const std::string by_all = Q("SELECT string_agg(DISTINCT controller, ',') FROM cluster_decisions");
  EXPECT_NE(by_all, by_first) << "the second controller never decided";
  EXPECT_NE(History(1).find("scale_down"), std::string::npos);
}

TEST_F(Autoscale, AWorkerThatNeverRegistersIsDestroyedAtItsDeadlineAndCounted) {
  const std::string metrics_file = dir_.path() + "/controller.metrics";
  StartController("127.0.0.1:0", {"--set", "metrics_address=127.0.0.1:0", "--set", "metrics_address_file=" + metrics_file});
  // A "worker" that runs but never registers.
  const std::string fake = dir_.path() + "/never-registers";
  // (A shell that stays: its command line names its worker.conf, as a
  // real worker's does, which is how the provider knows it.)
  test::WriteFile(fake, "#!/bin/sh\necho 'fake worker: not registering'\nwhile :; do sleep 1; done\n");
  ASSERT_EQ(::chmod(fake.c_str(), 0755), 0);
  auto set = Kiln({"clusters", "set", "default", "--min", "1", "--max", "1", "--provider", "process",
                   "--provider-settings",
                   R"({"root": ")" + Root() + R"(", "worker_binary": ")" + fake + R"(", "register_timeout_s": 2})"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  ASSERT_TRUE(test::WaitFor(
      [&] { return HasRow(History(), {"reconcile", "(it did not register within its deadline)", "destroy default-"}); },
      60s))
      << History();
  const std::string addr = test::ReadFile(metrics_file).substr(0, test::ReadFile(metrics_file).find('\n'));
  EXPECT_GE(test::SumSeries(test::ScrapeSeries(addr), "kiln_cluster_workers_unregistered_total", "cluster=\"default\""), 1);
  // Its log is kept (ROOT/<instance>.log), and the autoscaler keeps
  // trying: one instance at a time.
  EXPECT_LE(Running(), 1);
  bool kept = false;
  for (const auto& e : std::filesystem::directory_iterator(Root()))
    kept = kept || (e.path().extension() == ".log" &&
                    test::ReadFile(e.path().string()).find("fake worker: not registering") != std::string::npos);
  EXPECT_TRUE(kept) << "the destroyed instance's log is kept";
}

TEST_F(Autoscale, AProviderThatFailsHalfTheTimeStillConverges) {
  StartController();
  // deploy/provider-example.sh behind a wrapper that refuses half of the
  // calls (list, create, drain, destroy alike), at random, before doing
  // anything. (Not every other call: a pass makes an even number of calls,
  // so the create would fall on a refused call every time, a provider no
  // deployer can converge with.) The first create is always refused: only
  // the autoscaler creates, so at least one refusal reaches the controller's
  // log whatever the dice say (a refused list may be the test's own plan).
  // The calls are counted under a lock: the autoscaler and this test's
  // kiln clusters plan call it concurrently.
  const std::string flaky = dir_.path() + "/flaky-provider", calls = dir_.path() + "/calls";
  test::WriteFile(flaky, "#!/bin/sh\n"
                         "n=$(flock " + calls + ".lock sh -c 'n=$(cat " + calls + " 2>/dev/null || echo 0); "
                         "n=$((n + 1)); echo $n > " + calls + "; echo $n')\n"
                         "if [ \"$1\" = create ] && mkdir " + calls + ".first-create 2>/dev/null; then "
                         "echo \"flaky: call $n (the first create) refused\" >&2; exit 1; fi\n"
                         "if [ $(($(od -An -N1 -tu1 /dev/urandom) % 2)) -eq 0 ]; then "
                         "echo \"flaky: call $n refused\" >&2; exit 1; fi\n"
                         "exec " KILN_SOURCE_DIR "/deploy/provider-example.sh \"$@\"\n");
  ASSERT_EQ(::chmod(flaky.c_str(), 0755), 0);
  auto set = SetCommandCluster(flaky, 2, 2);
  ASSERT_EQ(set.exit_code, 0) << set.err;
  // Converged: two workers, each instance once, and nothing left to do.
  test::CommandResult plan;
  ASSERT_TRUE(test::WaitFor(
      [&] {
        plan = Kiln({"clusters", "plan", "default"});
        return Deployed() == "2" && plan.out.find("no changes") != std::string::npos;
      },
      120s))
      << plan.out << History();
  EXPECT_EQ(Q("SELECT count(*) FROM cluster_instances"), "2");
  EXPECT_EQ(Q("SELECT count(*) FROM workers"), "2") << "no worker started twice";
  EXPECT_GE(std::stoi(test::ReadFile(calls)), 4) << "the provider was not asked at all";
  // Refused calls were seen (a refused list stops that pass's plan, a
  // refused create is a failed step): the controller's log names them,
  // the first create's refusal at least.
  EXPECT_NE(test::ReadFile(logs_[0]).find("(the first create) refused"), std::string::npos) << History();
  auto run = Kiln({"submit", "--no-input", "--", "sh", "-c", "echo converged"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "converged\n");
}

}  // namespace
}  // namespace kiln
