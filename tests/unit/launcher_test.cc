// kiln-cc's action launcher (the init of an action sandbox), run here as a
// thread of the test: it runs exactly what it is sent, with exactly the
// environment and working directory it is given, and keeps its deadline.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "cc/frame.h"
#include "cc/launcher.h"
#include "harness/harness.h"
#include "kiln/cc/v1/cc.pb.h"

namespace kiln::cc {
namespace {

using namespace std::chrono_literals;

class Launcher : public ::testing::Test {
 protected:
  void SetUp() override {
    sock_ = dir_.path() + "/launch.sock";
    listen_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, sock_.c_str(), sock_.size() + 1);
    ASSERT_EQ(::bind(listen_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listen_, 1), 0);
    launcher_ = std::thread([this] { code_ = RunLauncher(sock_); });
    fd_ = ::accept4(listen_, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(fd_, 0);
  }
  void TearDown() override {
    ::close(fd_);  // the launcher ends with its socket
    launcher_.join();
    EXPECT_EQ(code_, 0);
    ::close(listen_);
  }
  v1::LaunchReply Run(const v1::Launch& l) {
    EXPECT_TRUE(WriteFrame(fd_, l.SerializeAsString()).ok());
    auto bytes = ReadFrame(fd_, 64 << 20);
    v1::LaunchReply r;
    EXPECT_TRUE(bytes.ok() && r.ParseFromString(*bytes));
    return r;
  }

  test::TempDir dir_;
  std::string sock_;
  int listen_ = -1, fd_ = -1, code_ = -1;
  std::thread launcher_;
};

TEST_F(Launcher, RunsWhatItIsSentWithExactlyItsEnvironmentAndDirectory) {
  std::filesystem::create_directories(dir_.path() + "/work");
  v1::Launch l;
  for (const char* a : {"/bin/sh", "-c", "echo out $GREETING; pwd; echo err >&2; env | grep -c . ; exit 3"}) l.add_argv(a);
  l.add_env("GREETING=hi");
  l.add_env("PATH=/usr/bin:/bin");
  l.set_cwd(dir_.path() + "/work");
  auto r = Run(l);
  EXPECT_EQ(r.error(), "");
  EXPECT_EQ(r.exit_code(), 3);
  // sh adds PWD (and SHLVL, _) of its own: the count is of what it saw.
  EXPECT_EQ(r.stdout().substr(0, r.stdout().find('\n')), "out hi");
  EXPECT_NE(r.stdout().find(dir_.path() + "/work\n"), std::string::npos) << r.stdout();
  EXPECT_EQ(r.stderr(), "err\n");
  // One after another on the same connection.
  v1::Launch again;
  again.add_argv("/bin/true");
  EXPECT_EQ(Run(again).exit_code(), 0);
}

TEST_F(Launcher, KeepsItsDeadlineAndSaysWhatCouldNotStart) {
  v1::Launch slow;
  for (const char* a : {"/bin/sleep", "30"}) slow.add_argv(a);
  slow.set_timeout_ms(200);
  auto began = std::chrono::steady_clock::now();
  auto r = Run(slow);
  EXPECT_TRUE(r.timed_out());
  EXPECT_EQ(r.term_signal(), 9);
  EXPECT_LT(std::chrono::steady_clock::now() - began, 10s);
  v1::Launch missing;
  missing.add_argv("/no/such/compiler");
  auto m = Run(missing);
  EXPECT_EQ(m.exit_code(), -1);
  EXPECT_NE(m.error().find("/no/such/compiler"), std::string::npos) << m.error();
  v1::Launch relative;
  relative.add_argv("gcc");
  EXPECT_NE(Run(relative).error().find("absolute path"), std::string::npos);
}

}  // namespace
}  // namespace kiln::cc
