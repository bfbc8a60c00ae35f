#include "worker/exec.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

extern char** environ;

namespace kiln::worker {

int Exec(const std::vector<std::string>& argv, std::string* out, std::chrono::milliseconds timeout) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;  // never inherited by another thread's child
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  std::vector<std::string> a = argv;
  std::vector<char*> av;
  for (auto& s : a) av.push_back(s.data());
  av.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, av[0], &fa, nullptr, av.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  std::string text;
  char buf[4096];
  ssize_t n;
  bool killed = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (rc == 0) {
    if (timeout.count() > 0) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      struct pollfd p = {fds[0], POLLIN, 0};
      if (left <= 0 || (::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1000))) == 0 &&
                        std::chrono::steady_clock::now() >= deadline)) {
        ::kill(pid, SIGKILL);  // (what it left holding the pipe is not waited for)
        killed = true;
        break;
      }
      if (p.revents == 0) continue;
    }
    if ((n = read(fds[0], buf, sizeof buf)) <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    text.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (out != nullptr) *out = text;
  if (rc != 0) return -1;
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (killed) return 128 + SIGKILL;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace kiln::worker
