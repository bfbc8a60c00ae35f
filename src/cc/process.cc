#include "cc/process.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
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

}  // namespace

ProcessResult RunProcess(const std::vector<std::string>& argv_in,
                         const std::function<void(std::string_view)>& on_stdout) {
  ProcessResult r;
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    r.error = strerror(errno);
    return r;
  }
  if (::pipe2(err, O_CLOEXEC) != 0) {
    r.error = strerror(errno);
    ::close(out[0]);
    ::close(out[1]);
    return r;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<std::string> argv = argv_in;
  auto av = Argv(argv);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, av[0], &fa, nullptr, av.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    r.error = strerror(rc);
    ::close(out[0]);
    ::close(err[0]);
    return r;
  }
  struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open = 2;
  char buf[64 * 1024];
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (auto& p : fds) {
      if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(p.fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(p.fd);
        p.fd = -1;
        --open;
        continue;
      }
      std::string_view chunk(buf, static_cast<size_t>(n));
      if (p.fd == out[0] && on_stdout) on_stdout(chunk);
      else (p.fd == out[0] ? r.out : r.err).append(chunk);
    }
  }
  for (auto& p : fds)
    if (p.fd >= 0) ::close(p.fd);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

void ExecProcess(const std::vector<std::string>& argv_in) {
  std::vector<std::string> argv = argv_in;
  auto av = Argv(argv);
  ::execv(av[0], av.data());
}

}  // namespace kiln::cc
