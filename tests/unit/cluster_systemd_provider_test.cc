// The systemd provider (cluster/systemd_provider.h) against a fake
// systemctl: a shell script that logs each call's arguments and keeps each
// unit's state in a file, since systemd is not PID 1 here. And the shipped
// template unit, checked by systemd-analyze verify.

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "cluster/run_command.h"
#include "cluster/systemd_provider.h"
#include "unit/cluster_provider_test_util.h"

namespace kiln::cluster {
namespace {
namespace fs = std::filesystem;
using namespace kiln::cluster::testing;

// systemctl as far as the provider uses it. A file fail-VERB makes VERB
// print the file to stderr and exit 1.
constexpr const char* kFakeSystemctl = R"(#!/bin/sh
fake=$(dirname "$0")
echo "$*" >> "$fake/log"
verb=$1
if [ -f "$fake/fail-$verb" ]; then cat "$fake/fail-$verb" >&2; exit 1; fi
for unit; do :; done
mkdir -p "$fake/units" "$fake/enabled"
case $verb in
  list-units)
    for f in "$fake"/units/*; do
      [ -f "$f" ] || continue
      u=$(basename "$f"); state=$(cat "$f")
      case $u in $unit) ;; *) continue ;; esac
      # systemd 252 marks a failed unit with a bullet before its name.
      [ "$state" = failed ] && printf '\342\227\217 '
      echo "$u loaded $state running kiln build farm worker"
    done ;;
  enable) touch "$fake/enabled/$unit"; echo active > "$fake/units/$unit" ;;
  stop) if [ "$2" = --no-block ]; then echo deactivating; else echo inactive; fi > "$fake/units/$unit" ;;
  disable) rm -f "$fake/enabled/$unit" ;;
  kill) echo failed > "$fake/units/$unit" ;;
  *) echo "fake systemctl: unknown verb $verb" >&2; exit 2 ;;
esac
)";

class SystemdProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshDir("kiln-sp");
    fs::create_directories(dir_ / "fake");
    systemctl_ = (dir_ / "fake" / "systemctl").string();
    std::ofstream(systemctl_) << kFakeSystemctl;
    fs::permissions(systemctl_, fs::perms::owner_all);
  }
  void TearDown() override { fs::remove_all(dir_); }

  SystemdProvider::Options Options() { return {(dir_ / "instances").string(), systemctl_, "kiln-worker"}; }
  // The calls since the last Calls(), one a line.
  std::string Calls() {
    const std::string log = (dir_ / "fake" / "log").string();
    std::string text = Read(log);
    fs::remove(log);
    return text;
  }
  void Fail(const std::string& verb, const std::string& message) {
    std::ofstream(dir_ / "fake" / ("fail-" + verb)) << message << "\n";
  }
  std::string State(const std::string& unit) { return Read((dir_ / "fake" / "units" / unit).string()); }
  bool Enabled(const std::string& unit) { return fs::exists(dir_ / "fake" / "enabled" / unit); }

  fs::path dir_;
  std::string systemctl_;
};

constexpr const char* kList1 = "list-units --all --plain --no-legend --no-pager --full kiln-worker@c-1.service\n";

TEST_F(SystemdProviderTest, CreateWritesTheInstanceDirectoryThenEnablesAndStartsItsUnit) {
  SystemdProvider p(Options());
  auto none = p.List();
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(Calls(), "") << "no root yet: nothing to ask systemd";
  Launch l = Named("c-1");
  l.work_dir = p.WorkDir("c-1");
  l.settings = {{"cluster", "c"}, {"slots", "2"}};
  l.ca_file = "/farm/ca.crt";
  l.join_token = "jt-secret";
  Status st = p.Create(l);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(Calls(), std::string(kList1) + "enable --now --no-block kiln-worker@c-1.service\n");
  const std::string dir = (dir_ / "instances" / "c-1").string();
  EXPECT_EQ(Read(dir + "/worker.conf"), "cluster = c\nslots = 2\nwork_dir = " + dir +
                                            "/work\nca_file = /farm/ca.crt\njoin_token_file = " + dir + "/join.token\n");
  EXPECT_EQ(fs::status(dir + "/join.token").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_TRUE(fs::is_directory(dir + "/work"));
  EXPECT_TRUE(Enabled("kiln-worker@c-1.service")) << "it comes back after a reboot";

  auto seen = p.List();
  ASSERT_TRUE(seen.ok()) << seen.status().ToString();
  ASSERT_EQ(seen->size(), 1u);
  EXPECT_EQ((*seen)[0].id, "c-1");
  EXPECT_TRUE((*seen)[0].alive);
  EXPECT_EQ(Calls(), "list-units --all --plain --no-legend --no-pager --full kiln-worker@*.service\n")
      << "one call for every instance";
  EXPECT_EQ(p.Create(l).code(), Code::kAlreadyExists) << "never two workers for one instance";
}

TEST_F(SystemdProviderTest, DrainStopsTheUnitWithoutWaitingAndDisablesIt) {
  SystemdProvider p(Options());
  ASSERT_TRUE(p.Create(Named("c-1")).ok());
  (void)Calls();
  ASSERT_TRUE(p.Drain("c-1").ok());
  EXPECT_EQ(Calls(), std::string(kList1) + "stop --no-block kiln-worker@c-1.service\n"
                                           "disable kiln-worker@c-1.service\n");
  EXPECT_FALSE(Enabled("kiln-worker@c-1.service")) << "a drained instance does not come back at boot";
  auto seen = p.List();
  ASSERT_TRUE(seen.ok());
  EXPECT_TRUE((*seen)[0].alive) << "deactivating: the worker still finishes its jobs";
  std::ofstream(dir_ / "fake" / "units" / "kiln-worker@c-1.service") << "inactive\n";
  seen = p.List();
  ASSERT_TRUE(seen.ok());
  EXPECT_FALSE((*seen)[0].alive);
  EXPECT_EQ(p.Drain("c-1").code(), Code::kNotFound);
}

TEST_F(SystemdProviderTest, DestroyKillsStopsAndDisablesTheUnitThenRemovesTheDirectory) {
  SystemdProvider p(Options());
  ASSERT_TRUE(p.Create(Named("c-1")).ok());
  (void)Calls();
  ASSERT_TRUE(p.Destroy("c-1").ok());
  EXPECT_EQ(Calls(), std::string(kList1) +
                         "kill --signal=SIGKILL kiln-worker@c-1.service\n"
                         "stop kiln-worker@c-1.service\n"
                         "disable kiln-worker@c-1.service\n");
  EXPECT_FALSE(fs::exists(dir_ / "instances" / "c-1"));
  EXPECT_EQ(State("kiln-worker@c-1.service"), "inactive\n");
  ASSERT_TRUE(p.Destroy("c-1").ok()) << "gone already";
  EXPECT_EQ(Calls(), std::string(kList1) + "stop kiln-worker@c-1.service\ndisable kiln-worker@c-1.service\n")
      << "nothing to kill";
  EXPECT_TRUE(p.List()->empty());
}

TEST_F(SystemdProviderTest, AFailedUnitIsNotAlive) {
  SystemdProvider p(Options());
  Launch l = Named("c-1");
  ASSERT_TRUE(p.Create(l).ok());
  std::ofstream(dir_ / "fake" / "units" / "kiln-worker@c-1.service") << "failed\n";
  auto seen = p.List();
  ASSERT_TRUE(seen.ok());
  ASSERT_EQ(seen->size(), 1u);
  EXPECT_FALSE((*seen)[0].alive);
  ASSERT_TRUE(p.Create(l).ok()) << "a failed unit is started again";
}

TEST_F(SystemdProviderTest, ACreateSystemctlRefusesIsUndoneAndSaysWhy) {
  SystemdProvider p(Options());
  Fail("enable", "Failed to enable unit: Unit file kiln-worker@.service does not exist.");
  Launch l = Named("c-1");
  l.join_token = "jt-secret";
  Status st = p.Create(l);
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("enable --now --no-block kiln-worker@c-1.service exited with status 1: "
                              "Failed to enable unit: Unit file kiln-worker@.service does not exist."),
            std::string::npos)
      << st.message();
  EXPECT_EQ(Calls(), std::string(kList1) + "enable --now --no-block kiln-worker@c-1.service\n" + kList1 +
                         "stop kiln-worker@c-1.service\ndisable kiln-worker@c-1.service\n")
      << "what enable may have done is undone";
  EXPECT_FALSE(fs::exists(dir_ / "instances" / "c-1")) << "no directory (and no join token) is left behind";
  EXPECT_FALSE(Enabled("kiln-worker@c-1.service"));
}

TEST_F(SystemdProviderTest, FailuresOfTheOtherCallsAreErrorsNamingTheCommand) {
  SystemdProvider p(Options());
  ASSERT_TRUE(p.Create(Named("c-1")).ok());
  Fail("list-units", "Failed to connect to bus: No such file or directory");
  auto seen = p.List();
  ASSERT_FALSE(seen.ok());
  EXPECT_EQ(seen.status().code(), Code::kUnavailable);
  EXPECT_NE(seen.status().message().find(systemctl_ + " list-units --all --plain --no-legend --no-pager --full "
                                                      "kiln-worker@*.service exited with status 1: Failed to connect "
                                                      "to bus: No such file or directory"),
            std::string::npos)
      << seen.status().message();
  fs::remove(dir_ / "fake" / "fail-list-units");
  Fail("stop", "Job for kiln-worker@c-1.service canceled.");
  Status st = p.Drain("c-1");
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("stop --no-block kiln-worker@c-1.service exited with status 1: Job for "
                              "kiln-worker@c-1.service canceled."),
            std::string::npos)
      << st.message();
  (void)Calls();
  st = p.Destroy("c-1");
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("stop kiln-worker@c-1.service exited with status 1"), std::string::npos) << st.message();
  EXPECT_TRUE(fs::exists(dir_ / "instances" / "c-1")) << "never removed while its unit may still run";
  EXPECT_EQ(Calls(), std::string(kList1) + "kill --signal=SIGKILL kiln-worker@c-1.service\nstop kiln-worker@c-1.service\n");
}

TEST_F(SystemdProviderTest, ANameThatIsNotAnInstanceIdNeverReachesSystemctl) {
  SystemdProvider p(Options());
  for (const std::string id : {"a b", "../x", "-rf", "x;y", ""}) {
    EXPECT_EQ(p.Create(Named(id)).code(), Code::kInvalidArgument) << id;
    EXPECT_EQ(p.Drain(id).code(), Code::kInvalidArgument) << id;
    EXPECT_EQ(p.Destroy(id).code(), Code::kInvalidArgument) << id;
  }
  EXPECT_EQ(Calls(), "");
  EXPECT_FALSE(fs::exists(dir_ / "instances"));
}

// The shipped template, instantiated, as systemd itself reads it. systemd is
// not PID 1 here: `systemd-analyze verify` loads the unit in a manager of
// its own and checks its syntax, its settings and that ExecStart exists.
TEST(SystemdUnit, TheShippedTemplateVerifies) {
  const fs::path dir = fs::temp_directory_path() / ("kiln-unit-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string unit = Read(KILN_SOURCE_DIR "/deploy/systemd/kiln-worker@.service");
  ASSERT_FALSE(unit.empty()) << "deploy/systemd/kiln-worker@.service is missing";
  // The provider's default root is the one the unit reads its config from.
  const std::string conf = SystemdProvider::Options{}.root + "/%i/worker.conf";
  EXPECT_NE(unit.find("ExecStart=/usr/local/bin/kiln-worker --config " + conf + "\n"), std::string::npos);
  EXPECT_NE(unit.find("ConditionPathExists=" + conf + "\n"), std::string::npos);
  EXPECT_NE(unit.find("KillMode=mixed\n"), std::string::npos) << "SIGTERM to the worker only: it drains";
  // verify wants ExecStart to exist: a binary that does, in its place.
  // (Plain string replacement: std::regex trips GCC 12's -Wmaybe-uninitialized
  // in the sanitizer build.)
  std::string runnable = unit;
  const std::string from = "/usr/local/bin/kiln-worker";
  for (size_t at = runnable.find(from); at != std::string::npos; at = runnable.find(from, at + 9))
    runnable.replace(at, from.size(), "/bin/true");
  std::ofstream(dir / "kiln-worker@.service") << runnable;
  std::ofstream(dir / "kiln-worker@test.service") << runnable;

  auto verify = [&](const std::string& file) {
    CommandOptions o;
    o.timeout = std::chrono::seconds(60);
    return RunCommand({"systemd-analyze", "verify", "--man=no", (dir / file).string()}, o);
  };
  auto r = verify("kiln-worker@test.service");
  ASSERT_TRUE(r.ok()) << r.status().ToString()
                      << " (systemd-analyze comes with the systemd package: apt-get install -y systemd, "
                         "deploy/install-deps.sh)";
  EXPECT_EQ(r->exit_code, 0) << r->err;
  EXPECT_EQ(r->out + r->err, "") << "a warning is a mistake in the unit";

  // And verify does find mistakes here without systemd running: an unknown
  // key is a warning.
  std::ofstream(dir / "kiln-worker@bad.service") << runnable << "[Service]\nKillMod=mixed\n";
  r = verify("kiln-worker@bad.service");
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->err.find("Unknown key 'KillMod'"), std::string::npos) << r->out << r->err;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kiln::cluster
