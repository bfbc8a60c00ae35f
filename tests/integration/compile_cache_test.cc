// The compile cache end to end: a real C project built with make in the
// toolchain image on a real farm (PostgreSQL, controller, workers, runc),
// driven through the kiln CLI. Every mutation must miss exactly where it
// should; what is served must be byte-identical to a clean compile.

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <csignal>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "cas/digest.h"
#include "cc/frame.h"
#include "harness/c_project.h"
#include <functional>

#include "harness/container_farm.h"
#include "kiln/cc/v1/cc.pb.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class CompileCache : public ContainerFarm {
 protected:
  std::string src() const { return dir_.path() + "/proj"; }

  void WriteProject() { test::WriteCProject(src()); }

  // kiln submit of `make -j2 app` on the project (never from the action
  // cache); returns the job id. Outputs land in outputs_dir.
  int64_t Build(const std::string& image, std::vector<std::string> extra = {}, const std::string& project = "default",
                const std::string& command = "make -j2 app") {
    std::vector<std::string> args{"submit",     "--image", image,    "--input",  src(),        "--no-gitignore",
                                  "--no-cache", "--output", "app",   "--output", "out",        "--outputs-dir",
                                  outputs_dir(), "--project", project};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--", "sh", "-c", command});
    fs::remove_all(outputs_dir());
    auto r = Kiln(args, 120s);
    EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
    last_log_ = r.out;
    return std::stoll(test::Sql(url_, "SELECT max(id) FROM build_jobs"));
  }
  std::string outputs_dir() const { return dir_.path() + "/built"; }

  std::string Q(const std::string& sql) { return test::Sql(url_, sql); }
  // Sources compiled (outcome miss) by the job, sorted.
  std::string Missed(int64_t job) {
    return Q("SELECT coalesce(string_agg(source, ' ' ORDER BY source), '') FROM compile_events WHERE job_id = " +
             std::to_string(job) + " AND outcome = 'miss'");
  }
  std::string Reasons(int64_t job) {
    return Q("SELECT coalesce(string_agg(DISTINCT reason, ','), '') FROM compile_events WHERE job_id = " +
             std::to_string(job) + " AND outcome = 'miss'");
  }
  int Hits(int64_t job) {
    return std::stoi(Q("SELECT coalesce(hits + hits_preprocessed, -1) FROM compile_stats WHERE job_id = " +
                       std::to_string(job)));
  }
  int Stat(int64_t job, const std::string& column) {
    return std::stoi(Q("SELECT " + column + " FROM compile_stats WHERE job_id = " + std::to_string(job)));
  }

  // The built objects and program, by path.
  std::map<std::string, std::string> Artifacts() {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(outputs_dir()))
      if (e.is_regular_file()) out[fs::relative(e.path(), outputs_dir()).string()] = test::ReadFile(e.path());
    return out;
  }

  std::string last_log_;
};

TEST_F(CompileCache, EachChangeMissesExactlyWhereItShouldAndHitsAreByteIdentical) {
  Up();
  const std::string img = Toolchain();
  WriteProject();
  const std::string all = "a.c b.c c.c lib/d.c main.c";

  // A clean compile without the wrapper: the reference objects.
  int64_t clean = Build(img, {"--no-compile-cache"});
  EXPECT_EQ(Q("SELECT count(*) FROM compile_stats WHERE job_id = " + std::to_string(clean)), "0");
  auto reference = Artifacts();
  ASSERT_EQ(reference.size(), 11u) << "app, 5 objects and 5 dependency files";
  EXPECT_EQ(test::RunCommand({outputs_dir() + "/app"}, 10s).out, "hello 42 43 3 4 \n");

  int64_t cold = Build(img);
  EXPECT_EQ(Missed(cold), all);
  EXPECT_EQ(Reasons(cold), "new source");
  EXPECT_EQ(Stat(cold, "fallbacks"), 1) << "the link";
  EXPECT_EQ(Artifacts(), reference) << "compiling through kiln-cc changes nothing";

  int64_t same = Build(img);
  EXPECT_EQ(Missed(same), "") << "nothing changed: every unit hits";
  EXPECT_EQ(Hits(same), 5);
  EXPECT_EQ(Artifacts(), reference) << "served objects and dependency files are byte-identical to a clean compile";

  test::WriteFile(src() + "/c.c", "#include \"common.h\"\nint unit_c(void) { return 30; }\n");
  int64_t source = Build(img);
  EXPECT_EQ(Missed(source), "c.c");
  EXPECT_EQ(Reasons(source), "source changed");
  EXPECT_EQ(Hits(source), 4);

  const std::string leaf_before = cas::DigestOf(std::string_view("#define LEAF 21\n")).hash.substr(0, 12);
  const std::string leaf_after = cas::DigestOf(std::string_view("#define LEAF 20\n")).hash.substr(0, 12);
  test::WriteFile(src() + "/include/leaf.h", "#define LEAF 20\n");
  int64_t transitive = Build(img);
  EXPECT_EQ(Missed(transitive), "a.c b.c") << "leaf.h is included through mid.h by a.c and b.c only";
  EXPECT_EQ(Reasons(transitive), "header changed");
  auto why = Kiln({"why", std::to_string(transitive)});
  ASSERT_EQ(why.exit_code, 0) << why.err;
  EXPECT_NE(why.out.find("compile cache: 6 compiler invocations, 5 cacheable: 3 hits"), std::string::npos) << why.out;
  for (const char* unit : {"a.c", "b.c"}) {
    size_t at = why.out.find(std::string(" ") + unit + " ");
    ASSERT_NE(at, std::string::npos) << why.out;
    std::string line = why.out.substr(at, why.out.find('\n', at) - at);
    EXPECT_NE(line.find("header /src/include/leaf.h changed from sha256:" + leaf_before + ".. to sha256:" +
                        leaf_after + ".."),
              std::string::npos)
        << line;
  }
  EXPECT_NE(why.out.find("not cacheable: linking 1"), std::string::npos) << why.out;

  test::WriteFile(src() + "/include/mid.h",
                  "#ifndef MID_H\n#define MID_H\n#include \"leaf.h\"\n#define MID (LEAF * 3)\n#endif\n");
  int64_t direct = Build(img);
  EXPECT_EQ(Missed(direct), "a.c b.c");

  // A comment edit (same lines): the preprocessed units are the same.
  std::string common = test::ReadFile(src() + "/include/common.h");
  common.replace(common.find("shared by every unit"), 20, "used by all the units");
  test::WriteFile(src() + "/include/common.h", common);
  int64_t comment = Build(img);
  EXPECT_EQ(Missed(comment), "") << "a comment changes no preprocessed unit";
  EXPECT_EQ(Stat(comment, "hits_preprocessed"), 5);
  int64_t after_comment = Build(img);
  EXPECT_EQ(Stat(after_comment, "hits"), 5) << "the manifests learnt the edited header";

  int64_t define = Build(img, {"--env", "EXTRA=-DFEATURE=1"});
  EXPECT_EQ(Missed(define), all);
  EXPECT_EQ(Reasons(define), "arguments changed");
  auto why_flag = Kiln({"why", std::to_string(define)});
  EXPECT_NE(why_flag.out.find("arguments: added -DFEATURE=1"), std::string::npos) << why_flag.out;

  int64_t opt = Build(img, {"--env", "OPT=-O1"});
  EXPECT_EQ(Missed(opt), all);
  auto why_opt = Kiln({"why", std::to_string(opt)});
  EXPECT_NE(why_opt.out.find("arguments: removed -O2, added -O1"), std::string::npos) << why_opt.out;

  // An environment variable the build reads (the Makefile turns it into -DMODE).
  int64_t mode = Build(img, {"--env", "KILN_TEST_MODE=fast"});
  EXPECT_EQ(Missed(mode), all);
  auto why_mode = Kiln({"why", std::to_string(mode)});
  EXPECT_NE(why_mode.out.find("arguments: removed -DMODE=\"\", added -DMODE=\"fast\""), std::string::npos)
      << why_mode.out;
  // One the compiler reads itself.
  int64_t cpath = Build(img, {"--env", "CPATH=/src/include"});
  EXPECT_EQ(Missed(cpath), all);
  EXPECT_EQ(Reasons(cpath), "environment changed");

  // An executable bit changes the tree (the action) but no translation unit.
  fs::permissions(src() + "/c.c", fs::perms::owner_exec, fs::perm_options::add);
  int64_t exec = Build(img);
  EXPECT_EQ(Missed(exec), "");
  EXPECT_EQ(Hits(exec), 5);

  EXPECT_EQ(test::RunCommand({outputs_dir() + "/app"}, 10s).out, "hello 60 61 30 4 \n");
  // And the final tree, compiled clean without the cache, gives the same bytes.
  auto served = Artifacts();
  Build(img, {"--no-compile-cache"});
  EXPECT_EQ(Artifacts(), served);

  // What a header change recompiles, and the project's statistics.
  auto impact = Kiln({"cache", "impact", "include/leaf.h"});
  ASSERT_EQ(impact.exit_code, 0) << impact.err;
  EXPECT_NE(impact.out.find("/src/include/leaf.h is read by 2 cached translation units"), std::string::npos)
      << impact.out;
  // The table's SOURCE column: exactly the units that include leaf.h through mid.h.
  std::set<std::string> readers;
  std::istringstream rows(impact.out);
  std::string row;
  std::getline(rows, row);  // the sentence above
  std::getline(rows, row);  // the table's heading
  while (std::getline(rows, row)) readers.insert(row.substr(0, row.find(' ')));
  EXPECT_EQ(readers, (std::set<std::string>{"a.c", "b.c"})) << impact.out;
  auto stats = Kiln({"cache", "stats"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_NE(stats.out.find("misses by reason"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("arguments changed 15"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("not cacheable      12 (linking 12)"), std::string::npos) << stats.out;
}

TEST_F(CompileCache, WithoutDebugInformationTheCompileNamesItsOwnHeaders) {
  // An object without debug information does not record the compiler's
  // options: kiln-cc then compiles with -H and takes the headers from its
  // trace, with no preprocessor pass. What the build sees must not change.
  Up();
  const std::string img = Toolchain();
  WriteProject();
  test::WriteFile(src() + "/c.c", "#include \"common.h\"\nint unit_c(void) { int unused; return 3; }\n");
  // One compile at a time, and -s: make's own echo of each command goes
  // through its buffered stdout, which may reach the log before or after a
  // compiler's warning (CI saw both); the compiler's words alone are
  // in a fixed order.
  const std::string serial = "make -s app DEBUG=";
  Build(img, {"--no-compile-cache"}, "default", serial);
  const auto reference = Artifacts();
  const std::string reference_log = last_log_;
  ASSERT_NE(reference_log.find("warning: unused variable"), std::string::npos) << reference_log;

  int64_t cold = Build(img, {}, "default", serial);
  EXPECT_EQ(Missed(cold), "a.c b.c c.c lib/d.c main.c");
  EXPECT_EQ(Artifacts(), reference) << "objects and dependency files as a plain compile makes them";
  EXPECT_EQ(last_log_, reference_log) << "the warning as the compiler printed it, and no trace of -H";
  EXPECT_EQ(Q("SELECT deps -> '/src/include/common.h' LIKE 'f:%' AND deps -> '/usr/include/stdio.h' = 'i' AND "
              "deps -> '/usr/include/stdc-predef.h' = 'i' AND deps -> '/src/include/stdio.h' = '-' FROM "
              "compile_manifests WHERE source = 'main.c'"),
            "t")
      << "the traced headers, the implicit one, and where a new header would shadow one";
  int64_t same = Build(img, {}, "default", serial);
  EXPECT_EQ(Hits(same), 5);
  EXPECT_EQ(last_log_, reference_log) << "the warning replayed";

  test::WriteFile(src() + "/include/leaf.h", "#define LEAF 20\n");
  EXPECT_EQ(Missed(Build(img, {}, "default", serial)), "a.c b.c");
  // A header of the project's that would be found before the system's.
  test::WriteFile(src() + "/include/stdio.h", "#include_next <stdio.h>\n");
  EXPECT_EQ(Missed(Build(img, {}, "default", serial)), "main.c");

  // A comment edit: lib/d.c, traced and silent, is found by its code with
  // no pass; a.c, b.c and main.c compiled through a pass since and are found
  // by it. c.c's compile printed a warning, which quotes a line of the unit,
  // comments and all: it was stored by neither key and compiles again (with
  // a pass, which serves the next comment edit).
  for (const char* words : {"used by all the units", "read by all the units"}) {
    std::string common = test::ReadFile(src() + "/include/common.h");
    size_t at = common.find("/* common.h: ") + 13;
    common.replace(at, common.find(" */") - at, words);
    test::WriteFile(src() + "/include/common.h", common);
    int64_t j = Build(img, {}, "default", serial);
    if (std::string(words).rfind("used", 0) == 0) {
      EXPECT_EQ(Missed(j), "c.c");
      EXPECT_EQ(Stat(j, "hits_preprocessed"), 4);
    } else {
      EXPECT_EQ(Missed(j), "");
      EXPECT_EQ(Stat(j, "hits_preprocessed"), 5);
    }
  }
  auto served = Artifacts();
  Build(img, {"--no-compile-cache"}, "default", serial);
  EXPECT_EQ(Artifacts(), served);

  // KILN_CC_TRACE=0: the pass runs, and the first comment edit is served.
  const std::string pass = "make app DEBUG= KILN_TEST_MODE=pass";
  EXPECT_EQ(Missed(Build(img, {"--env", "KILN_CC_TRACE=0"}, "default", pass)), "a.c b.c c.c lib/d.c main.c");
  std::string common = test::ReadFile(src() + "/include/common.h");
  test::WriteFile(src() + "/include/common.h", common.replace(common.find("read by"), 7, "seen by"));
  int64_t j = Build(img, {"--env", "KILN_CC_TRACE=0"}, "default", pass);
  EXPECT_EQ(Missed(j), "");
  EXPECT_EQ(Stat(j, "hits_preprocessed"), 5);
}

// A change whose preprocessor passes serve no unit (a declaration every
// unit sees) stops the passes after four in a job: the other units compile
// at once, and `kiln why` says so. A change in a branch of #if the units
// skip is served by its passes, which then go on for every unit.
TEST_F(CompileCache, PreprocessorPassesStopForAChangeTheyCannotServe) {
  Up();
  const std::string img = Toolchain();
  WriteProject();
  const std::string serial = "make -s app DEBUG=";  // traced compiles, one at a time
  EXPECT_EQ(Missed(Build(img, {}, "default", serial)), "a.c b.c c.c lib/d.c main.c");
  const std::string header = src() + "/include/common.h";
  const std::string skipped = " (no preprocessor pass: this job's passes for the change served none)";

  test::WriteFile(header, test::ReadFile(header) + "int unit_e(void);\n");
  int64_t declaration = Build(img, {}, "default", serial);
  EXPECT_EQ(Missed(declaration), "a.c b.c c.c lib/d.c main.c");
  auto why = Kiln({"why", std::to_string(declaration)});
  ASSERT_EQ(why.exit_code, 0) << why.err;
  size_t notes = 0;
  for (size_t at = 0; (at = why.out.find(skipped, at)) != std::string::npos; ++at) notes++;
  EXPECT_EQ(notes, 1u) << "four passes found nothing, the fifth unit had none:\n" << why.out;
  const std::string fifth =
      Q("SELECT string_agg(source, ' ') FROM compile_events WHERE job_id = " + std::to_string(declaration) +
        " AND detail LIKE '%no preprocessor pass%'");

  // The same units as preprocessed: the four passed units are served by their
  // passes; the fifth has no preprocessed key yet and compiles (with a pass).
  test::WriteFile(header, test::ReadFile(header) + "#if 0\nint old_api(void);\n#endif\n");
  int64_t skipped_branch = Build(img, {}, "default", serial);
  EXPECT_EQ(Missed(skipped_branch), fifth);
  EXPECT_EQ(Stat(skipped_branch, "hits_preprocessed"), 4);
  std::string text = test::ReadFile(header);
  test::WriteFile(header, text.replace(text.find("old_api(void)"), 13, "old_api(long)"));
  int64_t again = Build(img, {}, "default", serial);
  EXPECT_EQ(Missed(again), "");
  EXPECT_EQ(Stat(again, "hits_preprocessed"), 5);
  const auto served = Artifacts();
  Build(img, {"--no-compile-cache"}, "default", serial);
  EXPECT_EQ(Artifacts(), served) << "what the passes served is what a compile makes";
}

TEST_F(CompileCache, AnotherCompilerInAnotherImageMissesEverywhere) {
  Up();
  const std::string img = Toolchain();
  WriteProject();
  ASSERT_EQ(Missed(Build(img)), "a.c b.c c.c lib/d.c main.c");
  // The same root plus a layer that puts another compiler first on PATH: a
  // gcc that always adds a flag. An OCI layout reusing the first layer.
  std::string layout = dir_.path() + "/derived";
  fs::create_directories(layout + "/blobs/sha256");
  fs::create_directories(dir_.path() + "/layer/usr/local/bin");
  test::WriteFile(dir_.path() + "/layer/usr/local/bin/cc", "#!/bin/sh\nexec /usr/bin/gcc -fno-common \"$@\"\n", true);
  std::string layer2 = dir_.path() + "/layer2.tar";
  ASSERT_EQ(test::RunCommand({"/bin/tar", "-C", dir_.path() + "/layer", "--owner=0", "--group=0", "-cf", layer2, "usr"}, 30s)
                .exit_code,
            0);
  auto put = [&](const std::string& path) {
    auto d = cas::DigestFile(path);
    EXPECT_TRUE(d.ok());
    fs::path dst = layout + "/blobs/sha256/" + d->hash;
    if (!fs::exists(dst)) fs::create_hard_link(path, dst);
    return *d;
  };
  auto l1 = put(toolchain_tar_);
  auto l2 = put(layer2);
  json config = {{"architecture", "amd64"},
                 {"os", "linux"},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {"sha256:" + l1.hash, "sha256:" + l2.hash}}}}};
  test::WriteFile(dir_.path() + "/config.json", config.dump());
  auto cd = put(dir_.path() + "/config.json");
  const char* toolchain_tar_type = "application/vnd.oci.image.layer.v1.tar";
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"}, {"digest", "sha256:" + cd.hash},
                               {"size", cd.size}}},
                   {"layers", {{{"mediaType", toolchain_tar_type}, {"digest", "sha256:" + l1.hash}, {"size", l1.size}},
                               {{"mediaType", toolchain_tar_type}, {"digest", "sha256:" + l2.hash}, {"size", l2.size}}}}};
  test::WriteFile(dir_.path() + "/manifest.json", manifest.dump());
  auto md = put(dir_.path() + "/manifest.json");
  test::WriteFile(layout + "/oci-layout", R"({"imageLayoutVersion": "1.0.0"})");
  json index = {{"schemaVersion", 2},
                {"manifests", {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                {"digest", "sha256:" + md.hash}, {"size", md.size}}}}};
  test::WriteFile(layout + "/index.json", index.dump());
  auto imp = Kiln({"image", "import", layout, "--name", "toolchain-fno-common"}, 300s);
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  std::string other = imp.out.substr(0, imp.out.find('\n'));
  ASSERT_NE(other, img);

  int64_t j = Build(other);
  EXPECT_EQ(Missed(j), "a.c b.c c.c lib/d.c main.c");
  EXPECT_EQ(Reasons(j), "compiler changed");
  EXPECT_NE(Kiln({"why", std::to_string(j)}).out.find("compiler sha256:"), std::string::npos);
  // Both images keep their own entries.
  EXPECT_EQ(Missed(Build(img)), "");
  EXPECT_EQ(Missed(Build(other)), "");
}

TEST_F(CompileCache, TwoWorkersFillingTheSameKeysAtOnceLeaveOneValidEntry) {
  StartController();
  StartWorker(0, 1, {"--label", "pool=a"});
  StartWorker(0, 1, {"--label", "pool=b"});
  const std::string img = Toolchain();
  // Both workers unpack the image first: otherwise one build starts seconds
  // before the other and has compiled everything when the other begins.
  for (const char* pool : {"pool=a", "pool=b"}) {
    auto r = Run(img, {"--require", pool}, "true");
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  }
  WriteProject();
  // Slow units (a large function to optimize), started together, so that
  // both builds look up and compile the same units at the same time.
  std::string heavy = "static inline int heavy(int x) {\n";
  for (int i = 0; i < 3000; ++i) heavy += "  x = x * " + std::to_string(i % 7 + 3) + " + (x >> " + std::to_string(i % 5 + 1) + ");\n";
  heavy += "  return x;\n}\n";
  test::WriteFile(src() + "/include/leaf.h", "#define LEAF 21\n" + heavy);
  for (const char* f : {"c.c", "lib/d.c"})
    test::WriteFile(src() + "/" + f, std::string("#include \"common.h\"\n#include \"leaf.h\"\nint unit_") +
                                         (f[0] == 'c' ? "c" : "d") + "(void) { return heavy(3) & 7; }\n");
  // Whether the two compile one unit at the same moment is still the
  // scheduler's choice: each round is a new project (a new scope: every key
  // is new), until a round in which some unit was compiled by both.
  constexpr int kRounds = 4;
  std::string project;
  bool raced = false;
  for (int round = 0; round < kRounds && !raced; ++round) {
    project = "race" + std::to_string(round);
    ASSERT_EQ(Kiln({"projects", "create", project}).exit_code, 0);
    ASSERT_EQ(Kiln({"clusters", "map", "default", project}).exit_code, 0);
    std::vector<int64_t> jobs;
    for (const char* pool : {"pool=a", "pool=b"}) {
      auto r = Kiln({"submit", "--image", img, "--input", src(), "--no-gitignore", "--no-cache", "--detach",
                     "--project", project, "--require", pool, "--", "sh", "-c", "make -j2 app"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      jobs.push_back(std::stoll(r.out));
    }
    ASSERT_TRUE(AllEnded(180s));
    for (int64_t j : jobs) ASSERT_EQ(Q("SELECT status FROM build_jobs WHERE id = " + std::to_string(j)), "succeeded");
    int compiled = Stat(jobs[0], "misses") + Stat(jobs[1], "misses");
    EXPECT_GE(compiled, 5) << "every unit compiled at least once";
    const std::string scope = " WHERE scope = 'project:" + project + "'";
    EXPECT_EQ(Q("SELECT count(*) FROM compile_results" + scope), "5") << "one result per translation unit";
    EXPECT_EQ(Q("SELECT count(*) FROM compile_manifests" + scope), "5") << "one manifest per translation unit";
    raced = compiled > 5;
    if (raced) std::printf("both builds compiled %d units at once in round %d\n", compiled - 5, round + 1);
  }
  ASSERT_TRUE(raced) << "in " << kRounds << " rounds no unit was compiled by both builds at once";
  int64_t third = Build(img, {}, project);
  EXPECT_EQ(Missed(third), "");
  auto served = Artifacts();
  Build(img, {"--no-compile-cache"}, project);
  EXPECT_EQ(Artifacts(), served) << "the entry left is valid";
}

TEST_F(CompileCache, AControllerDownMidBuildCostsTheCacheNotTheBuild) {
  // The controller dies after the build's first compile; the rest of the
  // build runs while nothing answers the worker's lookups and stores. It
  // must finish (compiling without the cache), be adopted by the restarted
  // controller, reach the waiting `kiln submit`, and leave the cache usable.
  StartController(UnixAddress("controller"));
  StartWorker(0, 2);
  const std::string img = Toolchain();
  WriteProject();
  Build(img, {"--no-compile-cache"});
  const auto reference = Artifacts();
  ASSERT_EQ(reference.size(), 11u);

  // Gated between the first object and the rest: `go` appears in the job's
  // directory (its /src) once the controller is dead.
  test::CommandResult submit;
  std::thread cli([&] {
    fs::remove_all(outputs_dir());
    submit = Kiln({"submit", "--image", img, "--input", src(), "--no-gitignore", "--no-cache", "--output", "app",
                   "--output", "out", "--outputs-dir", outputs_dir(), "--", "sh", "-c",
                   "make out/a.o && while [ ! -e go ]; do sleep 0.05; done && make -j2 app && touch finished"},
                  180s);
  });
  std::string job, job_dir;
  bool gated = test::WaitFor(
      [&] {
        job = Q("SELECT coalesce(max(id)::text, '') FROM build_jobs WHERE status = 'running'");
        job_dir = dir_.path() + "/w0/jobs/" + job + "-1/src";  // the checkout
        return !job.empty() && fs::exists(job_dir + "/out/a.o");
      },
      60s);
  if (gated) {
    controllers_[0]->Signal(SIGKILL);
    controllers_[0]->Wait(5s);
    test::WriteFile(job_dir + "/go", "");
    EXPECT_TRUE(test::WaitFor([&] { return fs::exists(job_dir + "/finished"); }, 20s))
        << "the build did not finish while the controller was down";
    RestartController(0);
  }
  cli.join();
  ASSERT_TRUE(gated) << "the build never compiled its first unit";
  EXPECT_EQ(submit.exit_code, 0) << submit.err << submit.out;
  EXPECT_NE(submit.err.find("kiln: reconnected to the controller"), std::string::npos) << submit.err;
  EXPECT_EQ(Q("SELECT status || ' ' || attempt FROM build_jobs WHERE id = " + job), "succeeded 1")
      << "the finished job was adopted, not run again";
  EXPECT_EQ(Artifacts(), reference) << "compiling without the cache changes nothing";

  // The cache after the outage: what was stored is valid, and it fills again.
  Build(img);
  EXPECT_EQ(Artifacts(), reference);
  int64_t again = Build(img);
  EXPECT_EQ(Missed(again), "");
  EXPECT_EQ(Hits(again), 5);
  EXPECT_EQ(Artifacts(), reference);
}

TEST_F(CompileCache, AWorkerThatRemembersAnOlderAnswerStillFindsAnotherWorkersEntry) {
  StartController();
  StartWorker(0, 1, {"--label", "pool=a"});
  StartWorker(0, 1, {"--label", "pool=b"});
  const std::string img = Toolchain();
  WriteProject();
  EXPECT_EQ(Missed(Build(img, {"--require", "pool=a"})), "a.c b.c c.c lib/d.c main.c");
  EXPECT_EQ(Hits(Build(img, {"--require", "pool=a"})), 5) << "worker a remembers these lookups now";
  test::WriteFile(src() + "/include/leaf.h", "#define LEAF 7\n");
  EXPECT_EQ(Missed(Build(img, {"--require", "pool=b"})), "a.c b.c") << "b compiles and stores the new units";
  // a's memory holds manifests that no longer match for a.c and b.c: it
  // must ask the controller, which has b's.
  int64_t j = Build(img, {"--require", "pool=a"});
  EXPECT_EQ(Missed(j), "");
  EXPECT_EQ(Stat(j, "hits"), 5) << "direct hits: b's manifests were found, not just its results";
}

TEST_F(CompileCache, WhatTheWrapperDoesNotUnderstandCompilesAsAskedAndIsCounted) {
  Up();
  const std::string img = Toolchain();
  WriteProject();
  test::WriteFile(src() + "/asm.S", ".globl unit_asm\nunit_asm:\n  mov $7, %eax\n  ret\n");
  const std::string script =
      "set -e; mkdir -p out; cc -E c.c -Iinclude -o out/c.i; cc -c asm.S -o out/asm.o;"
      " cc -c -Iinclude a.c b.c; cc -c -Iinclude -fdump-tree-original c.c -o out/c.o;"
      " cc -c -Iinclude -DMODE='\"x\"' main.c -o out/main.o; cc -c -Iinclude lib/d.c -o out/d.o;"
      " cc -o app out/main.o a.o b.o out/c.o out/d.o; ./app; grep -q unit_c out/c.i";
  int64_t j = Build(img, {}, "default", script);
  EXPECT_NE(last_log_.find("hello 42 43 3 4 x"), std::string::npos) << last_log_;
  EXPECT_EQ(Stat(j, "fallbacks"), 5);
  EXPECT_EQ(Stat(j, "misses"), 2) << "main.c and lib/d.c";
  // (Each reason once; in no promised order: the invocations report to the
  // worker on connections of their own, and CI saw two orders.)
  EXPECT_EQ(Q("SELECT string_agg(reason, ',' ORDER BY reason) FROM compile_events WHERE job_id = " + std::to_string(j) +
              " AND outcome = 'fallback'"),
            "assembler source,linking,preprocessing only,several source files,unsupported option");
  // Again: the understood ones hit; the others run again, still correct.
  int64_t again = Build(img, {}, "default", script);
  EXPECT_NE(last_log_.find("hello 42 43 3 4 x"), std::string::npos) << last_log_;
  EXPECT_EQ(Stat(again, "hits"), 2);
  EXPECT_EQ(Stat(again, "fallbacks"), 5);
  // A failing compile is never cached, and fails as it would without kiln-cc.
  test::WriteFile(src() + "/c.c", "int broken( {\n");
  std::vector<std::string> args{"submit", "--image", img, "--input", src(), "--no-gitignore", "--no-cache", "--",
                                "cc", "-c", "c.c"};
  std::vector<std::string> plain_args = args;
  plain_args.insert(plain_args.begin() + 1, "--no-compile-cache");
  auto without = Kiln(plain_args);
  ASSERT_EQ(without.exit_code, 1) << without.err;
  ASSERT_NE(without.out.find("c.c:1:"), std::string::npos) << "the compiler's diagnostic: " << without.out;
  for (int i = 0; i < 2; ++i) {
    auto r = Kiln(args);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(r.out, without.out) << "the compiler's own diagnostic, as without kiln-cc";
    EXPECT_EQ(Stat(std::stoll(Q("SELECT max(id) FROM build_jobs")), "failed"), 1);
  }
  EXPECT_EQ(Q("SELECT count(*) FROM compile_results WHERE object_size >= 0"), "2");
  // Only compilers the image has are on PATH: kiln-cc never invents one.
  // (The toolchain image has gcc and g++, and no clang.)
  auto which = Run(img, {}, "ls /kiln/bin; command -v gcc; command -v g++; command -v clang || echo no clang");
  EXPECT_EQ(which.out,
            "c++\ncc\ng++\ng++-12\ngcc\ngcc-12\nkiln-cc\nx86_64-linux-gnu-g++\nx86_64-linux-gnu-g++-12\n"
            "x86_64-linux-gnu-gcc\nx86_64-linux-gnu-gcc-12\n/kiln/bin/gcc\n/kiln/bin/g++\nno clang\n");
  auto plain = Run(img, {"--no-compile-cache"}, "command -v gcc; test ! -e /kiln/run/cc.sock && echo no socket");
  EXPECT_EQ(plain.out, "/usr/bin/gcc\nno socket\n");
}

TEST_F(CompileCache, EntriesServeOnlyTheirProjectUnlessProjectsShareAScope) {
  Up();
  const std::string img = Toolchain();
  WriteProject();
  for (const char* p : {"alpha", "beta", "gamma", "delta"}) {
    std::string conf = std::string(p) == "delta" ? R"({"compile_cache": false})" : "{}";
    ASSERT_EQ(Kiln({"projects", "create", p, "--config", conf}).exit_code, 0);
    ASSERT_EQ(Kiln({"clusters", "map", "default", p}).exit_code, 0);
  }
  // beta and gamma share a scope an admin created listing them.
  ASSERT_EQ(Kiln({"cache", "scopes", "set", "trusted", "--project", "beta", "--project", "gamma"}).exit_code, 0);
  for (const char* p : {"beta", "gamma"}) {
    ASSERT_EQ(Kiln({"projects", "config", "set", p, R"({"cache_scope": "trusted"})"}).exit_code, 0);
    ASSERT_TRUE(test::WaitFor(
        [&] {
          return Kiln({"cache", "stats", "--project", p}).out.find("(scope shared:trusted)") != std::string::npos;
        },
        10s))
        << p << " uses the scope once the controller reloaded its configuration";
  }
  EXPECT_EQ(Hits(Build(img, {}, "alpha")), 0);
  EXPECT_EQ(Hits(Build(img, {}, "beta")), 0) << "alpha's entries are alpha's";
  EXPECT_EQ(Hits(Build(img, {}, "gamma")), 5) << "gamma shares beta's scope";
  EXPECT_EQ(Hits(Build(img, {}, "alpha")), 5);
  int64_t off = Build(img, {}, "delta");
  EXPECT_EQ(Q("SELECT count(*) FROM compile_stats WHERE job_id = " + std::to_string(off)), "0")
      << "the project turned it off";
}

// Speaks the wrapper's protocol on a job's socket, as a hostile build could.
class Socket {
 public:
  explicit Socket(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~Socket() { ::close(fd_); }
  bool ok() const { return ok_; }
  int fd() const { return fd_; }
  // The reply's error ("" when it succeeded); "closed" if the worker hung up.
  std::string Call(const cc::v1::Request& r) { return Raw(r.SerializeAsString()); }
  // The whole reply (an empty one if the worker hung up).
  cc::v1::Reply Ask(const cc::v1::Request& r) {
    cc::v1::Reply rep;
    if (!cc::WriteFrame(fd_, r.SerializeAsString()).ok()) return rep;
    auto reply = cc::ReadFrame(fd_, 64 << 20);
    if (reply.ok()) rep.ParseFromString(*reply);
    return rep;
  }
  std::string Raw(const std::string& bytes) {
    if (!cc::WriteFrame(fd_, bytes).ok()) return "closed";
    auto reply = cc::ReadFrame(fd_, 64 << 20);
    if (!reply.ok()) return "closed";
    cc::v1::Reply rep;
    if (!rep.ParseFromString(*reply)) return "unparsable reply";
    return rep.ok() ? "" : rep.error();
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
};

TEST_F(CompileCache, HostileRequestsOnTheSocketGetErrorsAndChangeNothing) {
  Up();
  const std::string img = Toolchain();
  auto r = Kiln({"submit", "--image", img, "--no-input", "--detach", "--", "sleep", "60"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string job = r.out.substr(0, r.out.find('\n'));
  ASSERT_TRUE(test::WaitFor([&] { return Q("SELECT status FROM build_jobs WHERE id = " + job) == "running"; }, 60s));
  const std::string path = dir_.path() + "/w0/cc/" + job + "-1/cc.sock";
  ASSERT_TRUE(test::WaitFor([&] { return fs::exists(path); }, 10s)) << path;
  auto blobs = [&] {
    std::set<std::string> files;
    for (const auto& e : fs::recursive_directory_iterator(dir_.path() + "/cas/blobs")) files.insert(e.path());
    return files;
  };
  const auto blobs_before = blobs();

  Socket s(path);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s.Raw("\xff\xfenot a protobuf"), "unreadable request");
  cc::v1::Request report;
  report.mutable_report()->set_outcome("pwned");
  EXPECT_NE(s.Call(report).find("unknown outcome"), std::string::npos);
  cc::v1::Request fetch;
  fetch.mutable_fetch()->set_hash("../../etc/passwd");
  EXPECT_EQ(s.Call(fetch), "object: digest hash '../../etc/passwd' is not 64 lowercase hex digits");
  cc::v1::Request lookup;
  lookup.mutable_lookup()->set_key("'; DROP TABLE compile_results; --");
  EXPECT_NE(s.Call(lookup).find("64 lowercase hex"), std::string::npos);

  // A store whose object is not what its digest says.
  cc::v1::Request store;
  auto* st = store.mutable_store();
  st->set_key(std::string(64, 'a'));
  st->mutable_result()->set_key(std::string(64, 'b'));
  st->set_object("\x7f" "ELF not really");
  cas::Digest wrong = cas::DigestOf(std::string_view("something else"));
  st->mutable_result()->set_object_hash(wrong.hash);
  st->mutable_result()->set_object_size(wrong.size);
  EXPECT_NE(s.Call(store).find("does not match its digest"), std::string::npos);
  // A right digest, but dependencies that are no paths at all.
  cas::Digest right = cas::DigestOf(st->object());
  st->mutable_result()->set_object_hash(right.hash);
  st->mutable_result()->set_object_size(right.size);
  (*st->mutable_deps())["relative/x.h"] = "f:" + right.Key();
  EXPECT_NE(s.Call(store).find("is not absolute"), std::string::npos);
  st->mutable_deps()->clear();
  (*st->mutable_deps())["/src/x.h"] = "f:zz";
  EXPECT_NE(s.Call(store).find("none of f:"), std::string::npos);
  EXPECT_EQ(s.Raw(std::string(1u << 20, 'x')), "unknown request") << "1 MiB of unknown fields";
  // A frame announcing 4 GiB: the worker hangs up rather than allocate it.
  Socket big(path);
  ASSERT_TRUE(big.ok());
  const char huge[4] = {'\xff', '\xff', '\xff', '\xff'};
  ASSERT_EQ(::write(big.fd(), huge, 4), 4);
  char c;
  EXPECT_EQ(::read(big.fd(), &c, 1), 0) << "closed";

  EXPECT_EQ(Q("SELECT count(*) FROM compile_results"), "0");
  EXPECT_EQ(Q("SELECT count(*) FROM compile_manifests"), "0");
  EXPECT_EQ(blobs(), blobs_before) << "nothing reached CAS";
  // The worker is fine and still serves: a good request on a new connection works.
  Socket again(path);
  cc::v1::Request hello;
  hello.mutable_hello()->set_compiler("/usr/bin/gcc");
  EXPECT_EQ(again.Call(hello), "");
  EXPECT_EQ(Kiln({"cancel", job}).exit_code, 0);
  EXPECT_EQ(Q("SELECT status FROM build_jobs WHERE id = " + job), "cancelled");
  EXPECT_FALSE(fs::exists(path)) << "the socket goes with the job";
}

// What kiln-cc worked out about a compiler (asking it with -v) serves the
// later jobs of the same project in the same image while the compiler file
// is the same; never another project's jobs (kiln-cc's word is untrusted).
TEST_F(CompileCache, ACompilersIdentityServesLaterJobsOfItsProjectOnly) {
  Up();
  const std::string img = Toolchain();
  ASSERT_EQ(Kiln({"projects", "create", "other"}).exit_code, 0);
  ASSERT_EQ(Kiln({"clusters", "map", "default", "other"}).exit_code, 0);
  // Runs `sleep 60` in project `project`, speaks to its socket, cancels it.
  auto in_job = [&](const std::string& project, const std::function<void(Socket&)>& talk) {
    auto r = Kiln({"submit", "--image", img, "--no-input", "--detach", "--project", project, "--", "sleep", "60"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string job = r.out.substr(0, r.out.find('\n'));
    ASSERT_TRUE(test::WaitFor([&] { return Q("SELECT status FROM build_jobs WHERE id = " + job) == "running"; }, 60s));
    const std::string path = dir_.path() + "/w0/cc/" + job + "-1/cc.sock";
    ASSERT_TRUE(test::WaitFor([&] { return fs::exists(path); }, 10s)) << path;
    Socket s(path);
    ASSERT_TRUE(s.ok());
    talk(s);
    EXPECT_EQ(Kiln({"cancel", job}).exit_code, 0);
  };
  auto hello = [](int64_t ino) {
    cc::v1::Request r;
    auto* h = r.mutable_hello();
    h->set_compiler("/usr/bin/gcc");
    h->mutable_stat()->set_dev(1);
    h->mutable_stat()->set_ino(ino);
    h->mutable_stat()->set_size(1000);
    h->mutable_stat()->set_mtime_ns(5);
    return r;
  };
  const std::string identity(64, 'c');
  in_job("default", [&](Socket& s) {
    EXPECT_EQ(s.Ask(hello(7)).hello().identity(), "") << "nothing known yet";
    cc::v1::Request set;
    auto* id = set.mutable_set_identity();
    id->set_compiler("/usr/bin/gcc");
    *id->mutable_stat() = hello(7).hello().stat();
    id->set_identity(identity);
    id->add_builtin_dirs("/usr/include");
    EXPECT_EQ(s.Call(set), "");
  });
  in_job("default", [&](Socket& s) {
    auto rep = s.Ask(hello(7));
    EXPECT_EQ(rep.hello().identity(), identity) << "a later job of the project";
    ASSERT_EQ(rep.hello().builtin_dirs_size(), 1);
    EXPECT_EQ(rep.hello().builtin_dirs(0), "/usr/include");
    EXPECT_EQ(s.Ask(hello(8)).hello().identity(), "") << "another compiler file at that path";
  });
  in_job("other", [&](Socket& s) { EXPECT_EQ(s.Ask(hello(7)).hello().identity(), "") << "another project"; });
}

}  // namespace
}  // namespace kiln
