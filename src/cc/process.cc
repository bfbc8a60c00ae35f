#include "cc/process.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>

extern char** environ;

namespace kiln::cc {
namespace {

std::vector<char*> Argv(std::vector<std::string>& a) {
  std::vector<char*> av;
  for (auto& s : a) av.push_back(s.data());
  av.push_back(nullptr);
  return av;
}

// Where the child's output goes: a memory file, read once the child is
// gone, or (when it is streamed, or memfd_create is refused) a pipe, read
// as it comes. A memory file never wakes this process: `cc -H` writes its
// include trace a few bytes at a time, some 1,600 writes for a PostgreSQL
// unit, and a pipe cost the wrapper 2 ms of CPU per compile reading them.
struct Sink {
  int write_end = -1;
  int read_end = -1;  // a memory file's one descriptor is both ends
  bool memory = false;

  bool Open(bool stream) {
    if (!stream) {
      read_end = write_end = ::memfd_create("kiln-cc-output", MFD_CLOEXEC);
      memory = read_end >= 0;
      if (memory) return true;
    }
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return false;
    read_end = p[0];
    write_end = p[1];
    return true;
  }
  // Once the child has its copy; a memory file stays open to be read.
  void CloseWriteEnd() {
    if (write_end >= 0 && !memory) ::close(write_end);
    write_end = -1;
  }
  void Close() {
    CloseWriteEnd();
    if (read_end >= 0) ::close(read_end);
    read_end = -1;
  }
  // The whole memory file into `to`.
  void ReadMemory(std::string* to) const {
    char buf[64 * 1024];
    off_t at = 0;
    for (;;) {
      ssize_t n = ::pread(read_end, buf, sizeof buf, at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      to->append(buf, static_cast<size_t>(n));
      at += n;
    }
  }
};

}  // namespace

ProcessResult RunProcess(const std::vector<std::string>& argv_in,
                         const std::function<void(std::string_view)>& on_stdout) {
  ProcessResult r;
  Sink out, err;
  if (!out.Open(static_cast<bool>(on_stdout)) || !err.Open(false)) {
    r.error = strerror(errno);
    out.Close();
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out.write_end, 1);
  posix_spawn_file_actions_adddup2(&fa, err.write_end, 2);
  std::vector<std::string> argv = argv_in;
  auto av = Argv(argv);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, av[0], &fa, nullptr, av.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  out.CloseWriteEnd();
  err.CloseWriteEnd();
  if (rc != 0) {
    r.error = strerror(rc);
    out.Close();
    err.Close();
    return r;
  }
  // The pipes, until their writers are gone.
  struct pollfd fds[2] = {{out.memory ? -1 : out.read_end, POLLIN, 0}, {err.memory ? -1 : err.read_end, POLLIN, 0}};
  int open = (fds[0].fd >= 0) + (fds[1].fd >= 0);
  char buf[64 * 1024];
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      auto& p = fds[i];
      if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(p.fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        p.fd = -1;
        --open;
        continue;
      }
      std::string_view chunk(buf, static_cast<size_t>(n));
      if (i == 0 && on_stdout) on_stdout(chunk);
      else (i == 0 ? r.out : r.err).append(chunk);
    }
  }
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (out.memory) out.ReadMemory(&r.out);
  if (err.memory) err.ReadMemory(&r.err);
  out.Close();
  err.Close();
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

ProcessResult RunIn(const std::vector<std::string>& argv_in, const std::vector<std::string>& env_in,
                    const std::string& cwd, int64_t timeout_ms, bool* timed_out) {
  ProcessResult r;
  *timed_out = false;
  Sink out, err;
  if (!out.Open(false) || !err.Open(false) || !out.memory || !err.memory) {
    r.error = std::string("no memory file for the output: ") + strerror(errno);
    out.Close();
    err.Close();
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out.write_end, 1);
  posix_spawn_file_actions_adddup2(&fa, err.write_end, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  std::vector<std::string> argv = argv_in, env = env_in;
  auto av = Argv(argv);
  auto ev = Argv(env);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, av[0], &fa, nullptr, av.data(), ev.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    r.error = "cannot run " + argv_in[0] + " in " + cwd + ": " + strerror(rc);
    out.Close();
    err.Close();
    return r;
  }
  // Waits on a pidfd: the deadline needs no timer and no signal handler.
  int pfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pfd >= 0 && timeout_ms > 0) {
    struct pollfd p = {pfd, POLLIN, 0};
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      int n = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
      if (n > 0) break;
      if (n < 0 && errno == EINTR) continue;
      *timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
  }
  if (pfd >= 0) ::close(pfd);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  out.ReadMemory(&r.out);
  err.ReadMemory(&r.err);
  out.Close();
  err.Close();
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

void ExecProcess(const std::vector<std::string>& argv_in) {
  std::vector<std::string> argv = argv_in;
  auto av = Argv(argv);
  ::execv(av[0], av.data());
}

}  // namespace kiln::cc
