#include "worker/sandbox.h"

#include <fcntl.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "common/util.h"
#include "worker/exec.h"

extern char** environ;

namespace kiln::worker {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

int64_t ReadCounter(const std::string& file, const std::string& key) {
  std::ifstream in(file);
  std::string k;
  int64_t v;
  while (in >> k >> v)
    if (k == key) return v;
  return 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool HasToken(const std::string& list, const std::string& token) {
  std::istringstream in(list);
  std::string t;
  while (std::getline(in, t, ','))
    if (t == token) return true;
  return false;
}


json Seccomp() {
  // Default allow; refuse what a build never needs and a breakout would.
  static const char* kDenied[] = {
      "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
      "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "init_module", "ioperm", "iopl",
      "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mount", "mount_setattr", "move_mount",
      "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root",
      "process_vm_readv", "process_vm_writev", "quotactl", "reboot", "request_key", "setns", "settimeofday",
      "swapoff", "swapon", "syslog", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vhangup"};
  json names = json::array();
  for (const char* n : kDenied) names.push_back(n);
  json rules = json::array({{{"names", names}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 1}}});
  // No new namespaces through clone either (a user namespace needs no
  // capability): one rule per flag, EPERM if it is set. clone3 passes its
  // flags in memory seccomp cannot read: ENOSYS makes libc fall back to clone.
  for (uint64_t flag : {0x00020000ULL /*NEWNS*/, 0x02000000ULL /*NEWCGROUP*/, 0x04000000ULL /*NEWUTS*/,
                        0x08000000ULL /*NEWIPC*/, 0x10000000ULL /*NEWUSER*/, 0x20000000ULL /*NEWPID*/,
                        0x40000000ULL /*NEWNET*/}) {
    rules.push_back({{"names", {"clone"}},
                     {"action", "SCMP_ACT_ERRNO"},
                     {"errnoRet", 1},
                     {"args", {{{"index", 0}, {"value", flag}, {"valueTwo", flag}, {"op", "SCMP_CMP_MASKED_EQ"}}}}});
  }
  rules.push_back({{"names", {"clone3"}}, {"action", "SCMP_ACT_ERRNO"}, {"errnoRet", 38}});
  return {{"defaultAction", "SCMP_ACT_ALLOW"},
          {"architectures", {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}},
          {"syscalls", rules}};
}

// A container started by RuncSandbox::Start, with the runc process that
// runs it (runc run stays in the foreground until the init exits).
class RuncContainer : public Container {
 public:
  RuncContainer(std::string state, std::string id, std::string bundle, pid_t runc)
      : state_(std::move(state)), id_(std::move(id)), bundle_(std::move(bundle)), runc_(runc) {}
  ~RuncContainer() override {
    Exec({"runc", "--root", state_, "kill", "--all", id_, "KILL"}, nullptr, kRuncCommandTimeout);
    Reap(/*wait=*/true);
    Exec({"runc", "--root", state_, "delete", "--force", id_}, nullptr, kRuncCommandTimeout);
    std::error_code ec;
    fs::remove_all(bundle_, ec);
  }
  bool Running() override { return !Reap(/*wait=*/false); }

 private:
  // True once runc has exited (reaped here, once).
  bool Reap(bool wait) {
    if (runc_ <= 0) return true;
    int st = 0;
    pid_t r;
    while ((r = ::waitpid(runc_, &st, wait ? 0 : WNOHANG)) < 0 && errno == EINTR) {
    }
    if (r == 0) return false;
    runc_ = -1;
    return true;
  }
  std::string state_, id_, bundle_;
  pid_t runc_;
};

class RuncSandbox : public Sandbox {
 public:
  RuncSandbox(std::string state, std::string bundles, std::string prefix, SandboxCaps caps)
      : state_(std::move(state)), bundles_(std::move(bundles)), prefix_(std::move(prefix)), caps_(caps) {}

  Status Check() override {
    if (geteuid() != 0) return FailedPrecondition("containers need kiln-worker to run as root");
    std::string v;
    if (Exec({"runc", "--version"}, &v, kRuncCommandTimeout) != 0) return FailedPrecondition("runc is not installed (apt install runc)");
    for (const char* c : {"memory", "pids", "cpu"})
      if (!fs::exists(std::string("/sys/fs/cgroup/") + c))
        return FailedPrecondition(std::string("the cgroup v1 controller ") + c + " is not mounted");
    return Status::Ok();
  }

  void CleanUp() override {
    std::error_code ec;
    fs::create_directories(state_, ec);
    std::string list;
    if (Exec({"runc", "--root", state_, "list", "-q"}, &list, kRuncCommandTimeout) == 0) {
      std::istringstream in(list);
      std::string id;
      while (in >> id) {  // the state directory is this worker's own: everything in it is a leftover
        spdlog::info("removing leftover container {}", id);
        Exec({"runc", "--root", state_, "delete", "--force", id}, nullptr, kRuncCommandTimeout);
      }
    }
    fs::remove_all(bundles_, ec);
    fs::create_directories(bundles_, ec);
  }

  Result<std::unique_ptr<Container>> Start(const RunRequest& req, const std::string& rootfs,
                                           const std::string& name) override {
    std::string id = prefix_ + name;
    std::string bundle = bundles_ + "/" + id;
    std::error_code ec;
    Exec({"runc", "--root", state_, "delete", "--force", id}, nullptr, kRuncCommandTimeout);  // a crashed run's, if any
    fs::remove_all(bundle, ec);
    fs::create_directories(bundle, ec);
    fs::permissions(bundle, fs::perms::owner_all, ec);
    std::ofstream(bundle + "/config.json") << RuncConfig(req, rootfs, caps_, id);
    if (ec) return FailedPrecondition("cannot make the bundle of container " + id + ": " + ec.message());
    std::vector<std::string> argv = {"runc", "--root", state_, "run", "--bundle", bundle, id};
    std::vector<char*> av;
    for (auto& a : argv) av.push_back(a.data());
    av.push_back(nullptr);
    const std::string log = bundle + "/init.log";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    // Its own process group: a signal to the worker's group is not its.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, av[0], &fa, &attr, av.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) return FailedPrecondition(std::string("cannot start runc: ") + strerror(rc));
    return std::unique_ptr<Container>(new RuncContainer(state_, id, bundle, pid));
  }

  RunOutcome Run(const RunRequest& req_in, const std::string& rootfs, const std::function<void(int64_t)>& on_started,
                 const std::function<void(const std::string&)>& on_output, const std::atomic<bool>& cancel,
                 const std::atomic<bool>& hand_back) override {
    RunRequest req = req_in;
    std::string id = prefix_ + std::to_string(req.job_id) + "-" + std::to_string(req.attempt);
    std::string bundle = bundles_ + "/" + id;
    // Relative: runc puts it below its own cgroup, which is the worker's.
    std::string cgroup = id;
    std::error_code ec;
    fs::remove_all(bundle, ec);
    fs::create_directories(bundle, ec);  // (ids are unique per worker; CleanUp took a crashed run's)
    // config.json holds the build's environment, secret env included: root's alone.
    fs::permissions(bundle, fs::perms::owner_all, ec);
    // (The tree already belongs to the build's user: worker/checkout.h.)
    {
      errno = 0;
      std::ofstream config(bundle + "/config.json");
      config << RuncConfig(req, rootfs, caps_, cgroup);
      config.close();
      if (ec || !config) {
        // Not runc's failure nor the job's: the worker's disk (its health
        // checks say so); the job is retried elsewhere.
        const std::string why = ec ? ec.message() : errno != 0 ? std::strerror(errno) : "write failed";
        fs::remove_all(bundle, ec);
        RunOutcome out;
        out.start_error = StartError::kSetup;
        out.result.exit_code = -1;
        out.result.infrastructure = true;
        out.result.error = "cannot write the container's bundle in " + bundle + ": " + why;
        out.started_ms = out.finished_ms = NowUnixMs();
        return out;
      }
    }
    // runc's own errors go to a log of their own: a container it could not
    // start is told from a command that ran and failed.
    const std::string runc_log = bundle + "/runc.log";
    req.launcher = {"runc", "--root", state_, "--log", runc_log, "--log-format", "json",
                    "run", "--keep", "--bundle", bundle, id};
    std::string state = state_;
    req.kill = [state, id] { Exec({"runc", "--root", state, "kill", "--all", id, "KILL"}, nullptr, kRuncCommandTimeout); };
    RunOutcome out = RunJob(req, on_started, on_output, cancel, hand_back);
    const std::string failure = RuncRunFailure(ReadFile(runc_log));
    // runc exits with the container's status: 128+N when signal N ended it.
    if (out.result.exit_code > 128 && out.result.term_signal == 0) {
      out.result.term_signal = out.result.exit_code - 128;
      out.result.exit_code = -1;
    }
    std::string proc_cgroup = ReadFile("/proc/self/cgroup"), mountinfo = ReadFile("/proc/self/mountinfo");
    int64_t oom = ReadCounter(CgroupDir(cgroup, "memory", proc_cgroup, mountinfo) + "/memory.oom_control", "oom_kill");
    int64_t pids_max = ReadCounter(CgroupDir(cgroup, "pids", proc_cgroup, mountinfo) + "/pids.events", "max");
    Exec({"runc", "--root", state_, "delete", "--force", id}, nullptr, kRuncCommandTimeout);
    fs::remove_all(bundle, ec);
    int64_t mem = CappedLimit(req.spec.memory_bytes, caps_.memory_bytes);
    const bool failed = out.status == queue::JobStatus::kFailed && out.result.limit.empty() && !out.result.timed_out;
    if (failed && !failure.empty()) {
      std::string limit;
      out.start_error = ClassifyRuncFailure(failure, &limit);
      // Out of processes under a roomy pids limit: the host's, not the job's.
      if (limit == "pids" && CappedLimit(req.spec.pids, caps_.pids) >= 64) out.start_error = StartError::kRuntime;
      // (What runc printed is in the job's log too.) Its words, from the
      // part that says what failed, cut to a bound.
      std::string what = failure.substr(std::string_view("runc run failed: ").size());
      const std::string_view exec_prefix = "unable to start container process: ";
      if (out.start_error == StartError::kCommand) what = what.substr(exec_prefix.size());
      if (what.size() > 1000) what = what.substr(0, 1000) + "...";
      out.result.exit_code = -1;
      switch (out.start_error) {
        case StartError::kCommand:
          out.result.exit_code = 127;  // as a shell says of a command it cannot run
          out.result.error = "cannot run the job's command in its image (is it in the image? give its full path): " + what;
          break;
        case StartError::kJob:
          out.result.limit = limit;
          if (limit == "memory")
            out.result.error = "killed: exceeded memory limit " + FormatLimitBytes(mem) + " before its command started";
          else if (limit == "pids")
            out.result.error = "failed: reached the limit of " + std::to_string(CappedLimit(req.spec.pids, caps_.pids)) +
                               " processes (pids) before its command started";
          else
            out.result.error = "cannot start the job's container: " + what;
          break;
        default:
          out.result.infrastructure = true;
          out.result.error = "runc could not start the job's container: " + what;
          break;
      }
    } else if (failed && out.result.exit_code == 127 && out.result.error.find("cannot run") != std::string::npos) {
      // runc itself could not be run.
      out.start_error = StartError::kRuntime;
      out.result.exit_code = -1;
      out.result.infrastructure = true;
      out.result.error = "cannot start runc: " + out.result.error;
    } else if (out.status == queue::JobStatus::kFailed && out.result.limit.empty()) {
      if (oom > 0) {
        out.result.limit = "memory";
        out.result.error = "killed: exceeded memory limit " + FormatLimitBytes(mem);
      } else if (pids_max > 0) {
        out.result.limit = "pids";
        out.result.error = "failed: reached the limit of " + std::to_string(CappedLimit(req.spec.pids, caps_.pids)) +
                           " processes (pids)";
      }
    }
    return out;
  }

 private:
  std::string state_, bundles_, prefix_;
  SandboxCaps caps_;
};

}  // namespace

std::string RuncRunFailure(const std::string& runc_log) {
  std::string failure;
  std::istringstream in(runc_log);
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("msg") || !j["msg"].is_string()) continue;
    const std::string level = j.value("level", "");
    const std::string msg = j["msg"].get<std::string>();
    if ((level == "error" || level == "fatal") && msg.rfind("runc run failed: ", 0) == 0) failure = msg;
  }
  return failure;
}

StartError ClassifyRuncFailure(const std::string& failure, std::string* limit) {
  // runc 1.1's words. Its init's execve of the command failing, after the
  // container was set up, at the start of the message (a path the job
  // named may appear further on, and say anything).
  if (failure.rfind("runc run failed: unable to start container process: exec: ", 0) == 0) return StartError::kCommand;
  auto says = [&](const char* words) { return failure.find(words) != std::string::npos; };
  auto set = [&](const char* l) {
    if (limit != nullptr) *limit = l;
    return StartError::kJob;
  };
  // Its init killed by the job's memory limit, or unable to make threads
  // or processes under its pids limit.
  if (says("container init was OOM-killed")) return set("memory");
  if (says("resource temporarily unavailable") || says("failed to create new OS thread")) return set("pids");
  // The job's working directory (a file in its tree, say).
  if (failure.rfind("runc run failed: unable to start container process: error during container init: chdir to cwd",
                    0) == 0)
    return set("");
  return StartError::kRuntime;
}

std::string RuncConfig(const RunRequest& req, const std::string& rootfs, const SandboxCaps& caps,
                       const std::string& cgroup_path) {
  const bool cc = !req.cc_wrapper_dir.empty() && !req.cc_socket_dir.empty();
  std::map<std::string, std::string> env = {{"PATH", std::string(cc ? "/kiln/bin:" : "") +
                                                         "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
                                            {"HOME", "/tmp"},
                                            {"TMPDIR", "/tmp"},
                                            {"LANG", "C.UTF-8"},
                                            {"TZ", "UTC"}};
  for (const auto& [k, v] : req.spec.env) env[k] = v;
  env["KILN_JOB_ID"] = std::to_string(req.job_id);
  env["KILN_ATTEMPT"] = std::to_string(req.attempt);
  if (cc) env["KILN_CC_SOCKET"] = "/kiln/run/cc.sock";
  json envs = json::array();
  for (const auto& [k, v] : env) envs.push_back(k + "=" + v);
  json caps_empty = json::array();
  int64_t mem = CappedLimit(req.spec.memory_bytes, caps.memory_bytes);
  int64_t pids = CappedLimit(req.spec.pids, caps.pids);
  json resources = {{"devices", {{{"allow", false}, {"access", "rwm"}}}},
                    {"memory", {{"limit", mem}, {"swap", mem}}},
                    {"pids", {{"limit", pids}}}};
  int64_t cpu = CappedLimit(req.spec.cpu_millis, caps.cpu_millis);
  if (cpu > 0) resources["cpu"] = {{"quota", cpu * 100}, {"period", 100000}};
  json mounts = {
      {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
      {{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"},
       {"options", {"nosuid", "strictatime", "mode=755", "size=65536k"}}},
      {{"destination", "/dev/pts"}, {"type", "devpts"}, {"source", "devpts"},
       {"options", {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}}},
      {{"destination", "/dev/shm"}, {"type", "tmpfs"}, {"source", "shm"},
       {"options", {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}}},
      {{"destination", "/dev/mqueue"}, {"type", "mqueue"}, {"source", "mqueue"},
       {"options", {"nosuid", "noexec", "nodev"}}},
      {{"destination", "/sys"}, {"type", "sysfs"}, {"source", "sysfs"}, {"options", {"nosuid", "noexec", "nodev", "ro"}}},
      {{"destination", "/tmp"}, {"type", "tmpfs"}, {"source", "tmpfs"},
       {"options", {"nosuid", "nodev", "mode=1777", "size=" + std::to_string(caps.tmp_bytes)}}},
      {{"destination", "/src"}, {"type", "bind"}, {"source", req.job_dir}, {"options", {"rbind", "rw", "nosuid", "nodev"}}}};
  if (cc) {
    mounts.push_back({{"destination", "/kiln/bin"}, {"type", "bind"}, {"source", req.cc_wrapper_dir},
                      {"options", {"rbind", "ro", "nosuid", "nodev"}}});
    mounts.push_back({{"destination", "/kiln/run"}, {"type", "bind"}, {"source", req.cc_socket_dir},
                      {"options", {"rbind", "ro", "nosuid", "nodev", "noexec"}}});
  }
  std::string cwd = "/src";
  if (!req.spec.working_dir.empty()) cwd += "/" + req.spec.working_dir;
  json config = {
      {"ociVersion", "1.0.2"},
      {"process",
       {{"terminal", false},
        {"user", {{"uid", caps.uid}, {"gid", caps.gid}}},
        {"args", req.spec.argv},
        {"env", envs},
        {"cwd", cwd},
        {"capabilities",
         {{"bounding", caps_empty}, {"effective", caps_empty}, {"inheritable", caps_empty},
          {"permitted", caps_empty}, {"ambient", caps_empty}}},
        {"rlimits", {{{"type", "RLIMIT_CORE"}, {"hard", 0}, {"soft", 0}}}},
        {"noNewPrivileges", true}}},
      {"root", {{"path", rootfs}, {"readonly", true}}},
      {"hostname", "kiln"},
      {"mounts", mounts},
      {"linux",
       {{"namespaces", {{{"type", "pid"}}, {{"type", "network"}}, {{"type", "ipc"}}, {{"type", "uts"}},
                        {{"type", "mount"}}}},
        {"cgroupsPath", cgroup_path},
        {"resources", resources},
        {"maskedPaths", {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                         "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                         "/proc/scsi"}},
        {"readonlyPaths", {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}},
        {"seccomp", Seccomp()}}}};
  return config.dump(2);
}

std::string CgroupDir(const std::string& cgroups_path, const std::string& controller, const std::string& proc_cgroup,
                      const std::string& mountinfo) {
  // The hierarchy's mount: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - cgroup SOURCE SUPEROPTIONS".
  std::string root, mountpoint;
  std::istringstream mounts(mountinfo);
  for (std::string line; std::getline(mounts, line);) {
    std::istringstream f(line);
    std::vector<std::string> fields;
    for (std::string w; f >> w;) fields.push_back(w);
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || fields.end() - dash < 4 || dash[1] != "cgroup" || !HasToken(dash[3], controller)) continue;
    root = fields[3];
    mountpoint = fields[4];
    break;
  }
  if (mountpoint.empty()) return "";
  if (!cgroups_path.empty() && cgroups_path[0] == '/') return mountpoint + cgroups_path;
  // This process's cgroup in that hierarchy ("ID:CONTROLLERS:PATH"), relative
  // to the mount's root (a container may see only its own subtree mounted).
  std::string own;
  std::istringstream groups(proc_cgroup);
  for (std::string line; std::getline(groups, line);) {
    size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b != std::string::npos && HasToken(line.substr(a + 1, b - a - 1), controller)) {
      own = line.substr(b + 1);
      break;
    }
  }
  if (root != "/" && own.rfind(root, 0) == 0 && (own.size() == root.size() || own[root.size()] == '/'))
    own = own.substr(root.size());
  if (!own.empty() && own.back() == '/') own.pop_back();
  return mountpoint + own + "/" + cgroups_path;
}

std::unique_ptr<Sandbox> MakeRuncSandbox(std::string state_dir, std::string bundle_dir, std::string prefix,
                                         SandboxCaps caps) {
  return std::make_unique<RuncSandbox>(std::move(state_dir), std::move(bundle_dir), std::move(prefix), caps);
}

}  // namespace kiln::worker
