// The farm's history as a user and an operator see it: kiln stats on a farm
// that ran a known mix of jobs (its figures exact, against the rows they come
// from), and the samples' day partitions made ahead and dropped by
// sample_retention (sql/016, sql/017).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/util.h"
#include "harness/c_project.h"
#include "harness/container_farm.h"

namespace kiln {
namespace {

using nlohmann::json;

std::vector<int64_t> Column(const std::string& url, const std::string& sql) {
  std::vector<int64_t> out;
  for (const auto& v : SplitList(test::Sql(url, "SELECT coalesce(string_agg(x::text, ',' ORDER BY x), '') FROM (" +
                                                    sql + ") s(x)"),
                                 ','))
    out.push_back(std::stoll(v));
  return out;
}

// percentile_disc: the first value whose position reaches the fraction.
int64_t PercentileDisc(const std::vector<int64_t>& sorted, double p) {
  size_t k = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::max<size_t>(k, 1) - 1];
}

class Stats : public ContainerFarm {
 protected:
  // Samples every 200 ms while the jobs run.
  Stats() { extra_conf_ = "sample_interval = 200ms\n"; }

  std::string src() const { return dir_.path() + "/proj"; }
  std::string Q(const std::string& sql) { return test::Sql(url_, sql); }

  // kiln on the newest controller, with `token_file` (default: the admin's).
  test::CommandResult KilnAt(std::vector<std::string> args, const std::string& token_file = "") {
    std::vector<std::string> argv{test::BinPath("kiln"), "--controller", addresses_.back()};
    argv.insert(argv.end(), args.begin(), args.end());
    std::map<std::string, std::string> env{{"XDG_CACHE_HOME", dir_.path() + "/xdg"}};
    if (!token_file.empty()) env["KILN_TOKEN_FILE"] = token_file;
    return test::RunCommand(argv, 60s, env, dir_.path());
  }

  // make -j2 app on the C project in the toolchain image; returns the job id.
  int64_t Build(const std::string& image, int expect_exit = 0) {
    auto r = Kiln({"submit", "--image", image, "--input", src(), "--no-gitignore", "--output", "app", "--output",
                   "out", "--outputs-dir", dir_.path() + "/built", "--", "sh", "-c", "make -j2 app"},
                  120s);
    EXPECT_EQ(r.exit_code, expect_exit) << r.err << r.out;
    return std::stoll(Q("SELECT max(id) FROM build_jobs"));
  }
};

TEST_F(Stats, FiguresOfAKnownMixOfJobsAreExact) {
  Up();
  const std::string img = Toolchain();
  test::WriteCProject(src());

  // The mix: a cold build (5 units compiled), the same build again (served
  // from the action cache), a build with c.c changed (4 units from the
  // compile cache, c.c compiled), and a job that fails.
  const int64_t cold = Build(img);
  const int64_t cached = Build(img);
  ASSERT_EQ(Q("SELECT result->>'cached_from' FROM build_jobs WHERE id = " + std::to_string(cached)),
            std::to_string(cold));
  test::WriteFile(src() + "/c.c", "#include \"common.h\"\nint unit_c(void) { return 30; }\n");
  const int64_t changed = Build(img);
  auto failed = Run(img, {}, "exit 3");
  ASSERT_EQ(failed.exit_code, 3) << failed.err;
  const int64_t fail = std::stoll(Q("SELECT max(id) FROM build_jobs"));
  ASSERT_TRUE(AllEnded(10s));
  // Each job that ran recorded its phases with its final report.
  EXPECT_EQ(Q("SELECT string_agg(job_id::text, ',' ORDER BY job_id) FROM job_timings"),
            std::to_string(cold) + "," + std::to_string(changed) + "," + std::to_string(fail));
  EXPECT_EQ(Q("SELECT count(*) FROM job_timings WHERE (queued_at <= assigned_at AND assigned_at <= received_at"
              " + interval '1 second' AND received_at <= inputs_at AND inputs_at <= image_at AND image_at <= running_at"
              " AND running_at <= ended_at AND ended_at <= finished_at) IS NOT TRUE"),
            "0")
      << "every phase happened, in order (the worker's clock against the database's within a second)";
  EXPECT_EQ(Q("SELECT output_bytes > 0 FROM job_timings WHERE job_id = " + std::to_string(cold)), "t");

  // Enough samples with the worker connected, then no more: the figures
  // below are computed from the same rows kiln stats reads.
  ASSERT_TRUE(test::WaitFor(
      [&] { return std::stoi(Q("SELECT count(*) FROM kiln_samples WHERE metric = 'slots_total' AND value = 2")) >= 3; },
      20s));
  controllers_[0]->Signal(SIGTERM);
  ASSERT_GE(controllers_[0]->Wait(20s), 0);
  std::ofstream(conf_, std::ios::app) << "sample_interval = 0\n";
  StartController();

  auto r = KilnAt({"--json", "stats", "--since", "1h"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json s = json::parse(r.out);
  EXPECT_EQ(s["jobs"], "4");  // int64 fields are JSON strings
  EXPECT_EQ(s["succeeded"], "2");
  EXPECT_EQ(s["failed"], "1");
  EXPECT_EQ(s["cached"], "1");
  EXPECT_EQ(s["cancelled"], "0");
  EXPECT_EQ(s["lost"], "0");
  EXPECT_DOUBLE_EQ(s["success_rate"].get<double>(), 0.75) << "3 of 4 jobs gave a success";
  EXPECT_EQ(s["action_cache_lookups"], "4");
  EXPECT_DOUBLE_EQ(s["action_cache_hit_rate"].get<double>(), 0.25);
  EXPECT_EQ(s["compile_units"], "10") << "5 cold misses, then 4 hits and 1 miss";
  EXPECT_EQ(s["compile_hits"], "4");
  EXPECT_DOUBLE_EQ(s["compile_cache_hit_rate"].get<double>(), 0.4);

  // Queue wait and run time: percentile_disc of the jobs that ran.
  auto waits = Column(url_, "SELECT round(1000 * extract(epoch FROM assigned_at - queue_start_time)::float8)::bigint"
                            " FROM build_jobs WHERE id IN (" + std::to_string(cold) + "," + std::to_string(changed) +
                            "," + std::to_string(fail) + ")");
  auto runs = Column(url_, "SELECT round(1000 * extract(epoch FROM ended_at - running_at)::float8)::bigint"
                           " FROM job_timings");
  ASSERT_EQ(waits.size(), 3u);
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(s["queue_waits"], "3");
  EXPECT_EQ(s["runs"], "3");
  EXPECT_EQ(s["queue_wait_p50"]["ms"], std::to_string(PercentileDisc(waits, 0.5)));
  EXPECT_EQ(s["queue_wait_p95"]["ms"], std::to_string(PercentileDisc(waits, 0.95)));
  EXPECT_EQ(s["queue_wait_p99"]["ms"], std::to_string(PercentileDisc(waits, 0.99)));
  EXPECT_EQ(s["run_p50"]["ms"], std::to_string(PercentileDisc(runs, 0.5)));
  EXPECT_EQ(s["run_p95"]["ms"], std::to_string(PercentileDisc(runs, 0.95)));
  EXPECT_EQ(s["run_p95"]["has"], true);

  // Time saved: the cold build's recorded run time (the cached job), and the
  // recorded compile time of the four units the changed build was served.
  EXPECT_EQ(s["action_cache_saved_ms"],
            Q("SELECT round(1000 * extract(epoch FROM ended_at - running_at)::float8)::bigint FROM job_timings"
              " WHERE job_id = " + std::to_string(cold)));
  const std::string served =
      Q("SELECT sum(r.compile_ms) FROM compile_results r WHERE r.job_id = " + std::to_string(cold) +
        " AND NOT EXISTS (SELECT 1 FROM compile_manifests m WHERE m.scope = r.scope AND m.result_key = r.key"
        "                 AND m.source = 'c.c')");
  EXPECT_EQ(s["compile_cache_saved_ms"], served);
  EXPECT_EQ(Q("SELECT count(*) FROM compile_results WHERE job_id = " + std::to_string(cold)), "5");

  // Worker utilisation of the one cluster, from the samples.
  ASSERT_EQ(s["clusters"].size(), 1u) << r.out;
  const json& u = s["clusters"][0];
  EXPECT_EQ(u["cluster"], "default");
  EXPECT_EQ(u["samples"], Q("SELECT count(*) FROM kiln_samples WHERE metric = 'slots_total' AND cluster = 'default'"));
  EXPECT_NEAR(u["slots_avg"].get<double>(),
              std::stod(Q("SELECT avg(value) FROM kiln_samples WHERE metric = 'slots_total' AND cluster = 'default'")),
              1e-9);
  EXPECT_NEAR(u["utilisation"].get<double>(),
              std::stod(Q("SELECT coalesce(sum(value) FILTER (WHERE metric = 'slots_busy'), 0) /"
                          " sum(value) FILTER (WHERE metric = 'slots_total') FROM kiln_samples"
                          " WHERE cluster = 'default'")),
              1e-9);

  // Most missed: c.c twice (new, then changed), each other unit once.
  ASSERT_EQ(s["most_missed_units"].size(), 5u) << r.out;
  std::vector<std::string> missed;
  for (const auto& m : s["most_missed_units"]) missed.push_back(m["source"].get<std::string>() + " " +
                                                                m["misses"].get<std::string>());
  EXPECT_EQ(missed, (std::vector<std::string>{"c.c 2", "a.c 1", "b.c 1", "lib/d.c 1", "main.c 1"}));
  EXPECT_EQ(s["most_missed_units"][0]["last_reason"], "source changed");
  // Slowest: the five longest compiles recorded, longest first.
  ASSERT_EQ(s["slowest_units"].size(), 5u) << r.out;
  auto longest = Column(url_, "SELECT compile_ms FROM compile_results ORDER BY compile_ms DESC LIMIT 5");
  std::vector<int64_t> shown;
  for (const auto& x : s["slowest_units"]) shown.push_back(std::stoll(x["compile_ms"].get<std::string>()));
  std::sort(shown.begin(), shown.end());
  EXPECT_EQ(shown, longest);

  // The same figures for people.
  auto human = KilnAt({"stats", "--since", "1h"});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find("jobs            4 ended: 2 succeeded, 1 failed, 1 served from the action cache, "
                           "0 cancelled, 0 lost"),
            std::string::npos)
      << human.out;
  EXPECT_NE(human.out.find("success rate    75.0%"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("action cache    1 hits of 4 cacheable jobs (25.0%)"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("compile cache   4 hits of 10 cacheable units (40.0%)"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("  2       c.c      source changed"), std::string::npos) << human.out;

  // A window that starts after the last job ended holds none of them.
  ASSERT_TRUE(test::WaitFor(
      [&] { return Q("SELECT max(finished_at) < now() - interval '2 seconds' FROM build_jobs") == "t"; }, 10s));
  auto empty = KilnAt({"--json", "stats", "--project", "default", "--since", "1s"});
  ASSERT_EQ(empty.exit_code, 0) << empty.err;
  EXPECT_EQ(json::parse(empty.out)["jobs"], "0");
  EXPECT_EQ(json::parse(empty.out)["queue_wait_p50"]["has"], false);

  // A project's read token sees its project, not the farm nor another's.
  ASSERT_EQ(KilnAt({"projects", "create", "other"}).exit_code, 0);
  const std::string reader = dir_.path() + "/reader.token";
  NewToken("read", "other", reader);
  auto own = KilnAt({"--json", "stats", "--project", "other"}, reader);
  EXPECT_EQ(own.exit_code, 0) << own.err;
  EXPECT_EQ(json::parse(own.out)["jobs"], "0");
  EXPECT_EQ(json::parse(own.out)["run_p50"]["has"], false);
  auto all = KilnAt({"stats"}, reader);
  EXPECT_EQ(all.exit_code, 6) << all.out;
  EXPECT_NE(all.err.find("kiln stats --project other"), std::string::npos) << all.err;
  EXPECT_EQ(KilnAt({"stats", "--project", "default"}, reader).exit_code, 6);
  EXPECT_EQ(KilnAt({"stats", "--since", "soon"}).exit_code, 2);
}

// sample_retention drops the day partitions that ended that long ago at the
// sampler's start, keeps the younger ones and their samples, and the
// controller's new samples land in today's partition, made ahead.
class Samples : public Farm {
 protected:
  Samples() { extra_conf_ = "sample_interval = 200ms\nsample_retention = 3d\n"; }
  std::string Q(const std::string& sql) { return test::Sql(url_, sql); }
  std::string Partitions() {
    return Q("SELECT string_agg(partition, ',' ORDER BY partition) FROM kiln_sample_partitions");
  }
  static std::string Day(int days_from_now) {
    return "to_char((now() AT TIME ZONE 'UTC')::date + " + std::to_string(days_from_now) + ", 'YYYYMMDD')";
  }
};

TEST_F(Samples, AShortRetentionDropsOldPartitionsAndKeepsNewSamples) {
  // A farm that sampled ten days ago and two days ago: their partitions and
  // a sample in each, as an earlier controller would have left them.
  for (const char* ago : {"10 days", "2 days"}) {
    Q(std::string("SELECT kiln_samples_maintain(now() - interval '") + ago + "', 1, NULL)");
    Q(std::string("INSERT INTO kiln_samples (at, metric, value) VALUES (now() - interval '") + ago +
      "', 'queue_depth', 7)");
  }
  const std::string before = Partitions();
  for (int d : {-10, -9, -2, -1, 0, 1})
    EXPECT_NE(before.find(Q("SELECT 'kiln_samples_' || " + Day(d))), std::string::npos) << before;
  EXPECT_EQ(Q("SELECT count(*) FROM kiln_samples WHERE metric = 'queue_depth' AND value = 7"), "2");

  StartController();
  StartWorker(0, 3);
  // The worker's slots sampled: the sampler ran, after its maintenance.
  ASSERT_TRUE(test::WaitFor(
      [&] { return Q("SELECT count(*) > 0 FROM kiln_worker_utilisation WHERE slots_total = 3") == "t"; }, 20s));
  std::string want;
  for (int d : {-2, -1, 0, 1, 2}) want += (want.empty() ? "" : ",") + Q("SELECT 'kiln_samples_' || " + Day(d));
  EXPECT_EQ(Partitions(), want) << "the days that ended more than 3 days ago are dropped; two days ahead are made";
  EXPECT_EQ(Q("SELECT count(*) FROM pg_inherits WHERE inhparent = 'kiln_samples'::regclass"), "5");
  EXPECT_EQ(Q("SELECT count(*) FROM kiln_samples WHERE metric = 'queue_depth' AND value = 7"), "1")
      << "the sample of two days ago stays";
  EXPECT_EQ(Q("SELECT count(*) FROM kiln_samples WHERE at < now() - interval '3 days'"), "0");
  // One row per metric and interval bucket: the default cluster's.
  EXPECT_EQ(Q("SELECT count(DISTINCT metric) FROM kiln_samples WHERE at > now() - interval '1 minute'"
              " AND metric IN ('slots_total', 'slots_busy', 'workers', 'queue_depth', 'action_cache_entries',"
              " 'compile_cache_entries', 'compile_cache_bytes')"),
            "7");
  EXPECT_EQ(Q("SELECT queued FROM kiln_queue_depth WHERE project = 'default' AND cluster = 'default'"
              " ORDER BY at DESC LIMIT 1"),
            "0");
  // The controller's log says what it dropped.
  EXPECT_NE(test::ReadFile(logs_[0]).find("samples: partition dropped kiln_samples_" +
                                          Q("SELECT " + Day(-10))),
            std::string::npos);
}

}  // namespace
}  // namespace kiln
