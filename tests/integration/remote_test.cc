// Remote actions end to end: a real C project built with make in the
// toolchain image on a farm of three workers (PostgreSQL, controller, runc),
// driven through the kiln CLI. The job runs on one worker; its compile
// cache misses compile on the others, in their action sandboxes. What comes
// back must be byte-identical to a local compile, errors included.

#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <map>
#include <string>
#include <thread>

#include "harness/c_project.h"
#include "harness/container_farm.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

class Remote : public ContainerFarm {
 protected:
  std::string src() const { return dir_.path() + "/proj"; }
  std::string outputs_dir() const { return dir_.path() + "/built"; }

  // The job's worker: one job slot and no action slots of its own, so that
  // every remote compile runs on another worker; it alone has role=build.
  // Then `helpers` workers with two action slots each.
  void Up(int helpers) {
    StartController();
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
}

// Four units that take a while to compile (-O2 of 100 loops each), so that
// a compile is running when the test acts.
void WriteSlowProject(const std::string& d) {
  test::WriteFile(d + "/Makefile",
                  "OBJS = out/s1.o out/s2.o out/s3.o out/s4.o\n"
                  "app: $(OBJS)\n\tcc -o $@ $(OBJS) main.c\n"
                  "out/%.o: %.c\n\t@mkdir -p out\n\tcc -O2 -g -c -o $@ $<\n");
  test::WriteFile(d + "/main.c", "int main(void) { return 0; }\n");
  for (int u = 1; u <= 4; ++u) {
    std::string code = "int sink" + std::to_string(u) + ";\n";
    for (int i = 0; i < 100; ++i) {
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
  WriteSlowProject(src());
  auto local = Build(img, "make app", {"--no-compile-cache"});
  ASSERT_EQ(local.exit_code, 0) << local.err << local.out;
  const auto reference = Artifacts();
  ASSERT_EQ(reference.size(), 5u) << "app and 4 objects";

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
