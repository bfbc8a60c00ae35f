// Real trees through the farm: three small projects from Debian's source
// packages (fetched at test time by tests/debian-source.sh, cached under
// /var/tmp/kiln-corpus-src, never committed), built as their own build
// systems build them in the toolchain image, driven through the kiln CLI:
//   zlib     ./configure + make; configure rewrites Makefile and zconf.h,
//            both shipped in the tarball
//   lua5.4   plain make, recursive
//   libebml  CMake (Ninja), C++
// For each: a cold build; the identical tree again (the action cache); a
// fresh checkout with one source file changed (that unit alone compiles); a
// flag change (every unit compiles); a header change (exactly the units that
// include it compile); and the outputs byte-identical to a build with both
// caches off. What compiled is what the API says (`kiln why --json`).
// Skipped when the sources cannot be fetched (no network or apt sources).

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "harness/container_farm.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Units = std::set<std::string>;

struct Project {
  std::string package;      // Debian source package (suite bookworm)
  std::string build;        // sh -c script at the tree's root; compiler flags take $KILN_CORPUS_FLAGS
  std::vector<std::string> outputs;
  std::string compile_dir;  // where the compiler runs (relative sources in events are relative to it)
  std::string source;       // a translation unit to change
  std::string header;       // a header to change
  // A built program (and its arguments) run on this host, Debian 12 as the
  // image, and what it must print: the farm's build works, not only exits 0.
  std::vector<std::string> check;
  std::string check_prints;
};

// What a job compiled, from its compile events: the tree's relative paths of
// the units that missed and the reasons given, and the job's hits. Sources
// outside the tree (configure and CMake probes, written at build time) are
// left out.
struct Compiled {
  Units units;
  std::set<std::string> reasons;
  int hits = 0;
};

class Corpus : public ContainerFarm {
 protected:
  // The checkout of the project being built (checkout_: "tree", or another
  // one), and where build n's outputs go.
  std::string src() const { return dir_.path() + "/" + package_ + "/" + checkout_; }
  std::string out_dir(int n) const { return dir_.path() + "/" + package_ + "/out" + std::to_string(n); }

  // Copies the package's pristine tree into src() (a checkout of its own the
  // test may edit); false, with the reason in *why, when it cannot be fetched.
  bool Checkout(const Project& p, std::string* why) {
    const char* env = std::getenv("KILN_CORPUS_SRC_DIR");
    std::string cache = env && *env ? env : "/var/tmp/kiln-corpus-src";
    auto r = test::RunCommand(
        {"/bin/bash", std::string(KILN_SOURCE_DIR) + "/tests/debian-source.sh", p.package, cache}, 300s);
    if (r.exit_code != 0) {
      *why = "tests/debian-source.sh " + p.package + " failed (exit " + std::to_string(r.exit_code) + "): " + r.err;
      return false;
    }
    std::string tree = r.out.substr(0, r.out.find('\n'));
    fs::remove_all(src());
    fs::create_directories(fs::path(src()).parent_path());
    fs::copy(tree, src(), fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    return true;
  }

  // kiln submit of the project's build, followed to its end as a user runs
  // it; outputs into out_dir(n). Returns the job id (0 if the CLI named
  // none) and the CLI's result in *r.
  int64_t Build(const Project& p, int n, std::vector<std::string> extra, test::CommandResult* r) {
    std::vector<std::string> args{"submit",        "--project", p.package,  "--image", image_, "--input", src(),
                                  "--no-gitignore", "--outputs-dir", out_dir(n)};
    for (const auto& o : p.outputs) args.insert(args.end(), {"--output", o});
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--", "sh", "-c", p.build});
    fs::remove_all(out_dir(n));
    auto t0 = std::chrono::steady_clock::now();
    *r = Kiln(args, 300s);
    std::smatch m;
    static const std::regex job(R"(kiln: job ([0-9]+) )");
    int64_t id = std::regex_search(r->err, m, job) ? std::stoll(m[1].str()) : 0;
    std::chrono::duration<double> took = std::chrono::steady_clock::now() - t0;
    std::fprintf(stderr, "corpus: %s build %d (job %lld): exit %d in %.2f s\n", p.package.c_str(), n,
                 static_cast<long long>(id), r->exit_code, took.count());
    return id;
  }

  // Every regular file under dir, by relative path.
  static std::map<std::string, std::string> Files(const std::string& dir) {
    std::map<std::string, std::string> m;
    for (const auto& e : fs::recursive_directory_iterator(dir))
      if (e.is_regular_file()) m[fs::relative(e.path(), dir).string()] = test::ReadFile(e.path());
    return m;
  }

  json Why(int64_t id) {
    auto w = Kiln({"--json", "why", std::to_string(id), "--max-paths", "10000"});
    EXPECT_EQ(w.exit_code, 0) << w.err;
    return json::parse(w.out, nullptr, false);
  }

  // The tree's path of a source as the compiler was given it.
  std::string TreePath(const Project& p, const std::string& source) {
    fs::path s(source);
    if (s.is_absolute()) {
      auto rel = s.lexically_relative("/src");
      return rel.empty() || *rel.begin() == ".." ? "" : rel.lexically_normal().string();
    }
    return (fs::path(p.compile_dir) / s).lexically_normal().string();
  }

  Compiled Misses(const Project& p, const json& why) {
    Compiled c;
    int probes = 0;
    if (why.contains("compile")) {
      c.hits = why["compile"].value("hits", 0) + why["compile"].value("hits_preprocessed", 0);
    }
    for (const auto& e : why.value("compile_events", json::array())) {
      if (e.value("outcome", "") != "miss") continue;
      std::string path = TreePath(p, e.value("source", ""));
      if (path.empty() || !fs::is_regular_file(src() + "/" + path)) {  // a probe, not the tree's
        ++probes;
        continue;
      }
      c.units.insert(path);
      c.reasons.insert(e.value("reason", ""));
    }
    std::fprintf(stderr, "corpus:   %zu of the tree's units compiled (%s), %d hits, %d probes compiled\n",
                 c.units.size(), Join(c.units).c_str(), c.hits, probes);
    return c;
  }

  // The tree's files that include `header` (by its file name, in quotes or
  // angle brackets), directly or through other headers of the tree.
  Units Includers(const std::string& header) {
    static const std::regex inc(R"re(^\s*#\s*include\s*["<]([^">]+)[">])re");
    std::map<std::string, std::set<std::string>> includes;  // file -> included file names
    for (const auto& e : fs::recursive_directory_iterator(src())) {
      if (!e.is_regular_file()) continue;
      auto ext = e.path().extension().string();
      if (ext != ".c" && ext != ".h" && ext != ".cpp" && ext != ".hpp") continue;
      std::ifstream in(e.path());
      std::string line;
      auto& set = includes[fs::relative(e.path(), src()).string()];
      std::smatch m;
      while (std::getline(in, line))
        if (std::regex_search(line, m, inc)) set.insert(fs::path(m[1].str()).filename().string());
    }
    std::set<std::string> names{fs::path(header).filename().string()};
    Units files;
    for (bool grew = true; grew;) {
      grew = false;
      for (const auto& [file, incs] : includes) {
        if (files.count(file)) continue;
        for (const auto& n : incs)
          if (names.count(n)) {
            files.insert(file);
            names.insert(fs::path(file).filename().string());
            grew = true;
            break;
          }
      }
    }
    return files;
  }

  static std::string Join(const Units& u) {
    std::string s;
    for (const auto& x : u) s += (s.empty() ? "" : " ") + x;
    return s;
  }

  void Append(const std::string& rel, const std::string& text) {
    std::ofstream(src() + "/" + rel, std::ios::app) << text;
  }

  // Builds one project through every step; returns at its first fatal failure.
  void Run(const Project& p) {
    SCOPED_TRACE(p.package);
    package_ = p.package;  // checked out by the test
    checkout_ = "tree";
    const std::string pristine_header = test::ReadFile(src() + "/" + p.header);
    test::CommandResult r;

    // Cold: every unit of the tree compiles.
    int64_t cold = Build(p, 0, {}, &r);
    ASSERT_EQ(r.exit_code, 0) << "cold build of " << p.package << " failed:\n" << r.out << r.err;
    auto all = Misses(p, Why(cold));
    ASSERT_GT(all.units.size(), 3u) << "the cold build compiled too few of the tree's units: " << Join(all.units);
    EXPECT_EQ(all.reasons, std::set<std::string>{"new source"});
    EXPECT_TRUE(all.units.count(p.source)) << p.source << " is not among " << Join(all.units);
    auto cold_files = Files(out_dir(0));
    ASSERT_EQ(cold_files.size(), p.outputs.size());
    if (!p.check.empty()) {
      std::vector<std::string> check{out_dir(0) + "/" + p.check[0]};
      check.insert(check.end(), p.check.begin() + 1, p.check.end());
      auto ran = test::RunCommand(check, 30s, {}, dir_.path() + "/" + package_);  // zlib's writes foo.gz
      EXPECT_EQ(ran.exit_code, 0) << ran.err;
      EXPECT_NE(ran.out.find(p.check_prints), std::string::npos) << ran.out;
    }

    // The identical tree again: served from the action cache, same bytes.
    Build(p, 1, {}, &r);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("succeeded from the action cache (the result of job " + std::to_string(cold)),
              std::string::npos)
        << r.err;
    EXPECT_EQ(Files(out_dir(1)), cold_files);

    // A fresh checkout (another directory) with one source file changed:
    // that unit alone compiles.
    const std::string tree = src();
    checkout_ = "fresh";
    fs::copy(tree, src(), fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    Append(p.source, "\nint kiln_corpus_source_marker(void) { return 1; }\n");
    int64_t one = Build(p, 2, {}, &r);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    auto one_c = Misses(p, Why(one));
    EXPECT_EQ(Join(one_c.units), p.source);
    EXPECT_EQ(one_c.reasons, std::set<std::string>{"source changed"});
    EXPECT_GE(one_c.hits, static_cast<int>(all.units.size()) - 1);
    checkout_ = "tree";

    // A flag change: every unit compiles again.
    int64_t flag = Build(p, 3, {"--env", "KILN_CORPUS_FLAGS=-DKILN_CORPUS_FLAG=1"}, &r);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    auto flag_c = Misses(p, Why(flag));
    EXPECT_EQ(Join(flag_c.units), Join(all.units));
    EXPECT_EQ(flag_c.reasons, std::set<std::string>{"arguments changed"});

    // A header change: exactly the units that include it (directly or not).
    Units expected;
    for (const auto& f : Includers(p.header))
      if (all.units.count(f)) expected.insert(f);
    ASSERT_FALSE(expected.empty()) << "no compiled unit includes " << p.header;
    ASSERT_LT(expected.size(), all.units.size()) << "pick a header that not every unit includes";
    Append(p.header, "\nextern int kiln_corpus_header_marker;\n");
    int64_t header = Build(p, 4, {}, &r);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    auto header_c = Misses(p, Why(header));
    EXPECT_EQ(Join(header_c.units), Join(expected));
    EXPECT_EQ(header_c.reasons, std::set<std::string>{"header changed"});

    // The same tree with both caches off: the same bytes as the build that
    // took most of its objects from the compile cache.
    int64_t clean = Build(p, 5, {"--no-cache", "--no-compile-cache"}, &r);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_FALSE(Why(clean).contains("compile")) << "the compile cache was off";
    EXPECT_EQ(Files(out_dir(5)), Files(out_dir(4)));
    test::WriteFile(src() + "/" + p.header, pristine_header);
  }

  std::string image_, package_, checkout_ = "tree";
};

const Project kZlib{
    .package = "zlib",
    .build = "CFLAGS=\"-O2 $KILN_CORPUS_FLAGS\" ./configure --static && make -j2 libz.a example minigzip",
    .outputs = {"libz.a", "example", "minigzip"},
    .compile_dir = "",
    .source = "adler32.c",
    .header = "inftrees.h",
    .check = {"example"},  // zlib's own test of deflate, inflate and gz files
    .check_prints = "inflate with dictionary: hello, hello!"};

const Project kLua{
    .package = "lua5.4",
    .build = "make -j2 linux MYCFLAGS=\"$KILN_CORPUS_FLAGS\"",
    .outputs = {"src/lua", "src/luac", "src/liblua.a"},
    .compile_dir = "src",
    .source = "src/lstrlib.c",
    .header = "src/lundump.h",
    .check = {"src/lua", "-e", "print(string.format('%d', 6 * 7))"},
    .check_prints = "42\n"};

const Project kLibebml{
    .package = "libebml",
    .build = "cmake -S . -B _build -G Ninja -DBUILD_SHARED_LIBS=OFF -DCMAKE_BUILD_TYPE=Release "
             "-DCMAKE_CXX_FLAGS=\"$KILN_CORPUS_FLAGS\" && ninja -C _build",
    .outputs = {"_build/libebml.a"},
    .compile_dir = "_build",
    .source = "src/EbmlVoid.cpp",
    .header = "ebml/EbmlCrc32.h",
    .check = {},  // a library: its bytes are the check
    .check_prints = ""};

// One farm for the three (a farm with the toolchain image costs about a
// minute to start and remove on 2 cores); each project in its own kiln
// project, so that its caches and `kiln why` see only its own builds.
TEST_F(Corpus, RealProjectsBuildAsTheyDoLocallyAndNeverRepeatWork) {
  std::string why_not;
  for (const Project* p : {&kLua, &kLibebml, &kZlib}) {
    package_ = p->package;
    if (!Checkout(*p, &why_not)) {
      // CI sets KILN_CORPUS_REQUIRED: there a missing source is a failure.
      if (std::getenv("KILN_CORPUS_REQUIRED") != nullptr) FAIL() << why_not;
      GTEST_SKIP() << why_not;
    }
  }
  auto t0 = std::chrono::steady_clock::now();
  Up();
  image_ = Toolchain();
  std::chrono::duration<double> took = std::chrono::steady_clock::now() - t0;
  std::fprintf(stderr, "corpus: farm up and toolchain image imported in %.2f s\n", took.count());
  for (const Project* p : {&kLua, &kLibebml, &kZlib}) {
    auto created = Kiln({"projects", "create", p->package});
    ASSERT_EQ(created.exit_code, 0) << created.err;
    auto mapped = Kiln({"clusters", "map", "default", p->package});
    ASSERT_EQ(mapped.exit_code, 0) << mapped.err;
    Run(*p);
  }
}

}  // namespace
}  // namespace kiln
