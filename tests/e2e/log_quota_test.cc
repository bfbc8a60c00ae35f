// Log quotas end to end: a farm whose controller prunes every 100 ms,
// projects configured through the kiln CLI, and what a user then sees with
// kiln logs and kiln status.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "harness/container_farm.h"

namespace kiln {
namespace {

class LogQuotas : public ContainerFarm {
 protected:
  LogQuotas() { extra_conf_ = "log_prune_interval = 100ms\n"; }

  // A project of the default cluster with this configuration.
  void Project(const std::string& name, const std::string& config) {
    auto made = Kiln({"projects", "create", name, "--config", config});
    ASSERT_EQ(made.exit_code, 0) << made.err;
    auto mapped = Kiln({"clusters", "map", "default", name});
    ASSERT_EQ(mapped.exit_code, 0) << mapped.err;
  }

  // Submits a plain `sh -c script` job to `project`; returns its id.
  std::string Submit(const std::string& project, const std::string& script) {
    auto r = Kiln({"submit", "--detach", "--project", project, "--", "sh", "-c", script});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out.substr(0, r.out.find('\n'));
  }

  nlohmann::json Status(const std::string& id) {
    auto r = Kiln({"--json", "status", id});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
  }

  // Submits and waits until the job succeeded: jobs end in submission order.
  std::string Run(const std::string& project, const std::string& script) {
    std::string id = Submit(project, script);
    EXPECT_TRUE(test::WaitFor([&] { return Status(id).value("status", "") == "SUCCEEDED"; }, 30s))
        << "job " << id << " did not succeed";
    return id;
  }

  bool Removed(const std::string& id) { return Status(id).contains("log_removed"); }
  bool WaitRemoved(const std::string& id) { return test::WaitFor([&] { return Removed(id); }, 20s); }
};

// The issue's test: a project past its log retention loses its oldest logs,
// not its newest; kiln logs and kiln status say what became of them.
TEST_F(LogQuotas, AProjectPastItsRetentionLosesItsOldestLogsNotItsNewest) {
  Up();
  Project("web", R"({"log_retention": "1h"})");
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(Run("web", "echo log of build " + std::to_string(i)));
  // The first two ended two hours ago, as if the farm had run them then.
  test::Sql(url_, "UPDATE build_jobs SET finished_at = now() - interval '2 hours' WHERE id IN (" + ids[0] + ", " +
                      ids[1] + ")");
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(WaitRemoved(ids[i])) << "job " << ids[i];
    auto logs = Kiln({"logs", ids[i]});
    EXPECT_EQ(logs.exit_code, 4) << logs.err;
    EXPECT_EQ(logs.out, "");
    EXPECT_EQ(logs.err, "kiln: error: the log of job " + ids[i] +
                            " was removed (older than project web's log_retention of 1h)\n");
    auto status = Kiln({"status", ids[i]});
    EXPECT_NE(status.out.find("the log of job " + ids[i] + " was removed "), std::string::npos) << status.out;
    auto js = Status(ids[i]);
    EXPECT_EQ(js["log_removed"]["reason"], "retention");
    EXPECT_EQ(js["log_removed"]["bytes"], "15") << "\"log of build N\\n\"";
  }
  for (int i = 2; i < 4; ++i) {
    auto logs = Kiln({"logs", ids[i]});
    EXPECT_EQ(logs.exit_code, 0) << logs.err;
    EXPECT_EQ(logs.out, "log of build " + std::to_string(i) + "\n");
    EXPECT_FALSE(Removed(ids[i]));
    EXPECT_NE(Kiln({"status", ids[i]}).out.find("15 bytes (attempt 1)"), std::string::npos);
  }

  // A bad value changes nothing and says what is allowed.
  auto bad = Kiln({"projects", "config", "set", "web", R"({"log_retention": "-1d"})"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("log_retention: \"-1d\" is not a duration"), std::string::npos) << bad.err;
  EXPECT_FALSE(Removed(ids[2]));

  // The shortest retention: the newest go too, once older than a second;
  // following such a log ends at once.
  ASSERT_EQ(Kiln({"projects", "config", "set", "web", R"({"log_retention": "1s"})"}).exit_code, 0);
  ASSERT_TRUE(WaitRemoved(ids[3]));
  auto follow = Kiln({"logs", "-f", ids[3]}, 10s);
  EXPECT_EQ(follow.exit_code, 4) << follow.err;
  EXPECT_NE(follow.err.find("(older than project web's log_retention of 1s)"), std::string::npos) << follow.err;
}

TEST_F(LogQuotas, AProjectOverItsByteCapLosesItsOldestLogsAndNoOtherProjectsLog) {
  Up();
  Project("web", R"({"log_max_bytes": 3000})");
  Project("api", "{}");
  std::vector<std::string> web, api;
  for (int i = 0; i < 5; ++i) {
    web.push_back(Run("web", "head -c 1000 /dev/zero | tr '\\0' w"));
    api.push_back(Run("api", "head -c 1000 /dev/zero | tr '\\0' a"));
  }
  // 5,000 bytes over 3,000: the two oldest go, and then web is within its cap.
  ASSERT_TRUE(WaitRemoved(web[1]));
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(Removed(web[i]));
    auto logs = Kiln({"logs", web[i]});
    EXPECT_EQ(logs.exit_code, 4);
    EXPECT_NE(logs.err.find("the log of job " + web[i] + " was removed (project web over its log_max_bytes of 3000 "
                            "bytes)"),
              std::string::npos)
        << logs.err;
    EXPECT_EQ(Status(web[i])["log_removed"]["reason"], "project_log_max_bytes");
  }
  for (int i = 2; i < 5; ++i) EXPECT_EQ(Kiln({"logs", web[i]}).out, std::string(1000, 'w')) << web[i];
  for (const auto& id : api) {
    EXPECT_EQ(Kiln({"logs", id}).out, std::string(1000, 'a')) << id;
    EXPECT_FALSE(Removed(id));
  }
  EXPECT_EQ(test::Sql(url_, "SELECT sum(octet_length(data)) FROM job_logs l JOIN build_jobs j ON j.id = l.job_id"
                            " JOIN projects p ON p.id = j.project_id WHERE p.name = 'web'"),
            "3000");
}

// Quotas never fail a running job's writes: it keeps its whole log and
// keeps writing while its project is past its retention and over its cap,
// and ends normally; its log goes only after it ended.
TEST_F(LogQuotas, ARunningJobKeepsWritingPastItsProjectsQuotasAndEndsNormally) {
  Up();
  Project("web", R"({"log_retention": "1s", "log_max_bytes": 2000})");
  const std::string stop = dir_.path() + "/stop";
  std::string running =
      Submit("web", "echo start; while [ ! -e " + stop + " ]; do printf '%0100d\\n' 0; sleep 0.05; done; echo end");
  ASSERT_TRUE(test::WaitFor([&] { return Kiln({"logs", running}).out.rfind("start\n", 0) == 0; }, 30s));
  // Other jobs of the project end, and go by its rules meanwhile.
  std::string e1 = Run("web", "head -c 1500 /dev/zero | tr '\\0' e");
  std::string e2 = Run("web", "head -c 1500 /dev/zero | tr '\\0' e");
  ASSERT_TRUE(WaitRemoved(e1));
  ASSERT_TRUE(WaitRemoved(e2));
  // Its log is past twice the cap, and still whole.
  std::string seen;
  ASSERT_TRUE(test::WaitFor(
      [&] {
        seen = Kiln({"logs", running}).out;
        return seen.size() > 4000;
      },
      30s));
  EXPECT_EQ(seen.rfind("start\n", 0), 0u);
  EXPECT_EQ(seen.find_first_not_of("0\n", 6), std::string::npos) << "contiguous lines of the build";
  auto mid = Status(running);
  EXPECT_EQ(mid["status"], "RUNNING");
  EXPECT_FALSE(mid.contains("log_removed"));
  // ... and keeps growing.
  ASSERT_TRUE(test::WaitFor([&] { return Kiln({"logs", running}).out.size() > seen.size() + 1000; }, 30s));
  test::WriteFile(stop, "");
  ASSERT_TRUE(test::WaitFor([&] { return Status(running).value("status", "") == "SUCCEEDED"; }, 30s));
  auto done = Status(running);
  EXPECT_EQ(done["result"]["exit_code"], 0);
  EXPECT_EQ(done["result"]["limit"], "");
  // Ended, past both rules: now it goes, and all it stored went with it.
  ASSERT_TRUE(WaitRemoved(running));
  done = Status(running);
  EXPECT_EQ(done["log_removed"]["bytes"], done["log_size"]) << done.dump();
  EXPECT_GT(std::stoll(done["log_size"].get<std::string>()), 5000);
}

// A job served from the action cache shows its producer's log; once that
// log is removed, the job says so (kiln logs, kiln submit, kiln status).
TEST_F(LogQuotas, AJobServedFromTheCacheSaysItsProducersLogWasRemoved) {
  Up();
  std::string img = Busybox();
  Project("web", R"({"log_retention": "1h"})");
  auto first = Kiln({"submit", "--project", "web", "--no-input", "--image", img, "--", "sh", "-c", "echo produced"});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  std::string producer = test::Sql(url_, "SELECT max(id) FROM build_jobs");
  auto hit = Kiln({"submit", "--project", "web", "--no-input", "--image", img, "--", "sh", "-c", "echo produced"});
  ASSERT_EQ(hit.exit_code, 0) << hit.err;
  EXPECT_EQ(hit.out, "produced\n");
  std::string served = test::Sql(url_, "SELECT max(id) FROM build_jobs");
  ASSERT_NE(served, producer);
  ASSERT_EQ(Status(served)["result"]["cached_from_job"], producer);

  test::Sql(url_, "UPDATE build_jobs SET finished_at = now() - interval '2 hours' WHERE id = " + producer);
  ASSERT_TRUE(WaitRemoved(producer));
  const std::string said = "the log of job " + producer + " (which produced job " + served +
                           "'s result) was removed (older than project web's log_retention of 1h)";
  auto logs = Kiln({"logs", served});
  EXPECT_EQ(logs.exit_code, 4);
  EXPECT_EQ(logs.err, "kiln: error: " + said + "\n");
  EXPECT_NE(Kiln({"status", served}).out.find("the log of job " + producer + " (which produced job " + served +
                                              "'s result) was removed "),
            std::string::npos);
  // Another identical submit still takes the result, and says where its log went.
  auto again = Kiln({"submit", "--project", "web", "--no-input", "--image", img, "--", "sh", "-c", "echo produced"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, "");
  EXPECT_NE(again.err.find("(older than project web's log_retention of 1h)"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("succeeded from the action cache"), std::string::npos) << again.err;
}

}  // namespace
}  // namespace kiln
