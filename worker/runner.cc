#include "worker/runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "common/util.h"

extern char** environ;

namespace kiln::worker {
namespace {

std::vector<std::string> BuildEnv(const RunRequest& req, const std::string& cwd) {
  std::map<std::string, std::string> env;
  const char* path = std::getenv("PATH");
  env["PATH"] = path ? path : "/usr/local/bin:/usr/bin:/bin";
  env["HOME"] = req.job_dir;
  env["TMPDIR"] = req.job_dir + "/.tmp";
  env["LANG"] = "C.UTF-8";
  env["TZ"] = "UTC";
  env["PWD"] = cwd;
  for (const auto& [k, v] : req.spec.env) env[k] = v;
  env["KILN_JOB_ID"] = std::to_string(req.job_id);
  env["KILN_ATTEMPT"] = std::to_string(req.attempt);
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

}  // namespace

RunOutcome RunJob(const RunRequest& req, const std::function<void(int64_t)>& on_started,
                  const std::function<void(const std::string&)>& on_output, const std::atomic<bool>& cancel,
                  const std::atomic<bool>& hand_back, std::atomic<int>* pgid_out) {
  using Clock = std::chrono::steady_clock;
  RunOutcome out;
  out.started_ms = NowUnixMs();
  std::string cwd = req.job_dir;
  if (!req.spec.working_dir.empty()) cwd += "/" + req.spec.working_dir;
  std::error_code ec;
  std::filesystem::create_directories(cwd, ec);
  std::filesystem::create_directories(req.job_dir + "/.tmp", ec);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    out.result.error = std::string("cannot create a pipe: ") + std::strerror(errno);
    out.finished_ms = NowUnixMs();
    return out;
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);     // the daemon blocks signals; the job must not
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);          // its own process group, killed as a whole
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_USEVFORK);
  if (!req.launcher.empty()) cwd = req.job_dir;
  std::vector<std::string> env;
  if (req.launcher.empty()) env = BuildEnv(req, cwd);
  else
    for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  std::vector<char*> envp, argv;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = req.launcher.empty() ? req.spec.argv : req.launcher;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = -1;
  int rc = args.empty() ? EINVAL : posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    out.result.exit_code = 127;
    out.result.error = "cannot run \"" + (args.empty() ? std::string() : args[0]) + "\": " + std::strerror(rc);
    std::string msg = "kiln: " + out.result.error + "\n";
    on_started(out.started_ms);
    on_output(msg);
    out.finished_ms = NowUnixMs();
    return out;
  }
  if (pgid_out) *pgid_out = pid;
  on_started(out.started_ms);

  auto deadline = req.spec.timeout_s > 0 ? Clock::now() + std::chrono::seconds(req.spec.timeout_s) : Clock::time_point::max();
  std::string buf;
  auto first_byte = Clock::time_point::max();
  bool timed_out = false, cancelled = false, handed_back = false, aborted = false, eof = false;
  int wstatus = 0;
  bool exited = false;
  auto kill_group = [&] {
    if (req.kill) req.kill();
    kill(-pid, SIGKILL);
  };
  auto flush = [&] {
    if (!buf.empty()) on_output(buf);
    buf.clear();
    first_byte = Clock::time_point::max();
  };
  auto exited_at = Clock::time_point::max();
  // Until the command has exited and its output is read. EOF on the pipe
  // only stops the reading: a command that closed its output still runs and
  // is still subject to cancel, hand-back and the timeout.
  while (!exited || !eof) {
    if (!timed_out && !cancelled && !handed_back && !aborted) {
      if (cancel) cancelled = true;
      else if (hand_back) handed_back = true;
      else if (req.abort != nullptr && *req.abort) aborted = true;
      else if (Clock::now() >= deadline) timed_out = true;
      if (cancelled || handed_back || timed_out || aborted) kill_group();
    }
    if (!exited && waitpid(pid, &wstatus, WNOHANG) == pid) {
      exited = true;
      exited_at = Clock::now();
      // Whatever the command left behind goes with it (a launcher's
      // container is its caller's to remove).
      if (req.launcher.empty()) kill_group();
    }
    // Something that left the process group may hold the pipe: stop reading
    // a second after the command exited.
    if (exited && Clock::now() - exited_at > std::chrono::seconds(1)) break;
    if (eof) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 20) > 0) {
      char tmp[65536];
      ssize_t r = read(fds[0], tmp, sizeof tmp);
      if (r > 0) {
        if (buf.empty()) first_byte = Clock::now();
        buf.append(tmp, static_cast<size_t>(r));
      } else if (r == 0) {
        eof = true;
      }
    }
    if (buf.size() >= 65536 || (!buf.empty() && Clock::now() - first_byte >= std::chrono::milliseconds(100))) flush();
  }
  flush();
  close(fds[0]);
  out.finished_ms = NowUnixMs();
  if (WIFEXITED(wstatus)) {
    out.result.exit_code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    out.result.exit_code = -1;
    out.result.term_signal = WTERMSIG(wstatus);
  }
  if (handed_back) {
    out.status = queue::JobStatus::kQueued;
    out.result.error = "handed back: the worker is shutting down";
  } else if (cancelled) {
    out.status = queue::JobStatus::kCancelled;
    out.result.error = "cancelled";
  } else if (aborted) {
    out.status = queue::JobStatus::kFailed;
    out.result.error = req.abort_reason;
    out.result.limit = req.abort_limit;
  } else if (timed_out) {
    out.status = queue::JobStatus::kFailed;
    out.result.timed_out = true;
    out.result.limit = "timeout";
    out.result.error = "killed: exceeded its timeout of " + std::to_string(req.spec.timeout_s) + " s";
  } else if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) {
    out.status = queue::JobStatus::kSucceeded;
  } else {
    out.status = queue::JobStatus::kFailed;
    if (WIFSIGNALED(wstatus)) out.result.error = std::string("killed by signal ") + strsignal(WTERMSIG(wstatus));
  }
  return out;
}

}  // namespace kiln::worker
