// Where a build's cgroup is: the directory the worker reads its limit
// counters from must be the one runc made (worker/sandbox.cc, CgroupDir).
// And whose fault a container runc could not start is, from runc's own log
// (RuncRunFailure, ClassifyRuncFailure; the words are runc 1.1's, as
// Debian 12's runc writes them).

#include <gtest/gtest.h>

#include <string>

#include "worker/exec.h"
#include "worker/sandbox.h"

namespace kiln::worker {
namespace {

// cgroup v1 as Debian mounts it (each controller its own hierarchy, cpu and
// cpuacct together), plus the unified hierarchy beside it.
const std::string kMounts =
    "25 24 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755\n"
    "26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:5 - cgroup2 cgroup2 rw\n"
    "27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:6 - cgroup cgroup rw,xattr,name=systemd\n"
    "30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
    "31 25 0:28 / /sys/fs/cgroup/memory rw,nosuid shared:10 - cgroup cgroup rw,memory\n"
    "32 25 0:29 / /sys/fs/cgroup/pids rw,nosuid shared:11 - cgroup cgroup rw,pids\n";

TEST(CgroupDir, UnderSystemdABuildsCgroupIsBelowTheService) {
  // kiln-worker.service with Delegate=yes: systemd puts it in every hierarchy.
  std::string self =
      "11:pids:/system.slice/kiln-worker.service\n"
      "8:memory:/system.slice/kiln-worker.service\n"
      "4:cpu,cpuacct:/system.slice/kiln-worker.service\n"
      "1:name=systemd:/system.slice/kiln-worker.service\n"
      "0::/system.slice/kiln-worker.service\n";
  EXPECT_EQ(CgroupDir("kiln-w1-7-1", "memory", self, kMounts),
            "/sys/fs/cgroup/memory/system.slice/kiln-worker.service/kiln-w1-7-1");
  EXPECT_EQ(CgroupDir("kiln-w1-7-1", "pids", self, kMounts),
            "/sys/fs/cgroup/pids/system.slice/kiln-worker.service/kiln-w1-7-1");
  EXPECT_EQ(CgroupDir("kiln-w1-7-1", "cpu", self, kMounts),
            "/sys/fs/cgroup/cpu,cpuacct/system.slice/kiln-worker.service/kiln-w1-7-1");
}

TEST(CgroupDir, WithoutSystemdEachHierarchyHasItsOwnParent) {
  // A process in the root cgroup of all but one hierarchy (as the tests run).
  std::string self = "8:memory:/session/42\n11:pids:/\n4:cpu,cpuacct:/\n0::/\n";
  EXPECT_EQ(CgroupDir("b", "memory", self, kMounts), "/sys/fs/cgroup/memory/session/42/b");
  EXPECT_EQ(CgroupDir("b", "pids", self, kMounts), "/sys/fs/cgroup/pids/b");
  // An absolute path is from the hierarchy's root, wherever the process is.
  EXPECT_EQ(CgroupDir("/kiln/b", "memory", self, kMounts), "/sys/fs/cgroup/memory/kiln/b");
}

TEST(CgroupDir, InAContainerThatSeesOnlyItsSubtreeThePathIsFromTheMountsRoot) {
  std::string mounts = "40 39 0:28 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n";
  EXPECT_EQ(CgroupDir("b", "memory", "8:memory:/docker/abc\n", mounts), "/sys/fs/cgroup/memory/b");
  EXPECT_EQ(CgroupDir("b", "memory", "8:memory:/docker/abc/inner\n", mounts), "/sys/fs/cgroup/memory/inner/b");
  // A controller that is not mounted has no directory.
  EXPECT_EQ(CgroupDir("b", "pids", "11:pids:/\n", mounts), "");
  // name=systemd and the unified hierarchy are not controllers.
  EXPECT_EQ(CgroupDir("b", "systemd", "1:name=systemd:/\n", kMounts), "");
}

TEST(RuncFailure, AContainerThatRanLeavesNoFailureWhateverItsExitStatus) {
  EXPECT_EQ(RuncRunFailure(""), "");
  // Warnings and errors of other commands are not run's failure.
  EXPECT_EQ(RuncRunFailure(R"({"level":"warning","msg":"signal: killed","time":"2026-12-07T07:57:30Z"})"
                           "\n"
                           R"({"level":"error","msg":"runc kill failed: container not running","time":"x"})"
                           "\n"),
            "");
}

TEST(RuncFailure, ACommandMissingFromTheImageIsTheJobs) {
  const std::string log =
      R"({"level":"error","msg":"runc run failed: unable to start container process: exec: \"/nonexistent\": )"
      R"(stat /nonexistent: no such file or directory","time":"2026-12-07T07:57:30Z"})"
      "\n";
  const std::string failure = RuncRunFailure(log);
  EXPECT_EQ(failure,
            "runc run failed: unable to start container process: exec: \"/nonexistent\": stat /nonexistent: no such "
            "file or directory");
  EXPECT_EQ(ClassifyRuncFailure(failure), StartError::kCommand);
  EXPECT_EQ(ClassifyRuncFailure("runc run failed: unable to start container process: exec: \"/bin/tool\": "
                                "permission denied"),
            StartError::kCommand);
}

TEST(RuncFailure, AMountCgroupOrRuntimeErrorIsTheWorkers) {
  const std::string failure = RuncRunFailure(
      "not json at all\n"
      R"({"level":"error","msg":"runc run failed: unable to start container process: error during container init: )"
      R"(error mounting \"/gone\" to rootfs at \"/src\": stat /gone: no such file or directory","time":"x"})"
      "\n");
  EXPECT_NE(failure.find("error mounting"), std::string::npos) << failure;
  EXPECT_EQ(ClassifyRuncFailure(failure), StartError::kRuntime);
  EXPECT_EQ(ClassifyRuncFailure("runc run failed: unable to apply cgroup configuration: mkdir /sys/fs/cgroup/pids/x: "
                                "no space left on device"),
            StartError::kRuntime);
  // A path that says "exec: " (a job's working directory may say
  // anything) is still not runc's exec failure.
  EXPECT_EQ(ClassifyRuncFailure("runc run failed: error mounting \"/tmp/exec: x\""), StartError::kRuntime);
  EXPECT_EQ(ClassifyRuncFailure("runc run failed: unable to start container process: error during container init: "
                                "error mounting \"/w/" + std::string(2000, 'd') +
                                "/unable to start container process: exec: \" to rootfs"),
            StartError::kRuntime);
}

TEST(RuncFailure, AnInitKilledByTheJobsLimitsOrItsWorkingDirectoryIsTheJobs) {
  std::string limit = "?";
  EXPECT_EQ(ClassifyRuncFailure("runc run failed: unable to start container process: container init was OOM-killed "
                                "(memory limit too low?)",
                                &limit),
            StartError::kJob);
  EXPECT_EQ(limit, "memory");
  EXPECT_EQ(ClassifyRuncFailure("runc run failed: unable to start container process: error during container init: "
                                "fork/exec /proc/self/exe: resource temporarily unavailable",
                                &limit),
            StartError::kJob);
  EXPECT_EQ(limit, "pids");
  limit = "?";
  EXPECT_EQ(ClassifyRuncFailure("runc run failed: unable to start container process: error during container init: "
                                "chdir to cwd (\"/src/a.txt/sub\") set in config.json failed: not a directory",
                                &limit),
            StartError::kJob);
  EXPECT_EQ(limit, "");
}

// A helper (runc kill, delete, --version) that hangs is killed at its
// timeout: a job's end or the worker's stop never waits for it for ever.
TEST(Exec, AHelperPastItsTimeoutIsKilledAndReaped) {
  std::string out;
  EXPECT_EQ(Exec({"sh", "-c", "echo before; exec sleep 60"}, &out, std::chrono::milliseconds(300)), 128 + 9);
  EXPECT_EQ(out, "before\n");
  EXPECT_EQ(Exec({"sh", "-c", "echo quick; exit 3"}, &out, std::chrono::milliseconds(30'000)), 3);
  EXPECT_EQ(out, "quick\n");
  EXPECT_EQ(Exec({"sh", "-c", "exit 4"}), 4) << "no timeout: waits";
}

}  // namespace
}  // namespace kiln::worker
