#include "cluster/process_provider.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "cluster/instance_dir.h"
#include "cluster/run_command.h"
#include "common/text.h"
#include "common/util.h"

namespace kiln::cluster {
namespace fs = std::filesystem;
namespace {

std::string Errno(const std::string& what, int err) { return what + ": " + std::strerror(err); }

std::string ReadSmall(const std::string& path) {
  auto text = ReadWholeFile(path);
  return text.ok() ? *text : std::string();
}

}  // namespace

ProcessProvider::ProcessProvider(Options o) : o_(std::move(o)) {
  // Absolute: the worker's work_dir is matched to the instance's row by it.
  std::error_code ec;
  std::string root = fs::absolute(o_.root, ec).lexically_normal().string();
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (!ec) o_.root = root;
}

std::string ProcessProvider::WorkDir(const std::string& id) const { return Dir(id) + "/work"; }

int ProcessProvider::LivePid(const std::string& id) {
  const std::string text = ReadSmall(Dir(id) + "/pid");
  int pid = 0;
  try {
    pid = std::stoi(text);
  } catch (...) {
    return 0;
  }
  if (pid <= 1) return 0;
  int st = 0;
  // Our own child: running (0) is ours whatever /proc says yet (seen just
  // after its spawn, under load, its command line did not always name its
  // config yet); exited, it is reaped here and no longer runs.
  const pid_t w = ::waitpid(pid, &st, WNOHANG);
  if (w == 0) return pid;
  if (w == pid) return 0;
  if (::kill(pid, 0) != 0 && errno != EPERM) return 0;
  // The pid may have been reused: it is ours if its command line names our config.
  std::string cmdline = ReadSmall("/proc/" + std::to_string(pid) + "/cmdline");
  for (auto& c : cmdline)
    if (c == '\0') c = ' ';
  return cmdline.find(Dir(id) + "/worker.conf") != std::string::npos ? pid : 0;
}

Result<std::vector<ProcessProvider::Seen>> ProcessProvider::List() {
  std::vector<Seen> out;
  std::error_code ec;
  if (!fs::exists(o_.root, ec)) return out;
  for (const auto& e : fs::directory_iterator(o_.root, ec)) {
    if (!e.is_directory()) continue;
    Seen s;
    s.id = e.path().filename().string();
    s.alive = LivePid(s.id) > 0;
    out.push_back(std::move(s));
  }
  if (ec) return Unavailable(Errno("cannot list " + o_.root, ec.value()));
  std::sort(out.begin(), out.end(), [](const Seen& a, const Seen& b) { return a.id < b.id; });
  return out;
}

Status ProcessProvider::Create(const Launch& l) {
  const std::string& id = l.id;
  KILN_RETURN_IF_ERROR(CheckName("instance", id));
  if (LivePid(id) > 0) return AlreadyExists("instance " + id + " runs already");
  const std::string dir = Dir(id);
  std::error_code ec;
  fs::create_directories(WorkDir(id), ec);
  if (ec) return Internal("cannot create " + WorkDir(id) + ": " + ec.message());
  Launch with_dir = l;
  if (with_dir.work_dir.empty()) with_dir.work_dir = WorkDir(id);
  KILN_RETURN_IF_ERROR(WriteInstanceDir(dir, with_dir));
  const std::string conf = dir + "/worker.conf";

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  const std::string log = dir + "/worker.log";
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  // Its own directory as its working directory: relative paths of its
  // settings (metrics_address_file = metrics.addr) land there.
  posix_spawn_file_actions_addchdir_np(&fa, dir.c_str());
  // A session of its own: the worker outlives this controller, and a signal
  // to the controller's process group does not reach it.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  std::vector<std::string> args{o_.worker_binary, "--config", conf}, env = ChildEnvironment();
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // Not the controller's KILN_* settings: the worker's are its worker.conf.
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, o_.worker_binary.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Internal(Errno("cannot start " + o_.worker_binary + " for instance " + id, rc));
  if (Status st = WriteFileAtomic(dir + "/pid", std::to_string(pid) + "\n"); !st.ok()) {
    // Without its pid file no controller would find it again: it must not run.
    ::kill(pid, SIGKILL);
    int ws = 0;
    (void)::waitpid(pid, &ws, 0);
    return st;
  }
  spdlog::info("worker process started instance={} pid={} dir={}", id, pid, dir);
  return Status::Ok();
}

Status ProcessProvider::Drain(const std::string& id) {
  const int pid = LivePid(id);
  if (pid == 0) return NotFound("instance " + id + " does not run");
  if (::kill(pid, SIGTERM) != 0) return Internal(Errno("cannot signal instance " + id, errno));
  spdlog::info("worker process draining instance={} pid={}", id, pid);
  return Status::Ok();
}

void ProcessProvider::PruneKeptLogs() {
  std::vector<std::pair<fs::file_time_type, fs::path>> logs;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(o_.root, ec)) {
    std::error_code fe;
    if (e.path().extension() != ".log" || !e.is_regular_file(fe)) continue;
    const auto t = e.last_write_time(fe);
    if (!fe) logs.emplace_back(t, e.path());
  }
  if (logs.size() <= kKeptLogs) return;
  std::sort(logs.begin(), logs.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = kKeptLogs; i < logs.size(); ++i) fs::remove(logs[i].second, ec);
}

Status ProcessProvider::Destroy(const std::string& id) {
  KILN_RETURN_IF_ERROR(CheckName("instance", id));
  if (const int pid = LivePid(id); pid > 0) {
    ::kill(pid, SIGKILL);
    int st = 0;
    (void)::waitpid(pid, &st, 0);  // ours: reaped; another's: ECHILD at once
  }
  std::error_code ec;
  // Its log outlives it, beside the instances (why did it never register?):
  // the newest kKeptLogs of them.
  const std::string kept = o_.root + "/" + id + ".log";
  fs::rename(Dir(id) + "/worker.log", kept, ec);
  if (!ec) {
    // Dated by its destruction, not its last line: a worker that never
    // registered wrote once, at its start, and its log is the one wanted.
    fs::last_write_time(kept, fs::file_time_type::clock::now(), ec);
    PruneKeptLogs();
  }
  ec.clear();
  fs::remove_all(Dir(id), ec);
  if (ec) return Internal("cannot remove " + Dir(id) + ": " + ec.message());
  spdlog::info("worker process destroyed instance={}", id);
  return Status::Ok();
}

}  // namespace kiln::cluster
