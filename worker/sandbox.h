#pragma once
// Runs a job in a runc container: read-only image root, the job's tree as the
// writable /src, tmpfs /tmp, no network, new PID/IPC/UTS/mount namespaces, a
// non-root user, no capabilities, no new privileges, a seccomp deny list,
// cgroup limits on memory, pids and CPU. The seam for another runtime is
// this interface (Sandbox), not runc's command line.

#include <memory>
#include <string>

#include "common/status.h"
#include "worker/runner.h"

namespace kiln::worker {

struct SandboxCaps {
  uint32_t uid = 100000, gid = 100000;      // the build's user on the host
  int64_t memory_bytes = int64_t{4} << 30;  // cap and default per job
  int pids = 4096;
  int cpu_millis = 0;                       // 0: all CPUs
  int64_t tmp_bytes = int64_t{1} << 30;     // tmpfs /tmp
};

// A long-lived container (an action box's): runs until destroyed, which
// kills everything in it and removes it.
class Container {
 public:
  virtual ~Container() = default;
  // Whether its init still runs.
  virtual bool Running() = 0;
};

class Sandbox {
 public:
  virtual ~Sandbox() = default;
  // Whether containers can run here; else why not.
  virtual Status Check() = 0;
  // Removes containers and bundles a crashed worker left.
  virtual void CleanUp() = 0;
  // Like RunJob, inside the container; the outcome names the limit that
  // ended it (memory, pids, timeout).
  virtual RunOutcome Run(const RunRequest& req, const std::string& rootfs,
                         const std::function<void(int64_t)>& on_started,
                         const std::function<void(const std::string&)>& on_output, const std::atomic<bool>& cancel,
                         const std::atomic<bool>& hand_back) = 0;
  // Starts a container like Run's whose init is req.spec.argv, named
  // `name` (unique on this worker), and returns at once; what the init
  // prints goes to a log in its bundle. FailedPrecondition if it cannot start.
  virtual Result<std::unique_ptr<Container>> Start(const RunRequest& req, const std::string& rootfs,
                                                   const std::string& name) = 0;
};

// runc, with its state under `state_dir` (this worker's own) and bundles
// under `bundle_dir`; container names start with `prefix`. Each build's
// cgroup is named like its container, directly below the worker's own cgroup
// (a relative cgroupsPath): under systemd with Delegate=yes, inside the
// subtree the service owns.
std::unique_ptr<Sandbox> MakeRuncSandbox(std::string state_dir, std::string bundle_dir, std::string prefix,
                                         SandboxCaps caps);

// What runc's log (`runc --log FILE --log-format json`, one JSON object
// per line) says of a `runc run` that failed: the message of its fatal
// error ("runc run failed: ..."), or "" when runc did not fail (the
// container ran; its command's exit status is runc's).
std::string RuncRunFailure(const std::string& runc_log);

// Whose fault a `runc run` failure (RuncRunFailure) is: kCommand when the
// job's command could not be executed in the container ("exec: ..."),
// kJob when its init died of the job's limits or could not enter its
// working directory (`limit` is set to "memory" or "pids" for a limit),
// else kRuntime (runc, the host, its cgroups or mounts; or the image).
StartError ClassifyRuncFailure(const std::string& failure, std::string* limit = nullptr);

// The OCI config.json of a job (exposed for tests).
std::string RuncConfig(const RunRequest& req, const std::string& rootfs, const SandboxCaps& caps,
                       const std::string& cgroup_path);

// The directory of a cgroup in one cgroup v1 controller's hierarchy
// (`controller`: "memory", "pids", "cpu"...), resolved as runc resolves a
// cgroupsPath: an absolute `cgroups_path` from the hierarchy's root, a
// relative one below the cgroup of the calling process. `proc_cgroup` and
// `mountinfo` are the texts of /proc/self/cgroup and /proc/self/mountinfo.
// Empty when the controller is not mounted.
std::string CgroupDir(const std::string& cgroups_path, const std::string& controller, const std::string& proc_cgroup,
                      const std::string& mountinfo);

}  // namespace kiln::worker
