// The binaries as a user runs them: kiln, kiln-controller, kiln-worker.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "harness/farm.h"

namespace kiln {
namespace {

class Cli : public Farm {
 protected:
  // Runs kiln in `cwd` (default: an empty directory of the test's own, so a
  // submit sends an empty tree).
  test::CommandResult Kiln(std::vector<std::string> args, std::chrono::milliseconds timeout = 60s,
                           std::string cwd = "") {
    std::vector<std::string> argv{test::BinPath("kiln"), "--controller", addresses_.empty() ? "127.0.0.1:1" : addresses_[0]};
    argv.insert(argv.end(), args.begin(), args.end());
    if (cwd.empty()) {
      cwd = dir_.path() + "/cwd";
      std::filesystem::create_directories(cwd);
    }
    return test::RunCommand(argv, timeout, {{"XDG_CACHE_HOME", dir_.path() + "/cache"}}, cwd);
  }
  void Up() {
    StartController();
    StartWorker(0, 2);
  }
};

TEST_F(Cli, SubmitFollowsTheLogAndExitsLikeTheBuild) {
  Up();
  auto ok = Kiln({"submit", "--", "sh", "-c", "echo building; echo to-stderr >&2"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out, "building\nto-stderr\n");
  EXPECT_NE(ok.err.find("succeeded"), std::string::npos) << ok.err;
  auto failed = Kiln({"submit", "--", "sh", "-c", "echo broken; exit 3"});
  EXPECT_EQ(failed.exit_code, 3);
  EXPECT_EQ(failed.out, "broken\n");
  auto killed = Kiln({"submit", "--", "sh", "-c", "kill -9 $$"});
  EXPECT_EQ(killed.exit_code, 128 + 9);
  auto timed_out = Kiln({"submit", "--timeout-s", "1", "--", "sleep", "30"});
  EXPECT_EQ(timed_out.exit_code, 124);
  EXPECT_NE(timed_out.err.find("timed out"), std::string::npos) << timed_out.err;
  auto missing = Kiln({"submit", "--", "no-such-command-kiln"});
  EXPECT_EQ(missing.exit_code, 127);
  EXPECT_NE(missing.out.find("no-such-command-kiln"), std::string::npos) << missing.out;
}

TEST_F(Cli, DetachStatusLogsListAndJson) {
  Up();
  auto sub = Kiln({"submit", "--detach", "--priority", "4", "--", "sh", "-c", "echo detached output"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  std::string id = sub.out.substr(0, sub.out.find('\n'));
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(test::WaitFor([&] { return Kiln({"status", id}).out.find("succeeded") != std::string::npos; }, 20s));
  auto logs = Kiln({"logs", id});
  EXPECT_EQ(logs.exit_code, 0);
  EXPECT_EQ(logs.out, "detached output\n");
  auto js = Kiln({"--json", "status", id});
  ASSERT_EQ(js.exit_code, 0) << js.err;
  auto j = nlohmann::json::parse(js.out);
  EXPECT_EQ(j["status"], "SUCCEEDED");
  EXPECT_EQ(j["priority"], 4);
  auto list = Kiln({"list"});
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_NE(list.out.find(id), std::string::npos);
  EXPECT_NE(list.out.find("echo detached output"), std::string::npos) << list.out;
  auto workers = Kiln({"--json", "workers"});
  ASSERT_EQ(workers.exit_code, 0) << workers.err;
  auto ws = nlohmann::json::parse(workers.out);
  ASSERT_EQ(ws.size(), 1u);
  EXPECT_EQ(ws[0]["state"], "connected");
}

TEST_F(Cli, LogsFollowWhileRunningAndCancelStopsIt) {
  Up();
  auto sub = Kiln({"submit", "--detach", "--", "sh", "-c", "echo started; sleep 60"});
  ASSERT_EQ(sub.exit_code, 0);
  std::string id = sub.out.substr(0, sub.out.find('\n'));
  ASSERT_TRUE(test::WaitFor([&] { return Kiln({"logs", id}).out == "started\n"; }, 20s));
  auto cancel = Kiln({"cancel", id});
  EXPECT_EQ(cancel.exit_code, 0) << cancel.err;
  EXPECT_NE(Kiln({"status", id}).out.find("cancelled"), std::string::npos);
  auto again = Kiln({"cancel", id});
  EXPECT_EQ(again.exit_code, 5);
  EXPECT_NE(again.err.find("already ended"), std::string::npos) << again.err;
}

TEST_F(Cli, StatusSaysWhyAJobCannotRun) {
  Up();
  auto sub = Kiln({"submit", "--detach", "--require", "arch=aarch64", "--", "true"});
  ASSERT_EQ(sub.exit_code, 0);
  std::string id = sub.out.substr(0, sub.out.find('\n'));
  auto st = Kiln({"status", id});
  EXPECT_EQ(st.exit_code, 0);
  EXPECT_NE(st.out.find("aarch64"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("no connected worker"), std::string::npos) << st.out;
}

TEST_F(Cli, ProjectsAndClusters) {
  StartController();
  EXPECT_EQ(Kiln({"projects", "create", "web"}).exit_code, 0);
  EXPECT_EQ(Kiln({"projects", "create", "web"}).exit_code, 5);
  auto bad = Kiln({"projects", "config", "set", "web", R"({"max_attempts": 0})"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("max_attempts"), std::string::npos) << bad.err;
  EXPECT_EQ(Kiln({"projects", "config", "set", "web", R"({"default_priority": 9})"}).exit_code, 0);
  auto get = Kiln({"projects", "config", "get", "web"});
  EXPECT_NE(get.out.find("\"default_priority\": 9"), std::string::npos) << get.out;
  EXPECT_EQ(Kiln({"clusters", "create", "east"}).exit_code, 0);
  EXPECT_EQ(Kiln({"clusters", "map", "east", "web"}).exit_code, 0);
  auto clusters = Kiln({"--json", "clusters", "list"});
  ASSERT_EQ(clusters.exit_code, 0) << clusters.err;
  std::map<std::string, std::vector<std::string>> projects;  // of each cluster
  for (const auto& c : nlohmann::json::parse(clusters.out))
    projects[c.at("name").get<std::string>()] = c.value("projects", std::vector<std::string>{});
  ASSERT_TRUE(projects.count("east")) << clusters.out;
  EXPECT_EQ(projects["east"], std::vector<std::string>{"web"}) << clusters.out;
  EXPECT_EQ(Kiln({"clusters", "map", "nowhere", "web"}).exit_code, 4);
  // A web job waits for a worker of cluster east and runs on it.
  StartWorker(0, 1, {"--cluster", "east"});
  auto run = Kiln({"submit", "--project", "web", "--", "sh", "-c", "echo on east"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "on east\n");
}

// A cluster's desired state: set (only the flags given change), show, the
// list, and refusals that say what is wrong and change nothing.
TEST_F(Cli, ClustersSetShowAndRefusalsThatChangeNothing) {
  StartController();
  auto unmanaged = Kiln({"clusters", "show", "default"});
  ASSERT_EQ(unmanaged.exit_code, 0) << unmanaged.err;
  EXPECT_NE(unmanaged.out.find("managed:"), std::string::npos) << unmanaged.out;
  EXPECT_NE(unmanaged.out.find("kiln clusters set default"), std::string::npos) << unmanaged.out;

  auto set = Kiln({"clusters", "set", "default", "--min", "1", "--max", "3", "--provider", "process", "--slots", "2",
                   "--label", "pool=fast", "--scale-in-delay", "30s", "--worker-config",
                   R"({"sandbox": "none", "allow_plain_jobs": true})"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_EQ(set.out, "cluster default: 1 to 3 workers of 2 slots, provider process\n");
  auto state = [&] {
    auto r = Kiln({"--json", "clusters", "show", "default"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out).at("state");
  };
  const nlohmann::json first = state();
  EXPECT_EQ(first.at("min_workers"), 1) << first.dump();
  EXPECT_EQ(first.at("max_workers"), 3);
  EXPECT_EQ(first.at("slots_per_worker"), 2);
  EXPECT_EQ(first.at("labels").at("pool"), "fast");
  EXPECT_EQ(first.at("provider"), "process");
  EXPECT_EQ(first.at("policy").at("scale_in_delay_ms"), "30000");
  EXPECT_EQ(first.at("worker_config_json"), R"({"allow_plain_jobs":true,"sandbox":"none"})");

  // Refused: each says what is wrong, and nothing changes (updated_at neither).
  struct Bad {
    std::vector<std::string> args;
    int exit_code;
    std::string says;
  };
  const std::vector<Bad> bad = {
      {{"--min", "5"}, 5, "--min 5 is above --max 3"},
      {{"--max", "1001"}, 5, "--max 1001 is out of bounds"},
      {{"--provider", "ec2"}, 5, "process, systemd or command"},
      {{"--provider", "command"}, 5, "needs the executable to call"},
      {{"--worker-config", R"({"work_dir": "/tmp/x"})"}, 5, "set by the deployer"},
      {{"--worker-config", "[]"}, 5, "must be a JSON object"},
      {{"--slots", "0"}, 5, "--slots 0 is out of bounds"},
      {{"--scale-in-delay", "soon"}, 2, "--scale-in-delay soon"},
      {{"--label", "nokey"}, 2, "expected KEY=VALUE"},
  };
  for (const auto& b : bad) {
    std::vector<std::string> args{"clusters", "set", "default"};
    args.insert(args.end(), b.args.begin(), b.args.end());
    auto r = Kiln(args);
    EXPECT_EQ(r.exit_code, b.exit_code) << b.says << ": " << r.err;
    EXPECT_NE(r.err.find(b.says), std::string::npos) << r.err;
  }
  EXPECT_EQ(state(), first) << "a refused change changes nothing";
  auto nowhere = Kiln({"clusters", "set", "nowhere", "--min", "1", "--max", "1"});
  EXPECT_EQ(nowhere.exit_code, 4);
  EXPECT_NE(nowhere.err.find("kiln clusters create nowhere"), std::string::npos) << nowhere.err;

  // Only the flags given change.
  ASSERT_EQ(Kiln({"clusters", "set", "default", "--max", "2"}).exit_code, 0);
  nlohmann::json second = state();
  EXPECT_EQ(second.at("max_workers"), 2);
  EXPECT_EQ(second.at("min_workers"), 1);
  EXPECT_EQ(second.at("labels"), first.at("labels"));
  EXPECT_GE(std::stoll(second.at("updated_at_ms").get<std::string>()),
            std::stoll(first.at("updated_at_ms").get<std::string>()));

  // `kiln clusters` alone lists them, with their bounds and provider.
  auto list = Kiln({"clusters"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("MIN"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("process"), std::string::npos) << list.out;
  auto show = Kiln({"clusters", "show", "default"});
  EXPECT_NE(show.out.find("scale-in delay:"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("30s"), std::string::npos) << show.out;
}

TEST_F(Cli, ErrorsSayWhatIsWrongWithDocumentedExitCodes) {
  auto unreachable = Kiln({"status", "1"}, 30s);
  EXPECT_EQ(unreachable.exit_code, 3);
  EXPECT_NE(unreachable.err.find("kiln-controller running"), std::string::npos) << unreachable.err;
  StartController();
  auto unknown = Kiln({"status", "999999"});
  EXPECT_EQ(unknown.exit_code, 4);
  EXPECT_NE(unknown.err.find("does not exist"), std::string::npos) << unknown.err;
  EXPECT_EQ(Kiln({"status", "abc"}).exit_code, 2);
  EXPECT_EQ(Kiln({"frobnicate"}).exit_code, 2);
  auto no_dashes = Kiln({"submit", "make", "-j8"});
  EXPECT_EQ(no_dashes.exit_code, 2);
  EXPECT_NE(no_dashes.err.find("(give the command to run after --: kiln submit [OPTIONS] -- CMD ARGS...)"),
            std::string::npos)
      << no_dashes.err;
  EXPECT_EQ(Kiln({"submit", "--project", "nope", "--", "true"}).exit_code, 4);
}

TEST(Binaries, AnswerHelpVersionAndCheckConfig) {
  for (const char* bin : {"kiln", "kiln-controller", "kiln-worker"}) {
    auto help = test::RunCommand({test::BinPath(bin), "--help"}, 10s);
    EXPECT_EQ(help.exit_code, 0) << bin;
    EXPECT_NE(help.out.find("Usage"), std::string::npos) << bin;
    auto version = test::RunCommand({test::BinPath(bin), "--version"}, 10s);
    EXPECT_EQ(version.exit_code, 0) << bin;
    EXPECT_NE(version.out.find("0.1.0"), std::string::npos) << bin;
    auto bad = test::RunCommand({test::BinPath(bin), "--no-such-flag"}, 10s);
    EXPECT_EQ(bad.exit_code, 2) << bin;
  }
  auto ok = test::RunCommand({test::BinPath("kiln-controller"), "--check-config", "--database-url", "host=/tmp"}, 10s);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  auto no_db = test::RunCommand({test::BinPath("kiln-controller"), "--check-config"}, 10s, {{"KILN_DATABASE_URL", ""}});
  EXPECT_EQ(no_db.exit_code, 2);
  EXPECT_NE(no_db.err.find("KILN_DATABASE_URL"), std::string::npos) << no_db.err;
  auto bad_label = test::RunCommand({test::BinPath("kiln-worker"), "--check-config", "--label", "arch=arm"}, 10s);
  EXPECT_EQ(bad_label.exit_code, 2);
}

}  // namespace
}  // namespace kiln
