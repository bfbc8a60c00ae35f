// Remote actions end to end: a real C project built with make in the
// toolchain image on a farm of three workers (PostgreSQL, controller, runc),
// driven through the kiln CLI. The job runs on one worker; its compile
// cache misses compile on the others, in their action sandboxes. What comes
// back must be byte-identical to a local compile, errors included.

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "harness/c_project.h"
#include "harness/container_farm.h"
#include "harness/prometheus.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

void WriteSlowProject(const std::string& d, int units = 4, int loops = 100, const std::string& tag = "");

class Remote : public ContainerFarm {
 protected:
  // The slow project (WriteSlowProject) built locally in `img`: its
  // artifacts, what a remote build must give byte for byte.
  void SlowReference(const std::string& img, std::map<std::string, std::string>* reference) {
    WriteSlowProject(src());
    auto local = Build(img, "make app", {"--no-compile-cache"});
    ASSERT_EQ(local.exit_code, 0) << local.err << local.out;
    *reference = Artifacts();
    ASSERT_EQ(reference->size(), 5u) << "app and 4 objects";
  }

  std::string src() const { return dir_.path() + "/proj"; }
  std::string outputs_dir() const { return dir_.path() + "/built"; }

  // The job's worker: one job slot and no action slots of its own, so that
  // every remote compile runs on another worker; it alone has role=build.
  // Then `helpers` workers with two action slots each.
  void Up(int helpers, const std::string& listen = "127.0.0.1:0") {
    StartController(listen);
    StartWorker(0, 1, {"--label", "role=build", "--set", "action_slots=0"});
    for (int i = 0; i < helpers; ++i) StartWorker(0, 1, {"--set", "action_slots=2", "--label", "role=helper"});
  }

  // kiln submit of `command` on the project, never from the action cache;
  // returns the CLI's result. Outputs land in outputs_dir().
  test::CommandResult Build(const std::string& image, const std::string& command, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"submit",   "--image",        image,         "--input",  src(),
                                  "--no-gitignore", "--no-cache", "--output", "app", "--output",
                                  "out",      "--outputs-dir",  outputs_dir(), "--require", "role=build"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--", "sh", "-c", command});
    fs::remove_all(outputs_dir());
    return Kiln(args, 300s);
  }
  int64_t LastJob() { return std::stoll(test::Sql(url_, "SELECT max(id) FROM build_jobs")); }

  std::map<std::string, std::string> Artifacts() {
    std::map<std::string, std::string> out;
    if (!fs::exists(outputs_dir())) return out;
    for (const auto& e : fs::recursive_directory_iterator(outputs_dir()))
      if (e.is_regular_file()) out[fs::relative(e.path(), outputs_dir()).string()] = test::ReadFile(e.path());
    return out;
  }
  std::string WorkerLog(int n) { return test::ReadFile(dir_.path() + "/worker" + std::to_string(n) + ".log"); }
};

TEST_F(Remote, CompilesOnOtherWorkersAreByteIdenticalToLocalOnes) {
  Up(2);
  const std::string img = Toolchain();
  test::WriteCProject(src());
  // A header only __has_include asks about, and one in a branch never
  // taken that is not there: a remote unit without -g names its headers by
  // a scan (no preprocessor pass), which must send the first.
  test::WriteFile(src() + "/include/opt.h", "/* asked about, never included */\n");
  test::WriteFile(src() + "/c.c",
                  "#include \"common.h\"\n#if __has_include(\"opt.h\")\nint c_opt = 7;\n#else\nint c_opt = 0;\n#endif\n"
                  "#if 0\n#include \"absent.h\"\n#endif\nint unit_c(void) { return 3; }\n");
  // A build learns how many compiles it may run at once: its own, and the
  // helpers' two action slots each.
  auto jobs = Run(img, {}, "echo jobs=$KILN_JOBS");
  EXPECT_NE(jobs.out.find("jobs=5"), std::string::npos) << jobs.out << jobs.err;
  // Debug information records paths, macros (-g3) and the working directory.
  for (const std::string debug : {"-g", "-g3", ""}) {
    SCOPED_TRACE("DEBUG=" + debug);
    const std::string make = "make -j$KILN_JOBS app DEBUG='" + debug + "'";
    // A changed comment in every source makes every unit a cold miss.
    for (const char* f : {"main.c", "a.c", "b.c", "c.c", "lib/d.c"})
      test::WriteFile(src() + "/" + f, test::ReadFile(src() + "/" + f) + "/* " + debug + " */\n");
    auto local = Build(img, make, {"--no-compile-cache"});
    ASSERT_EQ(local.exit_code, 0) << local.err << local.out;
    const auto reference = Artifacts();
    ASSERT_EQ(reference.size(), 11u) << "app, 5 objects and 5 dependency files";
    auto remote = Build(img, make);
    ASSERT_EQ(remote.exit_code, 0) << remote.err << remote.out;
    EXPECT_EQ(Artifacts(), reference) << "objects compiled on other workers are the local ones, byte for byte";
  }
  const std::string helpers = WorkerLog(1) + WorkerLog(2);
  EXPECT_NE(helpers.find("action sandbox started"), std::string::npos) << "the helpers ran the compiles";
  EXPECT_EQ(WorkerLog(0).find("action sandbox started"), std::string::npos) << "the job's worker ran none";
  // kiln why says where the units compiled.
  auto why = Kiln({"why", std::to_string(LastJob())});
  ASSERT_EQ(why.exit_code, 0) << why.err;
  EXPECT_NE(why.out.find("remote: 5 of the misses compiled on other workers"), std::string::npos) << why.out;

  // A unit whose headers no scan can name (an #include of a macro) and
  // that asks whether a file exists compiles here: the farm would answer
  // from the files sent. The others still go.
  test::WriteFile(src() + "/lib/d.c",
                  "#define COMMON \"common.h\"\n#include COMMON\n#if __has_include(\"opt.h\")\nint d_opt = 7;\n#endif\n"
                  "int unit_d(void) { return 4; }\n");
  auto local = Build(img, "make -j$KILN_JOBS app DEBUG=", {"--no-compile-cache"});
  ASSERT_EQ(local.exit_code, 0) << local.err << local.out;
  const auto reference = Artifacts();
  auto remote = Build(img, "make -j$KILN_JOBS app DEBUG=");
  ASSERT_EQ(remote.exit_code, 0) << remote.err << remote.out;
  EXPECT_EQ(Artifacts(), reference);
  why = Kiln({"why", std::to_string(LastJob())});
  ASSERT_EQ(why.exit_code, 0) << why.err;
  EXPECT_NE(why.out.find("it asks whether files exist (__has_include)"), std::string::npos) << why.out;
}

// `units` units that take a while to compile (-O2 of `loops` loops each;
// by default four of 100), so that a compile is running when the test acts.
// `tag` makes the sources differ from another project's.
void WriteSlowProject(const std::string& d, int units, int loops, const std::string& tag) {
  std::string objs;
  for (int u = 1; u <= units; ++u) objs += " out/s" + std::to_string(u) + ".o";
  test::WriteFile(d + "/Makefile",
                  "OBJS =" + objs + "\n"
                  "app: $(OBJS)\n\tcc -o $@ $(OBJS) main.c\n"
                  "out/%.o: %.c\n\t@mkdir -p out\n\tcc -O2 -g -c -o $@ $<\n");
  test::WriteFile(d + "/main.c", "int main(void) { return 0; }\n");
  for (int u = 1; u <= units; ++u) {
    std::string code = "int sink" + std::to_string(u) + tag + ";\n";
    for (int i = 0; i < loops; ++i) {
      std::string f = "u" + std::to_string(u) + "f" + std::to_string(i), n = std::to_string(i);
      code += "int " + f + "(int x) { int s = " + n + "; for (int k = 0; k < x; k++) { s += (k * " + n +
              ") ^ (s >> 3); if (s % 7 == " + std::to_string(i % 7) + ") s -= k; } return s; }\n";
    }
    test::WriteFile(d + "/s" + std::to_string(u) + ".c", code);
  }
}

TEST_F(Remote, AHelperKilledMidCompileLeavesTheBuildGreenAndTheObjectsTheSame) {
  Up(2);
  const std::string img = Toolchain();
  std::map<std::string, std::string> reference;
  ASSERT_NO_FATAL_FAILURE(SlowReference(img, &reference));

  test::CommandResult remote;
  std::thread cli([&] { remote = Build(img, "make -j$KILN_JOBS app"); });
  // The first helper to start a compile is killed while it runs it.
  int killed = -1;
  EXPECT_TRUE(test::WaitFor(
      [&] {
        for (int n : {1, 2})
          if (WorkerLog(n).find("action sandbox started") != std::string::npos) killed = n;
        return killed > 0;
      },
      120s))
      << "no helper started a compile";
  if (killed > 0) workers_[killed]->Signal(SIGKILL);
  cli.join();
  EXPECT_EQ(remote.exit_code, 0) << remote.err << remote.out;
  EXPECT_EQ(Artifacts(), reference) << "the units the dead helper held compiled elsewhere, byte-identical";
  auto why = Kiln({"why", std::to_string(LastJob())});
  EXPECT_NE(why.out.find("compile cache: 5 compiler invocations"), std::string::npos) << why.out;
}

// The path of the file named `name` in the checkout of a job running on a
// worker whose work_dir is `work_dir` (its jobs/<job>/src, what the build
// sees), or "" while there is none. Never the checkout's overlay upper
// directory (jobs/<job>/disk/upper), which holds the same file: a file
// written there while the overlay is mounted need not show in the build's
// view (the build's own lookups of the name are cached there).
std::string FindInCheckout(const std::string& work_dir, const std::string& name) {
  std::error_code ec;
  for (auto it = fs::directory_iterator(work_dir + "/jobs", ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    if (std::string p = it->path().string() + "/src/" + name; fs::is_regular_file(p, ec)) return p;
  return "";
}

// The controller goes down (killed) while the build's first remote compile
// runs: the compiles it held and every later one compile on the job's own
// host, the build stays green with the same objects, and once the
// controller is back `kiln why` counts them as local with the reason.
TEST_F(Remote, WithTheControllerDownTheBuildFinishesLocally) {
  // The job outlives the controller's absence (its lease is not what this tests).
  extra_conf_ = "lease = 120s\n";
  SetUp();
  Up(2, UnixAddress("controller"));
  const std::string img = Toolchain();
  std::map<std::string, std::string> reference;
  ASSERT_NO_FATAL_FAILURE(SlowReference(img, &reference));

  // make runs with the controller down; the job then waits for the gate
  // (so that its outputs go to CAS once the controller is back).
  auto sub = Kiln({"submit", "--detach", "--image", img, "--input", src(), "--no-gitignore", "--no-cache", "--output",
                   "app", "--output", "out", "--require", "role=build", "--", "sh", "-c",
                   "make -j$KILN_JOBS app && touch built && while [ ! -e go ]; do sleep 0.05; done"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  const std::string id = sub.out.substr(0, sub.out.find('\n'));
  ASSERT_TRUE(test::WaitFor(
      [&] { return (WorkerLog(1) + WorkerLog(2)).find("action sandbox started") != std::string::npos; }, 120s))
      << "no helper started a compile";
  controllers_[0]->Signal(SIGKILL);
  ASSERT_NE(controllers_[0]->Wait(5s), -1);
  std::string built;
  ASSERT_TRUE(test::WaitFor([&] { return !(built = FindInCheckout(dir_.path() + "/w0", "built")).empty(); }, 240s))
      << "make did not finish with the controller down";
  RestartController(0);
  test::WriteFile(fs::path(built).parent_path().string() + "/go", "");
  auto wait = Kiln({"logs", "-f", id}, 120s);
  EXPECT_EQ(wait.exit_code, 0) << wait.err;
  ASSERT_TRUE(test::WaitFor([&] { return Count("id = " + id + " AND status IN ('queued', 'setup', 'running')") == 0; }, 60s));
  EXPECT_EQ(test::Sql(url_, "SELECT status || '/' || attempt FROM build_jobs WHERE id = " + id), "succeeded/1")
      << "the job finished on its worker, not re-run";
  auto outs = Kiln({"outputs", id, "--dest", outputs_dir()});
  ASSERT_EQ(outs.exit_code, 0) << outs.err;
  EXPECT_EQ(Artifacts(), reference) << "the units compiled here are the same objects";
  auto why = Kiln({"why", id});
  ASSERT_EQ(why.exit_code, 0) << why.err;
  EXPECT_NE(why.out.find("compile cache: 5 compiler invocations"), std::string::npos) << why.out;
  // Every unit the farm did not run says why it compiled here.
  size_t here = 0;
  for (size_t p = 0; (p = why.out.find("(compiled here: the controller did not run it", p)) != std::string::npos; ++p) here++;
  EXPECT_GE(here, 1u) << why.out;
  size_t remote = 0;  // "remote: N of the misses compiled on other workers"
  auto r = why.out.find("remote: ");
  if (r != std::string::npos && why.out.compare(r + 8 + why.out.substr(r + 8).find(' '), 15, " of the misses ") == 0)
    remote = std::stoul(why.out.substr(r + 8));
  EXPECT_EQ(here + remote, 4u) << "each unit compiled remotely or here with the reason:\n" << why.out;
  // The summary counts those compiled here (kiln status shows the same line).
  EXPECT_NE(why.out.find(std::to_string(here) + (here == 1 ? " unit" : " units") + " compiled here after all"),
            std::string::npos)
      << why.out;
}

// Fair share end to end: two projects' builds on one cluster, one issuing
// four times the compiles of the other, both backlogged on a helper's two
// action slots. Measured as an operator would: the controller's /metrics,
// scraped all along; a slot handed out counts for the window when both
// projects had actions queued at the scrapes before and after it. Not timing-fragile:
// a slow scrape only makes fewer, longer windows, and neither project's
// compiles are favoured by when the scrapes fall.
TEST_F(Remote, TwoBackloggedProjectsEachGetAtLeast40PercentOfTheSlots) {
  StartController("127.0.0.1:0", {"--set", "metrics_address=127.0.0.1:0", "--set",
                                  "metrics_address_file=" + dir_.path() + "/controller.metrics"});
  std::string metrics;
  ASSERT_TRUE(test::WaitFor(
      [&] {
        std::ifstream in(dir_.path() + "/controller.metrics");
        return static_cast<bool>(std::getline(in, metrics)) && !metrics.empty();
      },
      20s));
  // Both jobs run on one worker that runs no actions; one helper has the two action slots.
  StartWorker(0, 2, {"--label", "role=build", "--set", "action_slots=0"});
  StartWorker(0, 1, {"--set", "action_slots=2"});
  for (const char* p : {"big", "small"}) {
    ASSERT_EQ(Kiln({"projects", "create", p}).exit_code, 0);
    ASSERT_EQ(Kiln({"clusters", "map", "default", p}).exit_code, 0);
  }
  const std::string img = Toolchain();
  WriteSlowProject(dir_.path() + "/big", 40, 25, "b");
  WriteSlowProject(dir_.path() + "/small", 10, 25, "s");

  struct Sample {
    double queued_big, queued_small, sent_big, sent_small;
  };
  std::vector<Sample> samples;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done) {
      auto m = test::ScrapeSeries(metrics);
      samples.push_back({test::SumSeries(m, "kiln_actions_queued", "project=\"big\""),
                         test::SumSeries(m, "kiln_actions_queued", "project=\"small\""),
                         test::SumSeries(m, "kiln_actions_dispatched_total", "project=\"big\""),
                         test::SumSeries(m, "kiln_actions_dispatched_total", "project=\"small\"")});
      std::this_thread::sleep_for(50ms);  // a scrape interval, not a wait for an outcome
    }
  });
  // Both keys exist before the threads start: each writes only its own value.
  std::map<std::string, test::CommandResult> builds{{"big", {}}, {"small", {}}};
  std::vector<std::thread> clis;
  for (const char* p : {"big", "small"})
    clis.emplace_back([&, p = std::string(p)] {
      builds.at(p) = Kiln({"submit", "--project", p, "--image", img, "--input", dir_.path() + "/" + p, "--no-gitignore",
                        "--no-cache", "--require", "role=build", "--", "make", "-j8", "app"},
                       600s);
    });
  for (auto& t : clis) t.join();
  done = true;
  scraper.join();
  for (const char* p : {"big", "small"}) ASSERT_EQ(builds[p].exit_code, 0) << p << ": " << builds[p].err << builds[p].out;

  double big = 0, small = 0;
  for (size_t k = 0; k + 1 < samples.size(); ++k) {
    // Both backlogged at both ends of the window: a queue that ran dry
    // inside it would hand the other project slots that say nothing of
    // fair share.
    if (samples[k].queued_big <= 0 || samples[k].queued_small <= 0) continue;
    if (samples[k + 1].queued_big <= 0 || samples[k + 1].queued_small <= 0) continue;
    big += samples[k + 1].sent_big - samples[k].sent_big;
    small += samples[k + 1].sent_small - samples[k].sent_small;
  }
  const auto& last = samples.back();
  const std::string measured = "slots handed out while both were backlogged: big " + std::to_string(big) +
                               ", small " + std::to_string(small) + "; in all: big " + std::to_string(last.sent_big) +
                               ", small " + std::to_string(last.sent_small) + "; " + std::to_string(samples.size()) +
                               " scrapes";
  RecordProperty("fair_share", measured);  // in the test's XML output, and printed:
  std::printf("fair share: %s\n", measured.c_str());
  SCOPED_TRACE(measured);
  EXPECT_GE(last.sent_small, 10) << "the small project's units compiled remotely";
  ASSERT_GE(big + small, 10) << "too few slots handed out while both projects were backlogged to judge";
  EXPECT_GE(big / (big + small), 0.4);
  EXPECT_GE(small / (big + small), 0.4);
}

TEST_F(Remote, ACompileErrorReadsExactlyAsLocally) {
  Up(2);
  const std::string img = Toolchain();
  test::WriteCProject(src());
  // A warning, then an error inside a macro's expansion.
  test::WriteFile(src() + "/c.c",
                  "#include \"common.h\"\n#define TWICE(x) ((x) + (x) + undefined_name)\n"
                  "int unit_c(void) { int unused; return TWICE(3); }\n");
  auto local = Build(img, "make -k -j$KILN_JOBS app", {"--no-compile-cache"});
  auto remote = Build(img, "make -k -j$KILN_JOBS app");
  EXPECT_NE(local.exit_code, 0);
  EXPECT_EQ(remote.exit_code, local.exit_code);
  // The compiler's lines about c.c, as the build log shows them (its
  // diagnostics, from stderr; not make's echo of the command, from stdout,
  // whose order against stderr the log does not keep).
  auto about_c = [](const std::string& log) {
    std::string out;
    size_t pos = 0;
    while (pos < log.size()) {
      size_t nl = log.find('\n', pos);
      std::string line = log.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      pos = nl == std::string::npos ? log.size() : nl + 1;
      if (line.find("c.c:") != std::string::npos || line.find("TWICE") != std::string::npos) out += line + "\n";
    }
    return out;
  };
  EXPECT_NE(about_c(local.out).find("in expansion of macro"), std::string::npos) << local.out;
  EXPECT_EQ(about_c(remote.out), about_c(local.out));
}

}  // namespace
}  // namespace kiln
