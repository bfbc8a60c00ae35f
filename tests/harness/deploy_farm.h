#pragma once
// A farm whose workers the controller deploys (issue 27): the process
// provider's instances under Root(), the kiln CLI, and SQL for what the CLI
// does not show. The workers it started run in sessions of their own: the
// fixture kills them at the end and prints their logs on failure.

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "harness/farm.h"

namespace kiln {

class DeployFarm : public Farm {
 protected:
  void TearDown() override {
    // ROOT/<id>/pid, and the example command provider's
    // ROOT/example/<cluster>/<id>/pid; a destroyed instance's log is kept as
    // ROOT/<id>.log.
    std::error_code ec;
    if (std::filesystem::exists(Root(), ec)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(Root(), ec)) {
        if (e.path().extension() == ".log" && e.path().parent_path() == Root()) logs_.push_back(e.path().string());
        if (e.path().filename() != "pid") continue;
        std::ifstream in(e.path());
        int pid = 0;
        // Only if the pid is still a worker of this test's (a pid file
        // outlives its process; the number may be another's by now).
        if (in >> pid && pid > 1 &&
            test::ReadFile("/proc/" + std::to_string(pid) + "/cmdline").find(dir_.path()) != std::string::npos)
          ::kill(pid, SIGKILL);
        logs_.push_back((e.path().parent_path() / "worker.log").string());
      }
    }
    Farm::TearDown();
  }
  std::string Root() { return dir_.path() + "/instances"; }
  // The provider settings of a process-provider cluster under Root(), whose
  // workers dial `controller` (empty: the controller that starts them).
  std::string ProcessSettings(const std::string& controller = "") {
    std::string s = R"({"root": ")" + Root() + R"(", "worker_binary": ")" + test::BinPath("kiln-worker") + R"(")";
    if (!controller.empty()) s += R"(, "controller": ")" + controller + R"(")";
    return s + "}";
  }
  // Makes "default" a cluster of `min`..`max` workers through the command
  // provider `command` (deploy/provider-example.sh or a wrapper of it),
  // which keeps its instances under Root()/example and their work dirs
  // under Root()/work; its workers run plain jobs. `extra`: more flags.
  test::CommandResult SetCommandCluster(const std::string& command, int min, int max,
                                        std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"clusters", "set", "default", "--min", std::to_string(min), "--max",
                                  std::to_string(max), "--provider", "command", "--provider-settings",
                                  R"({"command": ")" + command + R"(", "root": ")" + Root() +
                                      R"(/example", "worker_binary": ")" + test::BinPath("kiln-worker") +
                                      R"(", "work_dir_base": ")" + Root() + R"(/work"})",
                                  "--worker-config", R"({"allow_plain_jobs": true})"};
    args.insert(args.end(), extra.begin(), extra.end());
    return Kiln(args);
  }
  test::CommandResult Kiln(std::vector<std::string> args, int controller = 0) {
    std::vector<std::string> argv{test::BinPath("kiln"), "--controller", addresses_[controller]};
    argv.insert(argv.end(), args.begin(), args.end());
    std::filesystem::create_directories(dir_.path() + "/cwd");
    return test::RunCommand(argv, 60s, {{"XDG_CACHE_HOME", dir_.path() + "/xdg"}}, dir_.path() + "/cwd");
  }
  std::string Q(const std::string& sql) { return test::Sql(url_, sql); }
  // Connected workers the deployer started (their work_dir under Root()).
  std::string Deployed() {
    return Q("SELECT count(*) FROM workers WHERE state = 'connected' AND work_dir LIKE '" + Root() + "/%'");
  }
  // Worker processes of instances under Root() that run now (a zombie, a
  // killed controller's orphan not reaped yet, does not).
  int Running() {
    int n = 0;
    std::error_code ec;
    if (!std::filesystem::exists(Root(), ec)) return 0;
    for (const auto& e : std::filesystem::directory_iterator(Root(), ec)) {
      std::ifstream in(e.path() / "pid");
      int pid = 0;
      if (!(in >> pid) || pid <= 1) continue;
      const std::string stat = test::ReadFile("/proc/" + std::to_string(pid) + "/stat");
      const auto paren = stat.rfind(')');
      if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z') ++n;
    }
    return n;
  }
};

}  // namespace kiln
