// Metrics as an operator sees them: a real Prometheus (Debian's) scrapes two
// controllers and two workers while the farm runs a known mix of jobs
// (succeeded, failed, one served from the action cache, a warm workspace,
// a C project compiled twice through the compile cache); its HTTP API must
// show every family, observations in every histogram, and counters equal
// to what the test did. promtool checks every scrape, and the alert rules
// and scrape config shipped in deploy/prometheus.

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>

#include "harness/c_project.h"
#include "harness/container_farm.h"
#include "harness/prometheus.h"

namespace kiln {
namespace {

class Metrics : public ContainerFarm {
 protected:
  // Metrics on a port the kernel picks, written to NAME.metrics.
  std::vector<std::string> MetricsArgs(const std::string& name) {
    return {"--set", "metrics_address=127.0.0.1:0", "--set",
            "metrics_address_file=" + dir_.path() + "/" + name + ".metrics"};
  }
  std::string MetricsAddress(const std::string& name) {
    std::string addr;
    EXPECT_TRUE(test::WaitFor(
        [&] {
          std::ifstream in(dir_.path() + "/" + name + ".metrics");
          return static_cast<bool>(std::getline(in, addr)) && !addr.empty();
        },
        20s))
        << name << " did not write its metrics address";
    return addr;
  }

  static constexpr double kPositive = -1;  // any value above zero
  // Polls each query until it yields its value (kPositive: above zero), up
  // to a deadline, and names those that never did.
  void ExpectValues(test::Prometheus& p, const std::vector<std::pair<std::string, double>>& want) {
    for (const auto& [promql, value] : want) {
      std::optional<double> last;
      bool ok = test::WaitFor(
          [&] {
            last = p.Value(promql);
            return last && (value == kPositive ? *last > 0 : *last == value);
          },
          60s);
      EXPECT_TRUE(ok) << promql << " = " << (last ? std::to_string(*last) : "(no sample)") << ", want "
                      << (value == kPositive ? "> 0" : std::to_string(value));
    }
  }
};

TEST_F(Metrics, PrometheusSeesEveryFamilyAndCountsWhatTheFarmDid) {
  KILN_NEED_PROMETHEUS();
  extra_conf_ = "cas_gc_interval = 300ms\n";  // the CAS gauges are set by each collection
  SetUp();
  StartController("127.0.0.1:0", MetricsArgs("controller0"));
  StartController("127.0.0.1:0", MetricsArgs("controller1"));
  auto pinned = MetricsArgs("worker0");
  pinned.insert(pinned.end(), {"--label", "pin=w0"});  // the C builds run here, both
  StartWorker(0, 2, pinned);
  StartWorker(0, 2, MetricsArgs("worker1"));
  const std::string c0 = MetricsAddress("controller0"), c1 = MetricsAddress("controller1");
  const std::string w0 = MetricsAddress("worker0"), w1 = MetricsAddress("worker1");
  test::Prometheus prom(dir_.path() + "/prometheus", {{"kiln-controller", {c0, c1}}, {"kiln-worker", {w0, w1}}});
  ASSERT_TRUE(prom.ok());

  // The mix: 4 jobs succeed on workers, 1 fails, 1 is served from the action cache.
  const std::string img = Busybox();
  const std::string src = dir_.path() + "/src";
  test::WriteFile(src + "/in.txt", "input\n");
  const std::vector<std::string> build{"submit", "--image", img, "--input", src, "--no-gitignore", "--output", "out.txt",
                                       "--outputs-dir", dir_.path() + "/out", "--", "sh", "-c",
                                       "cat /src/in.txt > /src/out.txt"};
  auto first = Kiln(build);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  auto cached = Kiln(build);
  ASSERT_EQ(cached.exit_code, 0) << cached.err;
  ASSERT_NE(cached.err.find("from the action cache"), std::string::npos) << cached.err;
  auto failed = Run(img, {}, "exit 3");
  ASSERT_NE(failed.exit_code, 0);
  auto warm = Kiln({"submit", "--workspace", "persistent", "--workspace-name", "main", "--input", src, "--no-gitignore",
                    "--image", img, "--", "sh", "-c", "ls /src"});
  ASSERT_EQ(warm.exit_code, 0) << warm.err;
  const std::string toolchain = Toolchain();
  const std::string csrc = dir_.path() + "/csrc";
  test::WriteCProject(csrc);
  // Cold (5 misses), then 5 hits; the link falls back both times. On one
  // worker, whose local CAS then has the second build's inputs.
  for (int i = 0; i < 2; ++i) {
    auto c = Kiln({"submit", "--image", toolchain, "--input", csrc, "--no-gitignore", "--no-cache", "--require", "pin=w0",
                   "--output", "app",
                   "--outputs-dir", dir_.path() + "/cout", "--", "sh", "-c", "make -j2 app"},
                  180s);
    ASSERT_EQ(c.exit_code, 0) << c.err << c.out;
  }
  ASSERT_EQ(Count("status = 'succeeded' AND attempt > 0"), 4);
  ASSERT_EQ(Count("status = 'failed'"), 1);

  // Every family, in Prometheus.
  const std::vector<std::string> families = {
      // controller
      "kiln_jobs_submitted_total", "kiln_jobs_finished_total", "kiln_job_queue_wait_seconds_count",
      "kiln_job_run_seconds_count", "kiln_job_dispatch_latency_seconds_count", "kiln_action_cache_lookups_total",
      "kiln_compile_cache_lookups_total", "kiln_compile_cache_served_bytes_total", "kiln_cas_uploads_total",
      "kiln_cas_upload_bytes_total", "kiln_cas_reads_total", "kiln_cas_read_bytes_total", "kiln_cas_blobs",
      "kiln_cas_stored_bytes", "kiln_queue_depth", "kiln_cluster_workers_connected", "kiln_cluster_slots",
      "kiln_cluster_slots_busy", "kiln_db_pool_connections", "kiln_db_pool_in_use", "kiln_db_pool_waiting",
      "kiln_db_errors_total", "kiln_grpc_calls_total", "kiln_controller_leader", "kiln_cluster_workers_unhealthy",
      // worker
      "kiln_worker_slots", "kiln_worker_slots_busy", "kiln_worker_jobs_total", "kiln_worker_phase_seconds_count",
      "kiln_worker_cas_cache_files_total", "kiln_worker_cas_cache_bytes", "kiln_worker_image_store_bytes",
      "kiln_worker_compile_units_total", "kiln_worker_sandbox_starts_total", "kiln_worker_sandbox_failures_total",
      // remote actions (the C project's misses compile on the farm)
      "kiln_actions_queued", "kiln_actions_dispatched_total", "kiln_actions_finished_total",
      "kiln_action_queue_wait_seconds_count", "kiln_action_overhead_seconds_count", "kiln_worker_actions_total",
      "kiln_worker_action_run_seconds_count", "kiln_worker_action_boxes", "kiln_worker_disk_free_bytes"};
  std::set<std::string> missing;
  test::WaitFor(
      [&] {
        missing.clear();
        auto names = prom.Query("count by (__name__) ({__name__=~\"kiln_.+\"})", "__name__");
        for (const auto& f : families)
          if (!names.count(f)) missing.insert(f);
        return missing.empty();
      },
      60s);
  for (const auto& f : missing) ADD_FAILURE() << f << " never appeared in Prometheus";

  ExpectValues(prom, {
      // Counters equal what the test did.
      {"sum(kiln_jobs_submitted_total)", 6},
      {"sum(kiln_jobs_finished_total{outcome=\"succeeded\"})", 4},
      {"sum(kiln_jobs_finished_total{outcome=\"failed\"})", 1},
      {"sum(kiln_jobs_finished_total{outcome=\"cached\"})", 1},
      {"sum(kiln_action_cache_lookups_total{outcome=\"hit\"})", 1},
      // The first build and the failing job; the workspace job and the
      // --no-cache builds look nothing up.
      {"sum(kiln_action_cache_lookups_total{outcome=\"miss\"})", 2},
      {"sum(kiln_grpc_calls_total{method=\"/kiln.v1.JobService/Submit\",code=\"OK\"})", 6},
      {"sum(kiln_compile_cache_lookups_total{outcome=\"hit\"})", 5},
      {"sum(kiln_compile_cache_lookups_total{outcome=\"miss\"})", 5},
      {"sum(kiln_compile_cache_lookups_total{outcome=\"fallback\"})", 2},
      {"sum(kiln_compile_cache_served_bytes_total)", kPositive},
      {"sum(kiln_worker_jobs_total{outcome=\"succeeded\"})", 4},
      {"sum(kiln_worker_jobs_total{outcome=\"failed\"})", 1},
      {"sum(kiln_worker_compile_units_total{outcome=\"hit\"})", 5},
      {"sum(kiln_worker_sandbox_starts_total)", 5},
      {"sum(kiln_worker_sandbox_failures_total)", 0},
      {"sum(kiln_worker_cas_cache_files_total{outcome=\"miss\"})", kPositive},
      {"sum(kiln_worker_cas_cache_files_total{outcome=\"hit\"})", kPositive},  // the second C build's inputs
      {"sum(kiln_cas_uploads_total)", kPositive},
      {"sum(kiln_cas_reads_total)", kPositive},
      {"sum(kiln_worker_image_store_bytes)", kPositive},
      {"sum(kiln_db_errors_total)", 0},
      // The cold build's 5 misses compiled as remote actions, each once.
      {"sum(kiln_actions_dispatched_total)", 5},
      {"sum(kiln_actions_finished_total{outcome=\"ran\"})", 5},
      {"sum(kiln_actions_finished_total)", 5},
      {"sum(kiln_worker_actions_total{outcome=\"succeeded\"})", 5},
      {"sum(kiln_actions_queued)", 0},
      {"sum(kiln_action_queue_wait_seconds_count)", 5},
      {"sum(kiln_action_overhead_seconds_count)", 5},
      {"sum(kiln_worker_action_run_seconds_count)", 5},
      {"sum(kiln_worker_action_boxes)", kPositive},
      // Every histogram has observations: one per job that ran on a worker.
      {"sum(kiln_job_queue_wait_seconds_count)", 5},
      {"sum(kiln_job_run_seconds_count)", 5},
      {"sum(kiln_job_dispatch_latency_seconds_count)", 5},
      {"sum(kiln_worker_phase_seconds_count{phase=\"run\"})", 5},
      {"sum(kiln_worker_phase_seconds_count{phase=\"fetch_inputs\"})", kPositive},
      {"sum(kiln_worker_phase_seconds_count{phase=\"image_unpack\"})", kPositive},
      {"sum(kiln_worker_phase_seconds_count{phase=\"workspace_sync\"})", 1},
      {"sum(kiln_worker_phase_seconds_count{phase=\"upload_outputs\"})", kPositive},
      // The farm's gauges: from the leader only, so sums count them once.
      {"sum(kiln_controller_leader)", 1},
      {"count(kiln_controller_leader)", 2},
      {"sum(kiln_cluster_slots{cluster=\"default\"})", 4},
      {"sum(kiln_cluster_workers_connected{cluster=\"default\"})", 2},
      {"sum(kiln_cluster_slots_busy)", 0},
      {"sum(kiln_queue_depth)", 0},
      {"count(count by (instance) (kiln_cluster_slots))", 1},
      {"count(kiln_cluster_slots and on (instance) (kiln_controller_leader == 1))", 1},
      {"sum(kiln_worker_slots)", 4},
  });

  // promtool accepts every daemon's scrape.
  for (const auto& addr : {c0, c1, w0, w1}) {
    auto check = test::CheckMetrics(dir_.path(), test::HttpGet(addr, "/metrics"));
    EXPECT_EQ(check.exit_code, 0) << addr << ": " << check.out << check.err;
  }
}

// kiln_jobs_finished_total counts every way a job ends, not only a worker's
// final report: cancelled before it ran, lost with its worker, completed by
// the identical job it waited for.
TEST_F(Metrics, JobsFinishedCountsEveryWayAJobEnds) {
  StartController("127.0.0.1:0", MetricsArgs("controller0"));
  const std::string c0 = MetricsAddress("controller0");
  StartWorker(0, 1);
  auto finished = [&](const std::string& outcome) {
    return test::SumSeries(test::ScrapeSeries(c0), "kiln_jobs_finished_total",
                           "outcome=\"" + outcome + "\",project=\"default\"");
  };
  auto id_of = [](const test::CommandResult& r) { return r.out.substr(0, r.out.find('\n')); };

  // Cancelled while queued: no worker has role=none.
  auto queued = Kiln({"submit", "--detach", "--no-input", "--require", "role=none", "--", "true"});
  ASSERT_EQ(queued.exit_code, 0) << queued.err;
  ASSERT_EQ(Kiln({"cancel", id_of(queued)}).exit_code, 0);
  EXPECT_EQ(finished("cancelled"), 1);

  // Two identical builds in flight: the second waits for the first and takes its result.
  const std::string img = Busybox();
  const std::string src = dir_.path() + "/src";
  test::WriteFile(src + "/in.txt", "input\n");
  const std::vector<std::string> build{"submit", "--detach", "--image", img, "--input", src, "--no-gitignore", "--",
                                       "sh", "-c", "sleep 1; cat /src/in.txt"};
  auto leader = Kiln(build);
  auto waiter = Kiln(build);
  ASSERT_EQ(leader.exit_code, 0) << leader.err;
  ASSERT_EQ(waiter.exit_code, 0) << waiter.err;
  ASSERT_EQ(Get(*Jobs(), std::stoll(id_of(waiter))).waits_for_job(), std::stoll(id_of(leader)));
  ASSERT_TRUE(AllEnded(60s));
  EXPECT_EQ(Get(*Jobs(), std::stoll(id_of(waiter))).status(), v1::SUCCEEDED);
  EXPECT_EQ(finished("succeeded"), 1);
  EXPECT_EQ(finished("cached"), 1) << "the waiter is counted";

  // Lost: its worker dies and it has no attempts left.
  auto lost = Kiln({"submit", "--detach", "--no-input", "--max-attempts", "1", "--", "sleep", "30"});
  ASSERT_EQ(lost.exit_code, 0) << lost.err;
  const int64_t lost_id = std::stoll(id_of(lost));
  ASSERT_TRUE(test::WaitFor([&] { return Get(*Jobs(), lost_id).status() == v1::RUNNING; }, 30s));
  workers_[0]->Signal(SIGKILL);
  ASSERT_TRUE(test::WaitFor([&] { return Get(*Jobs(), lost_id).status() == v1::LOST; }, 30s));
  EXPECT_TRUE(test::WaitFor([&] { return finished("lost") == 1; }, 10s)) << "lost: " << finished("lost");
  EXPECT_EQ(finished("cancelled") + finished("succeeded") + finished("cached") + finished("failed"), 3)
      << "nothing counted twice";
}

TEST(MetricsFiles, PromtoolAcceptsTheShippedAlertRulesAndScrapeConfig) {
  KILN_NEED_PROMETHEUS();
  const std::string dir = std::string(KILN_SOURCE_DIR) + "/deploy/prometheus";
  auto rules = test::RunCommand({test::kPromtool, "check", "rules", dir + "/kiln-alerts.yml"}, 30s);
  EXPECT_EQ(rules.exit_code, 0) << rules.out << rules.err;
  EXPECT_NE(rules.out.find("SUCCESS: 5 rules found"), std::string::npos) << rules.out;
  auto config = test::RunCommand({test::kPromtool, "check", "config", dir + "/prometheus.yml"}, 30s);
  EXPECT_EQ(config.exit_code, 0) << config.out << config.err;
}

// docs/operations.md gives the alert rules in full: the same as the file.
TEST(MetricsFiles, TheOperationsGuideGivesTheShippedAlertRules) {
  std::string rules = test::ReadFile(std::string(KILN_SOURCE_DIR) + "/deploy/prometheus/kiln-alerts.yml");
  const std::string docs = test::ReadFile(std::string(KILN_SOURCE_DIR) + "/docs/operations.md");
  auto at = rules.find("groups:");
  ASSERT_NE(at, std::string::npos) << rules;
  std::string block;  // the rules as an indented Markdown code block
  std::istringstream in(rules.substr(at));
  for (std::string line; std::getline(in, line);) block += (line.empty() ? "" : "    " + line) + "\n";
  EXPECT_NE(docs.find(block), std::string::npos)
      << "docs/operations.md (Metrics) must carry deploy/prometheus/kiln-alerts.yml from `groups:` on, indented "
         "by four spaces";
}

}  // namespace
}  // namespace kiln
