// The process provider (cluster/process_provider.h) over a stand-in for
// kiln-worker: a shell script that drains on SIGTERM like the worker.

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "cluster/process_provider.h"
#include "unit/cluster_provider_test_util.h"

namespace kiln::cluster {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace kiln::cluster::testing;

// A launch of instance `id` with no settings.
Launch Named(const std::string& id) {
  Launch l;
  l.id = id;
  return l;
}

class ProcessProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshDir("kiln-pp");
    worker_ = FakeWorker(dir_);
  }
  void TearDown() override {
    ProcessProvider p(Options());
    if (auto seen = p.List(); seen.ok())
      for (const auto& s : *seen) (void)p.Destroy(s.id);
    fs::remove_all(dir_);
  }
  ProcessProvider::Options Options() { return {(dir_ / "instances").string(), worker_}; }
  bool Alive(ProcessProvider& p, const std::string& id) {
    auto seen = p.List();
    if (!seen.ok()) return false;
    for (const auto& s : *seen)
      if (s.id == id) return s.alive;
    return false;
  }

  fs::path dir_;
  std::string worker_;
};

TEST_F(ProcessProviderTest, StartsAWorkerWithItsOwnConfigAndWorkDirAndANewProviderAdoptsIt) {
  ProcessProvider p(Options());
  auto none = p.List();
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty()) << "no root yet: no instances";
  ASSERT_TRUE(p.Create(Launch{"c-1", "", {{"cluster", "c"}, {"slots", "2"}}, "", ""}).ok());
  EXPECT_TRUE(WaitFor([&] { return Read(p.Dir("c-1") + "/worker.log").find("started --config") != std::string::npos; },
                      10s));
  EXPECT_EQ(Read(p.Dir("c-1") + "/worker.conf"), "cluster = c\nslots = 2\nwork_dir = " + p.WorkDir("c-1") + "\n");
  EXPECT_TRUE(fs::is_directory(p.WorkDir("c-1")));
  EXPECT_TRUE(Alive(p, "c-1"));
  EXPECT_EQ(p.Create(Named("c-1")).code(), Code::kAlreadyExists) << "never two processes for one instance";
  // A new leader: another provider over the same root sees it running.
  ProcessProvider next(Options());
  auto seen = next.List();
  ASSERT_TRUE(seen.ok());
  ASSERT_EQ(seen->size(), 1u);
  EXPECT_EQ((*seen)[0].id, "c-1");
  EXPECT_TRUE((*seen)[0].alive);
  EXPECT_GT(next.Pid("c-1"), 1);
}

TEST_F(ProcessProviderTest, AJoinTokenIsAFileOnlyItsOwnerReads) {
  ProcessProvider p(Options());
  Launch l{"c-1", "", {{"cluster", "c"}}, "/farm/ca.crt", "jt-secret"};
  ASSERT_TRUE(p.Create(l).ok());
  const std::string token = p.Dir("c-1") + "/join.token";
  EXPECT_EQ(Read(token), "jt-secret\n");
  EXPECT_EQ(fs::status(token).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_EQ(Read(p.Dir("c-1") + "/worker.conf"), "cluster = c\nwork_dir = " + p.WorkDir("c-1") +
                                                     "\nca_file = /farm/ca.crt\njoin_token_file = " + token + "\n");
  EXPECT_EQ(p.WorkDir("c-1").front(), '/') << "absolute: the worker's row is matched by it";
}

TEST_F(ProcessProviderTest, DrainLetsItExitAndDestroyRemovesIt) {
  ProcessProvider p(Options());
  ASSERT_TRUE(p.Create(Named("c-1")).ok());
  ASSERT_TRUE(WaitFor([&] { return Read(p.Dir("c-1") + "/worker.log").find("started") != std::string::npos; }, 10s));
  ASSERT_TRUE(p.Drain("c-1").ok());
  EXPECT_TRUE(WaitFor([&] { return !Alive(p, "c-1"); }, 10s)) << "the drained worker exits";
  EXPECT_NE(Read(p.Dir("c-1") + "/worker.log").find("drained"), std::string::npos);
  EXPECT_EQ(p.Drain("c-1").code(), Code::kNotFound);
  ASSERT_TRUE(p.Destroy("c-1").ok());
  EXPECT_FALSE(fs::exists(p.Dir("c-1")));
  EXPECT_NE(Read(Options().root + "/c-1.log").find("drained"), std::string::npos) << "its log is kept";
  EXPECT_TRUE(p.Destroy("c-1").ok()) << "gone already: nothing to do";
  ASSERT_TRUE(p.Create(Named("c-2")).ok());
  ASSERT_TRUE(p.Destroy("c-2").ok()) << "a running one is killed";
  EXPECT_TRUE(p.List()->empty()) << "kept logs are not instances";
}

TEST_F(ProcessProviderTest, OnlyTheNewestLogsOfDestroyedInstancesAreKept) {
  ProcessProvider p(Options());
  // Logs of instances destroyed earlier, oldest first.
  fs::create_directories(Options().root);
  const auto now = fs::file_time_type::clock::now();
  for (size_t i = 0; i < ProcessProvider::kKeptLogs + 5; ++i) {
    const std::string log = Options().root + "/old-" + std::to_string(i) + ".log";
    std::ofstream(log) << "old " << i << "\n";
    fs::last_write_time(log, now - std::chrono::hours(100 - i));
  }
  ASSERT_TRUE(p.Create(Named("c-1")).ok());
  // Its log last written long ago (a worker that wrote once, at its start).
  ASSERT_TRUE(WaitFor([&] { return Read(p.Dir("c-1") + "/worker.log").find("started") != std::string::npos; }, 10s));
  fs::last_write_time(p.Dir("c-1") + "/worker.log", now - std::chrono::hours(1000));
  ASSERT_TRUE(p.Destroy("c-1").ok());
  size_t kept = 0;
  for (const auto& e : fs::directory_iterator(Options().root)) kept += e.path().extension() == ".log";
  EXPECT_EQ(kept, ProcessProvider::kKeptLogs);
  EXPECT_TRUE(fs::exists(Options().root + "/c-1.log")) << "the newest stays";
  EXPECT_FALSE(fs::exists(Options().root + "/old-0.log")) << "the oldest went";
  EXPECT_TRUE(fs::exists(Options().root + "/old-" + std::to_string(ProcessProvider::kKeptLogs + 4) + ".log"));
}

TEST_F(ProcessProviderTest, AProcessKilledOrAPidReusedIsNotAlive) {
  ProcessProvider p(Options());
  ASSERT_TRUE(p.Create(Named("c-1")).ok());
  int pid = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        pid = p.Pid("c-1");
        return pid > 1;
      },
      10s))
      << "the started worker is never seen alive";
  // Never kill(0) or kill(-1): that would be this test's own process group
  // (ctest's, and a CI run's with it).
  ASSERT_GT(pid, 1);
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  EXPECT_TRUE(WaitFor([&] { return !Alive(p, "c-1"); }, 10s));
  // A pid file naming a process that is not this instance's worker.
  std::ofstream(p.Dir("c-1") + "/pid") << getpid() << "\n";
  EXPECT_FALSE(Alive(p, "c-1"));
  EXPECT_EQ(p.Create(Named("bad name")).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace kiln::cluster
