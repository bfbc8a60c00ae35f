// The health checker (docs/operations.md, "Health") with real workers: a
// worker whose work_dir fills, or whose runc cannot start a container,
// turns unhealthy, takes no jobs while a healthy one runs them, and returns
// to service once fixed.

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "harness/container_farm.h"
#include "harness/prometheus.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;

// A tmpfs of `mb` MiB mounted at `dir` for the test's life (detached, not
// merely unmounted, at the end: a worker's leftovers cannot keep it busy).
class Tmpfs {
 public:
  Tmpfs(const std::string& dir, int mb) : dir_(dir) {
    std::filesystem::create_directories(dir);
    const std::string opts = "size=" + std::to_string(mb) + "m";
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) == 0;
  }
  ~Tmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

class Health : public ContainerFarm {
 protected:
  // The HEALTH column of `worker`'s row in kiln workers ("" if it is not listed).
  std::string HealthOf(const std::string& worker) {
    auto r = Kiln({"--timeout", "60s", "workers"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::istringstream in(r.out);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string id, host, cluster, state, health;
      f >> id >> host >> cluster >> state >> health;
      if (id == worker) return health;
    }
    return "";
  }
  // The value of the series `series` (name{labels}) on the /metrics page at
  // the address in `addr_file`; -1 if absent.
  double Metric(const std::string& addr_file, const std::string& series) {
    std::string page = test::HttpGet(test::ReadFile(addr_file).substr(0, test::ReadFile(addr_file).find('\n')), "/metrics");
    auto at = page.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stod(page.substr(at + series.size() + 2));
  }
  // The real runc's path ("" if none).
  static std::string RealRunc() {
    auto real = test::RunCommand({"/bin/sh", "-c", "command -v runc"}, 10s);
    return real.exit_code == 0 ? real.out.substr(0, real.out.find('\n')) : "";
  }
  // Starts a worker with `script` (a stand-in runc: its body, after
  // "#!/bin/sh\n") first on its PATH.
  test::Process& StartWorkerWithRunc(const std::string& script, std::vector<std::string> extra) {
    const std::string bin = dir_.path() + "/fakebin";
    std::filesystem::create_directories(bin);
    test::WriteFile(bin + "/runc", "#!/bin/sh\n" + script);
    EXPECT_EQ(::chmod((bin + "/runc").c_str(), 0755), 0);
    const std::string path = ::getenv("PATH") ? ::getenv("PATH") : "/usr/sbin:/usr/bin:/sbin:/bin";
    ::setenv("PATH", (bin + ":" + path).c_str(), 1);
    auto& w = StartWorker(0, 1, std::move(extra));
    ::setenv("PATH", path.c_str(), 1);
    return w;
  }
  std::string NewWorkerId(const std::set<std::string>& known) {
    for (const auto& id : SplitList(test::Sql(url_, "SELECT string_agg(id, ',') FROM workers"), ','))
      if (!known.count(id)) return id;
    return "";
  }
  void LoseTwoJobsAndComeBack(bool quick);
};

TEST_F(Health, AWorkerWhoseWorkDirFillsGetsNoJobsAndRecoversWhenSpaceIsFreed) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  extra_conf_ = "health_min_free_disk = 16MiB\nhealth_min_free_percent = 0\nhealth_recover_after = 1s\n";
  SetUp();
  const std::string mnt = dir_.path() + "/small";
  Tmpfs fs(mnt, 64);
  ASSERT_TRUE(fs.mounted()) << "cannot mount a tmpfs at " << mnt;
  const std::string cm = dir_.path() + "/controller.metrics", wm = dir_.path() + "/small.metrics";
  StartController("127.0.0.1:0", {"--set", "metrics_address=127.0.0.1:0", "--set", "metrics_address_file=" + cm});
  auto& small = StartWorker(0, 2,
                            // Job disks (sparse) small enough for the tmpfs.
                            {"--set", "health_check_interval=1s", "--set", "disk_max=32MiB", "--set",
                             "metrics_address=127.0.0.1:0", "--set", "metrics_address_file=" + wm},
                            mnt);
  const std::string small_id = NewWorkerId({});
  StartWorker(0, 2);
  const std::string big_id = NewWorkerId({small_id});
  ASSERT_FALSE(small_id.empty());
  ASSERT_FALSE(big_id.empty());
  EXPECT_EQ(HealthOf(small_id), "healthy");

  // Fill it to under 16 MB free.
  const std::string filler = mnt + "/filler";
  {
    std::ofstream out(filler, std::ios::binary);
    std::string mb(1 << 20, 'x');
    for (int i = 0; i < 56 && out; ++i) out << mb;
  }
  ASSERT_TRUE(test::WaitFor([&] { return HealthOf(small_id) == "unhealthy"; }, 20s))
      << Kiln({"--timeout", "60s", "workers"}).out;
  auto listed = Kiln({"--timeout", "60s", "workers"});
  EXPECT_NE(listed.out.find(small_id + ": free disk in work_dir"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("below 16 MiB (health_min_free_disk)"), std::string::npos) << listed.out;
  EXPECT_EQ(HealthOf(big_id), "healthy");
  // In metrics: the worker's free disk, the farm's count of unhealthy workers.
  const double free = Metric(wm, "kiln_worker_disk_free_bytes{store=\"work_dir\"}");
  EXPECT_GE(free, 0);
  EXPECT_LT(free, 16 << 20);
  EXPECT_TRUE(test::WaitFor([&] { return Metric(cm, "kiln_cluster_workers_unhealthy{cluster=\"default\"}") == 1; }, 10s));
  auto json = Kiln({"--timeout", "60s", "workers", "--json"});
  EXPECT_NE(json.out.find("\"health\": \"unhealthy\""), std::string::npos) << json.out;

  // While unhealthy it takes no jobs: the healthy worker runs them all.
  auto jobs = Jobs();
  std::vector<int64_t> ids;
  for (int i = 0; i < 6; ++i) ids.push_back(Submit(*jobs, {"sh", "-c", "echo job $KILN_JOB_ID"}));
  ASSERT_TRUE(AllEnded(60s));
  EXPECT_EQ(Count("status = 'succeeded'"), 6);
  EXPECT_EQ(Count("worker_id = '" + small_id + "'"), 0);

  // Space freed: healthy again after health_recover_after, and it runs jobs.
  std::filesystem::remove(filler);
  ASSERT_TRUE(test::WaitFor([&] { return HealthOf(small_id) == "healthy"; }, 20s)) << Kiln({"--timeout", "60s", "workers"}).out;
  EXPECT_EQ(Kiln({"--timeout", "60s", "workers"}).out.find("unhealthy"), std::string::npos);
  EXPECT_TRUE(test::WaitFor([&] { return Metric(cm, "kiln_cluster_workers_unhealthy{cluster=\"default\"}") == 0; }, 10s));
  workers_[1]->Signal(SIGTERM);
  ASSERT_EQ(workers_[1]->Wait(20s), 0);
  int64_t after = Submit(*jobs, {"sh", "-c", "echo back"});
  ASSERT_TRUE(AllEnded(30s));
  EXPECT_EQ(Get(*jobs, after).status(), v1::SUCCEEDED);
  EXPECT_EQ(test::Sql(url_, "SELECT worker_id FROM build_jobs WHERE id = " + std::to_string(after)), small_id);

  // The controller logged both changes, with the reason.
  auto log = test::ReadFile(logs_[0]);
  EXPECT_NE(log.find("worker unhealthy worker_id=" + small_id), std::string::npos);
  EXPECT_NE(log.find("worker healthy again worker_id=" + small_id), std::string::npos);
  small.Signal(SIGTERM);
  EXPECT_EQ(small.Wait(20s), 0);
}

// A worker whose runc answers but cannot start a container (a stand-in
// first on its PATH refuses `runc run`; every other command goes to the
// real runc) is unhealthy with runc's own words, and returns to service
// once containers start again.
TEST_F(Health, AWorkerWhoseRuncCannotStartAContainerIsUnhealthyUntilItCan) {
  if (::geteuid() != 0) GTEST_SKIP() << "containers need root";
  extra_conf_ = "health_recover_after = 1s\n";
  SetUp();
  StartController();
  const std::string real = RealRunc(), broken = dir_.path() + "/runc-broken";
  ASSERT_FALSE(real.empty()) << "runc not found: run deploy/install-deps.sh";
  test::WriteFile(broken, "");
  auto& w = StartWorkerWithRunc("if [ -e " + broken + " ]; then for a in \"$@\"; do\n"
                                "  if [ \"$a\" = run ]; then echo 'fake runc: no containers today' >&2; exit 1; fi\n"
                                "done; fi\n"
                                "exec " + real + " \"$@\"\n",
                                {"--set", "health_check_interval=1s"});
  const std::string id = NewWorkerId({});
  ASSERT_FALSE(id.empty());
  ASSERT_TRUE(test::WaitFor([&] { return HealthOf(id) == "unhealthy"; }, 30s)) << Kiln({"--timeout", "60s", "workers"}).out;
  auto listed = Kiln({"--timeout", "60s", "workers"});
  EXPECT_NE(listed.out.find("runc could not start a container"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("fake runc: no containers today"), std::string::npos) << listed.out;
  // Fixed: the next check starts a container, and after health_recover_after it serves again.
  std::filesystem::remove(broken);
  ASSERT_TRUE(test::WaitFor([&] { return HealthOf(id) == "healthy"; }, 30s)) << Kiln({"--timeout", "60s", "workers"}).out;
  auto jobs = Jobs();
  int64_t job = Submit(*jobs, {"sh", "-c", "echo served"});
  ASSERT_TRUE(AllEnded(30s));
  EXPECT_EQ(Get(*jobs, job).status(), v1::SUCCEEDED);
  w.Signal(SIGTERM);
  EXPECT_EQ(w.Wait(20s), 0);
}

// A worker whose setup fails for its own reasons (its full disk, with the
// disk checks off) fails no build: the job runs on another worker; with
// no attempt left it ends "failed on infrastructure", not as a build failure.
TEST_F(Health, AJobWhoseWorkerCannotSetItUpRunsOnAnotherWorker) {
  if (::geteuid() != 0) GTEST_SKIP() << "mounting a tmpfs needs root";
  extra_conf_ = "health_min_free_disk = 0\nhealth_min_free_percent = 0\nhealth_max_infra_failures = 2\n"
                "health_recover_after = 1s\n";
  SetUp();
  const std::string mnt = dir_.path() + "/small";
  Tmpfs fs(mnt, 16);
  ASSERT_TRUE(fs.mounted()) << "cannot mount a tmpfs at " << mnt;
  StartController();
  StartWorker(0, 1, {"--set", "disk_max=32MiB"}, mnt);
  const std::string small_id = NewWorkerId({});
  // Its first runc check (a container started) done before the disk fills:
  // on a full disk runc cannot store a container's state, and says so.
  ASSERT_TRUE(test::WaitFor(
      [&] {
        return !test::Sql(url_, "SELECT coalesce(health_report->'runc'->>'checked_ms', '') FROM workers WHERE id = '" +
                                    small_id + "'")
                    .empty();
      },
      30s));
  {
    std::ofstream out(mnt + "/filler", std::ios::binary);
    std::string mb(1 << 20, 'x');
    for (int i = 0; i < 32 && out; ++i) out << mb;
  }
  // Inputs the full worker cannot fetch.
  const std::string src = dir_.path() + "/src";
  std::string data(2 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 7919) % 251);
  test::WriteFile(src + "/big.bin", data);
  auto submit = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"submit", "--detach", "--input", src};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--", "wc", "-c", "big.bin"});
    auto r = Kiln(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out.substr(0, r.out.find('\n'));
  };

  // Its only attempt: failed, and kiln status says it was the infrastructure.
  const std::string once = submit({"--max-attempts", "1"});
  ASSERT_TRUE(test::WaitFor([&] { return Count("id = " + once + " AND status = 'failed'") == 1; }, 30s));
  auto st = Kiln({"status", once});
  EXPECT_NE(st.out.find("failed on infrastructure, not the build, after 1 attempt(s): infrastructure: cannot "
                        "prepare the input tree on worker " + small_id),
            std::string::npos)
      << st.out;
  EXPECT_EQ(HealthOf(small_id), "healthy") << "one failure is under health_max_infra_failures";

  // With attempts left: back in line, the worker unhealthy at its second.
  const std::string retried = submit({});
  ASSERT_TRUE(test::WaitFor(
      [&] { return test::Sql(url_, "SELECT result->>'infra_worker' FROM build_jobs WHERE id = " + retried) == small_id; },
      30s));
  EXPECT_EQ(test::Sql(url_, "SELECT status FROM build_jobs WHERE id = " + retried), "queued");
  ASSERT_TRUE(test::WaitFor([&] { return HealthOf(small_id) == "unhealthy"; }, 20s)) << Kiln({"--timeout", "60s", "workers"}).out;
  EXPECT_NE(Kiln({"--timeout", "60s", "workers"}).out.find(small_id + ": 2 infrastructure failures of jobs in the last 600 s"),
            std::string::npos)
      << Kiln({"--timeout", "60s", "workers"}).out;

  // Another worker runs it: succeeded on attempt 2.
  StartWorker(0, 1);
  const std::string other = NewWorkerId({small_id});
  ASSERT_TRUE(AllEnded(60s));
  st = Kiln({"status", retried});
  EXPECT_EQ(Get(*Jobs(), std::stoll(retried)).status(), v1::SUCCEEDED);
  EXPECT_NE(st.out.find("succeeded in"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find(" 2/3\n"), std::string::npos) << st.out;
  EXPECT_EQ(test::Sql(url_, "SELECT worker_id FROM build_jobs WHERE id = " + retried), other);
  EXPECT_EQ(Log(*Jobs(), std::stoll(retried)), "2097152 big.bin\n");
}

// A job whose container runc cannot start (here a bind mount whose source
// the host lost: a stand-in runc first on the worker's PATH adds one to the
// bundle, then hands over to the real runc, which fails with its own words)
// is the worker's failure when the worker's own containers fail to start
// too: retried on another worker, counted against the first. When they
// start, the cause is the job's (its image, its settings): it fails as the
// build, once. A command missing from the image is the build's too: exit
// status 127, no retry, no count.
TEST_F(Health, AJobWhoseContainerRuncCannotStartRunsOnAnotherWorker) {
  if (::geteuid() != 0) GTEST_SKIP() << "containers need root";
  extra_conf_ = "health_max_infra_failures = 1\n";
  SetUp();
  StartController();
  const std::string real = RealRunc(), jobs_broken = dir_.path() + "/jobs-broken",
                    all_broken = dir_.path() + "/all-broken";
  ASSERT_FALSE(real.empty()) << "runc not found: run deploy/install-deps.sh";
  // Job 0's containers are the worker's own checks; the others are jobs'.
  // Its periodic runc check once at start only (it passes), then not again.
  StartWorkerWithRunc(
      "prev=; bundle=; run=; for a in \"$@\"; do\n"
      "  [ \"$prev\" = --bundle ] && bundle=$a; [ \"$a\" = run ] && run=1; prev=$a; id=$a\n"
      "done\n"
      "broken=; case $id in *-0-*) [ -e " + all_broken + " ] && broken=1 ;; *) [ -e " + jobs_broken +
          " ] && broken=1 ;; esac\n"
      "if [ -n \"$run\" ] && [ -n \"$bundle\" ] && [ -n \"$broken\" ]; then\n"
      "  jq '.mounts += [{\"destination\": \"/data\", \"type\": \"bind\", "
      "\"source\": \"/nonexistent/kiln-lost-mount\", \"options\": [\"rbind\"]}]' "
      "\"$bundle/config.json\" > \"$bundle/config.new\" && mv \"$bundle/config.new\" \"$bundle/config.json\"\n"
      "fi\n"
      "exec " + real + " \"$@\"\n",
      {"--set", "health_check_interval=1h"});
  const std::string broken = NewWorkerId({});
  ASSERT_FALSE(broken.empty());
  ASSERT_TRUE(test::WaitFor(
      [&] {
        return !test::Sql(url_, "SELECT coalesce(health_report->'runc'->>'checked_ms', '') FROM workers WHERE id = '" +
                                    broken + "'")
                    .empty();
      },
      30s));
  const std::string img = Busybox();

  // Only jobs' containers fail: the job's, once, and the worker stays in service.
  test::WriteFile(jobs_broken, "");
  auto own = Kiln({"submit", "--no-input", "--image", img, "--", "sh", "-c", "echo own"});
  EXPECT_NE(own.exit_code, 0) << own.out;
  EXPECT_NE(own.err.find("runc could not start the job's container"), std::string::npos) << own.err;
  EXPECT_NE(own.err.find("this worker's own containers start"), std::string::npos) << own.err;
  EXPECT_EQ(own.err.find("infrastructure"), std::string::npos) << own.err;
  EXPECT_EQ(Count("attempt > 1"), 0) << "not retried";
  EXPECT_EQ(HealthOf(broken), "healthy");

  // Every container fails: the worker's. The job goes back in line.
  test::WriteFile(all_broken, "");
  auto sub = Kiln({"submit", "--detach", "--no-input", "--image", img, "--", "sh", "-c", "echo ran"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  const std::string job = sub.out.substr(0, sub.out.find('\n'));
  ASSERT_TRUE(test::WaitFor(
      [&] { return test::Sql(url_, "SELECT result->>'infra_worker' FROM build_jobs WHERE id = " + job) == broken; },
      60s))
      << Kiln({"status", job}).out;
  EXPECT_EQ(test::Sql(url_, "SELECT status FROM build_jobs WHERE id = " + job), "queued");
  ASSERT_TRUE(test::WaitFor([&] { return HealthOf(broken) == "unhealthy"; }, 20s)) << Kiln({"--timeout", "60s", "workers"}).out;
  auto listed = Kiln({"--timeout", "60s", "workers"});
  EXPECT_NE(listed.out.find("runc could not start the job's container"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("kiln-lost-mount"), std::string::npos) << listed.out;
  EXPECT_NE(listed.out.find("own container check fails too"), std::string::npos) << listed.out;

  // Another worker runs it: succeeded on attempt 2, with its own log.
  StartWorker(0, 1);
  const std::string good = NewWorkerId({broken});
  ASSERT_TRUE(AllEnded(60s));
  auto st = Kiln({"status", job});
  EXPECT_NE(st.out.find("succeeded in"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find(" 2/3\n"), std::string::npos) << st.out;
  EXPECT_EQ(test::Sql(url_, "SELECT worker_id FROM build_jobs WHERE id = " + job), good);
  EXPECT_EQ(Log(*Jobs(), std::stoll(job)), "ran\n");

  // A command the image lacks is the build's: 127 at once, on its first attempt.
  auto missing = Kiln({"submit", "--no-input", "--image", img, "--", "/no/such/tool", "--version"});
  EXPECT_EQ(missing.exit_code, 127) << missing.err;
  EXPECT_NE(missing.err.find("cannot run the job's command in its image"), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("exec: \"/no/such/tool\""), std::string::npos) << missing.err;
  EXPECT_EQ(missing.err.find("infrastructure"), std::string::npos) << missing.err;
  EXPECT_EQ(Count("attempt > 1 AND spec->'argv'->>0 = '/no/such/tool'"), 0);
  EXPECT_EQ(HealthOf(good), "healthy");
}

// Jobs lost with a worker (killed while they ran) count against it as an
// infrastructure failure (one per loss, not per job), kept with the worker:
// back with a new session, it is unhealthy at once, and the jobs wait for
// another worker. `quick`: it comes back within the reconnect grace (a
// restart faster than the grace, as systemd's Restart= gives), registering
// without the jobs it held; else after the grace requeued them.
void Health::LoseTwoJobsAndComeBack(bool quick) {
  extra_conf_ = "health_max_infra_failures = 1\nhealth_recover_after = 1h\n";
  if (quick) extra_conf_ += "lease = 60s\nreconnect_grace = 60s\n";
  SetUp();
  StartController();
  const std::string wd = dir_.path() + "/lossy";
  auto& w = StartWorker(0, 2, {}, wd);
  const std::string id = NewWorkerId({});
  ASSERT_FALSE(id.empty());
  auto jobs = Jobs();
  std::vector<int64_t> ids;
  for (int i = 0; i < 2; ++i) ids.push_back(Submit(*jobs, {"sh", "-c", "sleep 8; echo " + std::to_string(i)}));
  ASSERT_TRUE(test::WaitFor([&] { return Count("status = 'running'") == 2; }, 30s));
  w.Signal(SIGKILL);
  w.Wait(20s);
  if (quick) {
    EXPECT_EQ(Count("status = 'running'"), 2) << "within the grace (60 s) the jobs wait for their worker";
    StartWorker(0, 2, {}, wd);
    ASSERT_TRUE(test::WaitFor([&] { return Count("status = 'queued'") == 2; }, 20s)) << "the jobs were not requeued";
  } else {
    ASSERT_TRUE(test::WaitFor([&] { return Count("status = 'queued'") == 2; }, 30s)) << "the lost jobs are not back in line";
    // The same worker again (its work_dir): unhealthy from its first report.
    StartWorker(0, 2, {}, wd);
  }
  ASSERT_TRUE(test::WaitFor([&] { return HealthOf(id) == "unhealthy"; }, 20s)) << Kiln({"--timeout", "60s", "workers"}).out;
  auto listed = Kiln({"--timeout", "60s", "workers"});
  EXPECT_NE(listed.out.find(id + ": 1 infrastructure failures of jobs"), std::string::npos)
      << "one loss of two jobs counts once: " << listed.out;
  EXPECT_NE(listed.out.find(quick ? "jobs lost: the worker registered again without them" : "jobs lost: its stream to controller"),
            std::string::npos)
      << listed.out;
  EXPECT_EQ(Count("status = 'queued'"), 2) << "an unhealthy worker took them";
  // Another worker runs them: nothing lost.
  StartWorker(0, 2);
  ASSERT_TRUE(AllEnded(60s));
  for (auto j : ids) EXPECT_EQ(Get(*jobs, j).status(), v1::SUCCEEDED) << "job " << j;
}

TEST_F(Health, JobsLostWithAWorkerCountAgainstItWhenItComesBack) { LoseTwoJobsAndComeBack(false); }
TEST_F(Health, JobsLostInAQuickRestartCountAgainstTheWorkerToo) { LoseTwoJobsAndComeBack(true); }

// SIGHUP: each daemon reads its config file again. Reloadable settings take
// effect (seen in what the farm does and logs); a bad file keeps the running
// settings; a changed setting that needs a restart is named.
TEST_F(Health, SighupReloadsTheReloadableSettingsAndABadFileKeepsTheRunningOnes) {
  extra_conf_ = "health_min_free_disk = 1MiB\nhealth_min_free_percent = 0\n";
  SetUp();
  const std::string base = test::ReadFile(conf_);
  const std::string wconf = dir_.path() + "/worker.conf";
  test::WriteFile(wconf, "log_level = info\nhealth_check_interval = 60s\n");
  StartController();
  auto& worker = StartWorker(0, 1, {"--config", wconf});
  const std::string id = NewWorkerId({});
  auto hup = [&](test::Process& p) { p.Signal(SIGHUP); };

  // A threshold no disk meets: the worker turns unhealthy.
  test::WriteFile(conf_, base + "health_min_free_disk = 1000TiB\nhealth_recover_after = 1s\n");
  hup(*controllers_[0]);
  ASSERT_TRUE(Logged(0, "configuration reloaded file=" + conf_ + " changed=health_min_free_disk,health_recover_after"));
  ASSERT_TRUE(test::WaitFor([&] { return HealthOf(id) == "unhealthy"; }, 20s)) << Kiln({"--timeout", "60s", "workers"}).out;
  EXPECT_NE(Kiln({"--timeout", "60s", "workers"}).out.find("below 1048576000 MiB (health_min_free_disk)"), std::string::npos);

  // A bad file: said so, and the running settings stay (still unhealthy).
  test::WriteFile(conf_, base + "health_min_free_disk = 1MiB\nhealth_recover_after = soon\n");
  hup(*controllers_[0]);
  ASSERT_TRUE(Logged(0, "configuration not reloaded file=" + conf_ + " error=\""));
  EXPECT_NE(test::ReadFile(logs_[0]).find("health_recover_after"), std::string::npos);
  EXPECT_EQ(HealthOf(id), "unhealthy");

  // A good one again: every other reloadable setting (each one's effect on
  // a report is unit-tested in health_test.cc), the log level, and a
  // setting that needs a restart.
  test::WriteFile(conf_, base + "health_min_free_disk = 1MiB\nhealth_recover_after = 1s\nlog_level = debug\n"
                                "health_min_free_percent = 1\nhealth_max_clock_skew = 1h\n"
                                "health_max_load_per_cpu = 1000\nhealth_max_infra_failures = 5\n"
                                "health_infra_window = 1m\nlease = 5s\n");
  hup(*controllers_[0]);
  ASSERT_TRUE(Logged(0, "changed=health_infra_window,health_max_clock_skew,health_max_infra_failures,"
                        "health_max_load_per_cpu,health_min_free_disk,health_min_free_percent,log_level"));
  ASSERT_TRUE(Logged(0, "changed settings that need a restart: lease"));
  ASSERT_TRUE(test::WaitFor([&] { return HealthOf(id) == "healthy"; }, 20s)) << Kiln({"--timeout", "60s", "workers"}).out;

  // The worker's: its log level and the interval of its runc check; a bad
  // file (an interval under 1 s) keeps them.
  test::WriteFile(wconf, "log_level = debug\nhealth_check_interval = 1s\n");
  hup(worker);
  ASSERT_TRUE(Logged(1, "configuration reloaded file=" + wconf + " changed=health_check_interval,log_level"));
  test::WriteFile(wconf, "log_level = debug\nhealth_check_interval = 10ms\n");
  hup(worker);
  ASSERT_TRUE(Logged(1, "configuration not reloaded file=" + wconf + " error=\"health_check_interval must be at least 1s\""));

  // Debug lines now, in both logs.
  auto jobs = Jobs();
  int64_t job = Submit(*jobs, {"true"});
  ASSERT_TRUE(AllEnded(30s));
  EXPECT_TRUE(Logged(0, "submitted job_id=" + std::to_string(job)));
  EXPECT_TRUE(Logged(1, "running job_id=" + std::to_string(job)));
  // With containers, the runc check now runs every second.
  const std::string checked = "SELECT coalesce(health_report->'runc'->>'checked_ms', '') FROM workers WHERE id = '" + id + "'";
  const std::string first = test::Sql(url_, checked);
  if (!first.empty()) {
    EXPECT_TRUE(test::WaitFor([&] { return test::Sql(url_, checked) != first; }, 10s));
  }
}

}  // namespace
}  // namespace kiln
