#include "cluster/run_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/text.h"
#include "common/util.h"

extern char** environ;

namespace kiln::cluster {
namespace {

using Clock = std::chrono::steady_clock;

// An fd closed when it goes out of scope.
struct Fd {
  int fd = -1;
  ~Fd() { Close(); }
  void Close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// Reads what `fd` has now into `to` (at most `keep` bytes kept in all).
// False at end of file or on an error; true while more may come.
bool ReadSome(int fd, std::string* to, size_t keep, size_t* total) {
  char buf[16 * 1024];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n <= 0) return false;
    *total += static_cast<size_t>(n);
    if (to->size() < keep) to->append(buf, std::min(static_cast<size_t>(n), keep - to->size()));
  }
}

}  // namespace

std::string CommandText(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    out += a;
  }
  return Printable(out);
}

std::string CommandFailure(const std::vector<std::string>& argv, const CommandResult& r) {
  std::string msg = CommandText(argv) + " exited with status " + std::to_string(r.exit_code);
  const std::string err = Trim(r.err);
  msg += err.empty() ? std::string(" and wrote nothing to stderr") : ": " + Printable(err, 1000);
  return msg;
}

std::vector<std::string> ChildEnvironment() {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e)
    if (std::strncmp(*e, "KILN_", 5) != 0) env.emplace_back(*e);
  return env;
}

Result<CommandResult> RunCommand(const std::vector<std::string>& argv, const CommandOptions& o) {
  if (argv.empty() || argv[0].empty()) return InvalidArgument("no command to run");
  const std::string what = CommandText(argv);
  // Its standard input is a socket, so a write to a command that exited
  // without reading is EPIPE (MSG_NOSIGNAL), never a SIGPIPE to this daemon.
  int in[2], out[2], err[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) return Internal(Errno("cannot run " + what));
  Fd in_r{in[0]}, in_w{in[1]};
  if (::pipe2(out, O_CLOEXEC | O_NONBLOCK) != 0) return Internal(Errno("cannot run " + what));
  Fd out_r{out[0]}, out_w{out[1]};
  if (::pipe2(err, O_CLOEXEC | O_NONBLOCK) != 0) return Internal(Errno("cannot run " + what));
  Fd err_r{err[0]}, err_w{err[1]};
  // The child's ends block as usual.
  (void)::fcntl(out_w.fd, F_SETFL, 0);
  (void)::fcntl(err_w.fd, F_SETFL, 0);

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_adddup2(&fa, in_r.fd, 0);
  posix_spawn_file_actions_adddup2(&fa, out_w.fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_w.fd, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  // A process group of its own: a timeout kills what it started too (a
  // `sleep` of a script's), unless that moved to a session of its own (a
  // worker the example provider script starts). Signals as a fresh process
  // has them: the daemon blocks some.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  std::vector<std::string> args = argv, env = ChildEnvironment();
  std::vector<char*> av, envp;
  for (auto& a : args) av.push_back(a.data());
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  av.push_back(nullptr);
  pid_t pid = -1;
  const int rc = args[0].find('/') == std::string::npos
                     ? posix_spawnp(&pid, av[0], &fa, &attr, av.data(), envp.data())
                     : posix_spawn(&pid, av[0], &fa, &attr, av.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  in_r.Close();
  out_w.Close();
  err_w.Close();
  if (rc != 0) return Internal("cannot run " + what + ": " + std::strerror(rc));

  // A pidfd says when it exited; without one (an old kernel) poll in ticks.
  Fd pidfd{static_cast<int>(::syscall(SYS_pidfd_open, pid, 0))};
  CommandResult r;
  size_t sent = 0, out_total = 0, err_total = 0;
  if (o.input.empty()) in_w.Close();
  const auto deadline = Clock::now() + o.timeout;
  bool exited = false, timed_out = false;
  int status = 0;
  Status broke = Status::Ok();  // waiting itself failed
  while (!exited) {
    struct pollfd p[4] = {{in_w.fd, POLLOUT, 0}, {out_r.fd, POLLIN, 0}, {err_r.fd, POLLIN, 0}, {pidfd.fd, POLLIN, 0}};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    const int wait_ms = static_cast<int>(pidfd.fd >= 0 ? std::min<int64_t>(left, 60'000) : std::min<int64_t>(left, 10));
    const int n = ::poll(p, 4, wait_ms);
    if (n < 0 && errno != EINTR) {
      broke = Internal(Errno("cannot wait for " + what));
      break;  // (killed and reaped below: nothing is left behind)
    }
    if (in_w.fd >= 0 && (p[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t w = ::send(in_w.fd, o.input.data() + sent, o.input.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (w > 0) sent += static_cast<size_t>(w);
      // All of it, or the command stopped reading (EPIPE): end of file either way.
      if (sent == o.input.size() || (w < 0 && errno != EAGAIN && errno != EINTR)) in_w.Close();
    }
    if (out_r.fd >= 0 && p[1].revents != 0 && !ReadSome(out_r.fd, &r.out, o.max_output + 1, &out_total)) out_r.Close();
    if (err_r.fd >= 0 && p[2].revents != 0 &&
        !ReadSome(err_r.fd, &r.err, CommandOptions::kMaxError, &err_total))
      err_r.Close();
    if (out_total > o.max_output) break;
    if (pidfd.fd < 0 || (p[3].revents & POLLIN)) {
      const pid_t w = ::waitpid(pid, &status, WNOHANG);
      exited = w == pid;
    }
  }
  if (!exited) {
    ::kill(-pid, SIGKILL);
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!broke.ok()) return broke;
    if (timed_out)
      return Status(Code::kDeadlineExceeded, what + " did not finish within " +
                                                 FormatMs(std::chrono::duration_cast<std::chrono::milliseconds>(o.timeout).count()) +
                                                 " and was killed");
    return ResourceExhausted(what + " wrote more than " + std::to_string(o.max_output) +
                             " bytes to stdout and was killed");
  }
  // What it wrote before it exited is in the pipes now; what it left
  // running may hold them open, so take what is there and do not wait.
  if (out_r.fd >= 0) (void)ReadSome(out_r.fd, &r.out, o.max_output + 1, &out_total);
  if (err_r.fd >= 0) (void)ReadSome(err_r.fd, &r.err, CommandOptions::kMaxError, &err_total);
  if (out_total > o.max_output)
    return ResourceExhausted(what + " wrote more than " + std::to_string(o.max_output) + " bytes to stdout");
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace kiln::cluster
