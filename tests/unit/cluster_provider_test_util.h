#pragma once
// What the providers' tests share: a fresh directory per test, a stand-in
// for kiln-worker, and waiting for what a child process does.

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "cluster/provider.h"

namespace kiln::cluster::testing {

inline std::string Read(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Polls `f` until it holds or `limit` passed; its last answer.
template <class F>
bool WaitFor(F f, std::chrono::milliseconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return f();
}

// An empty directory of this test's own: `<tmp>/<prefix>-<pid>-<test name>`.
inline std::filesystem::path FreshDir(const std::string& prefix) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / (prefix + "-" + std::to_string(getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Writes `<dir>/fake-worker`, a shell script that stands in for kiln-worker:
// prints "started ARGS", and on SIGTERM "drained" and exits 0, as the
// worker drains. Returns its path.
inline std::string FakeWorker(const std::filesystem::path& dir) {
  const std::string path = (dir / "fake-worker").string();
  std::ofstream(path) << "#!/bin/sh\necho started \"$@\"\ntrap 'echo drained; exit 0' TERM\n"
                         "while :; do sleep 0.05; done\n";
  std::filesystem::permissions(path, std::filesystem::perms::owner_all);
  return path;
}

// A launch with only an id: aggregate initialization that leaves members
// out trips -Wmissing-field-initializers under -Werror.
inline Launch Named(const std::string& id) {
  Launch l;
  l.id = id;
  return l;
}

// Gone, or a zombie no one reaped yet.
inline bool Dead(int pid) {
  if (pid <= 1) return false;  // never a kill(0) or kill(-1) by mistake
  if (::kill(pid, 0) != 0) return true;
  const std::string stat = Read("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  return close != std::string::npos && stat.size() > close + 2 && stat[close + 2] == 'Z';
}

}  // namespace kiln::cluster::testing
