// The compile cache's pure parts: which command lines are cached, the keys,
// dependency manifests and miss reasons.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <set>

#include "cas/digest.h"
#include "cc/code.h"
#include "cc/command.h"
#include "cc/deps.h"
#include "cc/keys.h"
#include "cc/process.h"
#include "cc/reason.h"
#include "cc/wrapper.h"
#include "harness/harness.h"

namespace kiln::cc {
namespace {

namespace fs = std::filesystem;

CompileCommand C(std::vector<std::string> a) { return ClassifyCompile(a); }

TEST(ClassifyCompile, OneTranslationUnitToAnObjectIsCacheable) {
  auto c = C({"-O2", "-Wall", "-I../include", "-DX=1", "-c", "-o", "obj/a.o", "src/a.c"});
  ASSERT_TRUE(c.cacheable) << c.reason << " " << c.detail;
  EXPECT_EQ(c.source, "src/a.c");
  EXPECT_EQ(c.output, "obj/a.o");
  EXPECT_EQ(c.lang, Language::kC);
  EXPECT_EQ(c.depfile, "");
  EXPECT_EQ(c.dirs, std::vector<std::string>{"../include"});
  EXPECT_EQ(c.preprocess_args, (std::vector<std::string>{"-O2", "-Wall", "-I../include", "-DX=1", "src/a.c", "-E"}));

  auto d = C({"-c", "x.cpp", "-MMD", "-MP", "-MF", ".deps/x.Po", "-MT", "x.o", "-isystem", "sys", "-iquote", "q"});
  ASSERT_TRUE(d.cacheable) << d.reason;
  EXPECT_EQ(d.lang, Language::kCxx);
  EXPECT_EQ(d.output, "x.o") << "no -o: the source's base name";
  EXPECT_EQ(d.depfile, ".deps/x.Po");
  EXPECT_EQ(d.preprocess_args, (std::vector<std::string>{"x.cpp", "-isystem", "sys", "-iquote", "q", "-E"}));
  EXPECT_EQ(SearchOrder(d, {"/usr/include"}), (std::vector<std::string>{"q", "sys", "/usr/include"}));
  EXPECT_EQ(C({"-c", "-MD", "-o", "out/y.o", "y.c"}).depfile, "out/y.d");
  EXPECT_EQ(C({"-c", "-MD", "dir/z.c"}).depfile, "z.d");
  EXPECT_TRUE(C({"-c", "-x", "c", "weird.txt"}).cacheable);
}

TEST(ClassifyCompile, AnythingElseFallsBackWithAReason) {
  struct Case {
    std::vector<std::string> args;
    std::string reason;
  };
  std::vector<Case> cases = {
      {{"-o", "app", "a.o", "b.o"}, "linking"},
      {{"-o", "app", "main.c"}, "linking"},
      {{"-E", "a.c"}, "preprocessing only"},
      {{"-S", "a.c"}, "assembly output"},
      {{"-M", "a.c"}, "dependency listing only"},
      {{"-c", "a.c", "b.c"}, "several source files"},
      {{"-c", "-"}, "reads standard input"},
      {{"-c", "a.c", "-o", "-"}, "writes to standard output"},
      {{"-c", "@args.rsp"}, "response file"},
      {{"-c", "a.s"}, "assembler source"},
      {{"-c", "a.i"}, "already preprocessed"},
      {{"-c", "-fprofile-generate", "a.c"}, "unsupported option"},
      {{"-c", "--coverage", "a.c"}, "unsupported option"},
      {{"-c", "-gsplit-dwarf", "a.c"}, "unsupported option"},
      {{"-c", "-save-temps", "a.c"}, "unsupported option"},
      {{"-c", "-Wp,-MD,x.d", "a.c"}, "preprocessor options passed through"},
      {{"-c", "-march=native", "a.c"}, "tuned to the build host's CPU"},
      {{"-c", "-frobnicate-unknown", "a.c"}, ""},  // unknown -f: accepted as an argument (in the key)
      {{"-c", "--totally-unknown", "a.c"}, "unsupported option"},
      {{"-c", "-B/opt/bin", "a.c"}, "changes which compiler programs run"},
      {{"-c", "-o"}, "incomplete command"},
      {{"--version"}, "information query"},
      {{"-c", "x.c", "other.o"}, "linker input"},
      {{"-c"}, "no source file"},
  };
  for (const auto& c : cases) {
    auto r = ClassifyCompile(c.args);
    if (c.reason.empty()) {
      EXPECT_TRUE(r.cacheable) << c.args[1] << ": " << r.reason;
      continue;
    }
    EXPECT_FALSE(r.cacheable) << c.args.back();
    EXPECT_EQ(r.reason, c.reason) << "for " << c.args[0] << " " << (c.args.size() > 1 ? c.args[1] : "");
  }
}

// Found by tests/fuzz (cc_command): an empty argument was taken for the
// source file, and an empty -o or -MF value for the file to write, so such
// a command was cacheable with source "" or output "". gcc refuses each.
TEST(ClassifyCompile, AnEmptyFileNameIsNotCacheable) {
  auto empty_source = ClassifyCompile({"-c", "-x", "cc", "-x", "c", ""});
  EXPECT_FALSE(empty_source.cacheable);
  EXPECT_EQ(empty_source.reason, "empty argument");
  auto empty_output = ClassifyCompile({"-c", "foo.c", "-o", "", "-foo.o"});
  EXPECT_FALSE(empty_output.cacheable);
  EXPECT_EQ(empty_output.reason, "empty file name");
  EXPECT_EQ(empty_output.detail, "-o \"\"");
  auto empty_depfile = ClassifyCompile({"-c", "-MD", "-MF", "", "a.c"});
  EXPECT_FALSE(empty_depfile.cacheable);
  EXPECT_EQ(empty_depfile.reason, "empty file name");
  EXPECT_TRUE(ClassifyCompile({"-c", "-MD", "-MF", "a.d", "a.c", "-o", "a.o"}).cacheable);
}

TEST(LineMarkers, FilesOfThePreprocessedOutputInOrderWhateverTheChunks) {
  std::string out =
      "# 0 \"a.c\"\n# 0 \"<built-in>\"\n# 0 \"<command-line>\"\n# 1 \"/usr/include/stdc-predef.h\" 1 3 4\n"
      "# 1 \"/src/build//\"\n# 1 \"a.c\"\nint x;\n# 1 \"inc/q\\\"uote.h\" 1\n#pragma once\nint # 3 \"not/a/marker.h\"\n"
      "# 12 \"inc/odd\\040name.h\" 2\n# 1 \"a.c\"\n";
  for (size_t step : {out.size(), size_t{1}, size_t{7}}) {
    LineMarkerScanner s;
    for (size_t i = 0; i < out.size(); i += step) s.Feed(std::string_view(out).substr(i, step));
    EXPECT_EQ(s.files(), (std::vector<std::string>{"a.c", "/usr/include/stdc-predef.h", "inc/q\"uote.h",
                                                   "inc/odd name.h"}))
        << "chunks of " << step;
  }
}

TEST(IncludeTrace, SplitsTheHeadersFromWhatTheCompilePrintsWithoutDashH) {
  const std::set<std::string> files = {"inc/a.h", "/usr/include/stdio.h", "inc/b.h", "./inc/f.h"};
  auto exists = [&](const std::string& f) { return files.count(f) > 0; };
  const std::string diagnostics =
      "t.c: In function \u2018g\u2019:\nt.c:4:31: warning: format \u2018%d\u2019 expects argument\n"
      "    4 | int g(void) { return printf(\"%d\", 1.0); }\n      |                              ~^\n";
  const std::string late = "t.c:9:1: warning: \u2018y\u2019 may be used uninitialized\n";
  std::string err = ". inc/a.h\n.. inc/b.h\n. /usr/include/stdio.h\n" + diagnostics + ". inc/a.h\n" +
                    "Multiple include guards may be useful for:\n./inc/f.h\ninc/b.h\n" + late + "no newline at the end";
  auto t = SplitIncludeTrace(err, exists);
  EXPECT_EQ(t.files, (std::vector<std::string>{"inc/a.h", "inc/b.h", "/usr/include/stdio.h"})) << "in order, once";
  EXPECT_EQ(t.rest, diagnostics + late + "no newline at the end") << "byte for byte what -H added removed";
  EXPECT_TRUE(t.complete);
  // A line like a trace line naming no file: kept, and the trace is not trusted.
  auto odd = SplitIncludeTrace(". inc/a.h\n.. inc/with\n", exists);
  EXPECT_EQ(odd.rest, ".. inc/with\n");
  EXPECT_FALSE(odd.complete);
  // Not trace: no space after the dots, a relative path, nothing after the space.
  for (std::string line : {"..inc/a.h\n", "./inc/f.h: warning: x\n", ". \n", ".\n"}) {
    auto t2 = SplitIncludeTrace(line, exists);
    EXPECT_EQ(t2.rest, line);
    EXPECT_TRUE(t2.files.empty());
  }
}

TEST(ObjectRecordsOptions, DebugInformationLtoAndTheSwitchesSection) {
  EXPECT_FALSE(ObjectRecordsOptions({"-O2", "-Wall", "-c", "a.c"}));
  EXPECT_TRUE(ObjectRecordsOptions({"-O2", "-g", "-c", "a.c"}));
  EXPECT_TRUE(ObjectRecordsOptions({"-ggdb3", "-c", "a.c"}));
  EXPECT_FALSE(ObjectRecordsOptions({"-g", "-g0", "-c", "a.c"})) << "the last level counts";
  EXPECT_FALSE(ObjectRecordsOptions({"-g", "-gno-record-gcc-switches", "-c", "a.c"}));
  EXPECT_TRUE(ObjectRecordsOptions({"-gno-record-gcc-switches", "-g", "-grecord-gcc-switches", "-c", "a.c"}));
  EXPECT_TRUE(ObjectRecordsOptions({"-frecord-gcc-switches", "-c", "a.c"}));
  EXPECT_FALSE(ObjectRecordsOptions({"-frecord-gcc-switches", "-fno-record-gcc-switches", "-c", "a.c"}));
  EXPECT_TRUE(ObjectRecordsOptions({"-flto=auto", "-c", "a.c"}));
  EXPECT_FALSE(ObjectRecordsOptions({"-flto", "-fno-lto", "-c", "a.c"}));
}

TEST(AbsolutePath, NormalizesAndNamesTheDirectoriesADotDotLeaves) {
  std::vector<std::string> out;
  EXPECT_EQ(AbsolutePath("../../inc/./x.h", "/src/a/b", &out), "/src/inc/x.h");
  EXPECT_EQ(out, (std::vector<std::string>{"/src/a/b", "/src/a"}));
  EXPECT_EQ(AbsolutePath("/usr//include/stdio.h", "/src"), "/usr/include/stdio.h");
  EXPECT_EQ(AbsolutePath("../../..", "/src"), "/");
  EXPECT_TRUE(Under("/src/x.h", {"/tmp", "/src"}));
  EXPECT_FALSE(Under("/srcx/x.h", {"/src"}));
}

class Manifests : public ::testing::Test {
 protected:
  test::TempDir dir_;
  std::string root() const { return dir_.path(); }
  RecordOptions Opts(std::vector<std::string> search = {}) const {
    RecordOptions o;
    o.cwd = root() + "/build";
    o.writable = {root()};
    o.search = std::move(search);
    return o;
  }
};

TEST_F(Manifests, RecordedDependenciesHoldUntilAFileTheyNameChanges) {
  test::WriteFile(root() + "/build/a.c", "#include \"defs.h\"\n");
  test::WriteFile(root() + "/inc/defs.h", "#define A 1\n");
  FileHashes h;
  auto deps = RecordDeps({"a.c", "../inc/defs.h", "/usr/include/stdio.h"}, Opts(), h);
  ASSERT_TRUE(deps.ok()) << deps.status().message();
  EXPECT_EQ(deps->at(root() + "/inc/defs.h"), "f:" + cas::DigestOf(std::string_view("#define A 1\n")).Key());
  EXPECT_EQ(deps->at("/usr/include/stdio.h"), "i") << "image files are pinned by the image digest";
  EXPECT_EQ(deps->at(root() + "/build"), "d") << "the directory '..' stepped out of";
  FileHashes again;
  EXPECT_FALSE(CheckManifest(*deps, again)) << "nothing changed";

  test::WriteFile(root() + "/inc/defs.h", "#define A 2\n");
  FileHashes after;
  auto mm = CheckManifest(*deps, after);
  ASSERT_TRUE(mm);
  EXPECT_EQ(mm->path, root() + "/inc/defs.h");
  auto miss = DescribeMiss({}, mm, {});
  EXPECT_EQ(miss.reason, "header changed");
  EXPECT_EQ(miss.detail, "header " + root() + "/inc/defs.h changed from " +
                             ShortDigest(cas::DigestOf(std::string_view("#define A 1\n")).Key()) + " to " +
                             ShortDigest(cas::DigestOf(std::string_view("#define A 2\n")).Key()));

  // The directory a ".." left becomes a symlink: "../inc" would be another directory.
  test::WriteFile(root() + "/inc/defs.h", "#define A 1\n");
  fs::rename(root() + "/build", root() + "/real-build");
  fs::create_directory_symlink("real-build", root() + "/build");
  FileHashes linked;
  auto link_mm = CheckManifest(*deps, linked);
  ASSERT_TRUE(link_mm);
  EXPECT_EQ(link_mm->path, root() + "/build");
  EXPECT_EQ(DescribeMiss({}, link_mm, {}).reason, "include path changed");
}

TEST_F(Manifests, RecordedFilesAreNamedByTheirCodeToo) {
  const std::string a = root() + "/build/a.c", h = root() + "/inc/defs.h";
  test::WriteFile(a, "#include \"../inc/defs.h\"\n");
  test::WriteFile(h, "/* defs */\n#define A 1\n");
  FileHashes first;
  RecordOptions o = Opts();
  o.code = true;
  auto deps = RecordDeps({"a.c", "../inc/defs.h"}, o, first);
  ASSERT_TRUE(deps.ok()) << deps.status().message();
  const std::string code = first.Code(h);
  EXPECT_EQ(code, "c:" + cas::DigestOf(std::string_view("\x01\n#define A 1\n")).Key()) << "its code text's digest";
  EXPECT_EQ(first.Code(a), "c:" + cas::DigestOf(std::string_view("#include \"../inc/defs.h\"\n")).Key());

  test::WriteFile(h, "/* the definitions */\n#define A 1\n");
  FileHashes comment;
  auto bytes = comment.Get(h, 0, false, /*code=*/true);
  ASSERT_TRUE(bytes.ok());
  EXPECT_NE("f:" + bytes->substr(2), deps->at(h)) << "other bytes";
  EXPECT_EQ(comment.Code(h), code) << "the same code";

  test::WriteFile(h, "/* defs */\n#define A 2\n");
  FileHashes edit;
  ASSERT_TRUE(edit.Get(h, 0, false, true).ok());
  EXPECT_NE(edit.Code(h), code);
  EXPECT_EQ(edit.Code(root() + "/nothing"), "") << "never read with its code";
  ASSERT_TRUE(edit.Get(h, 0, true).ok());
  EXPECT_EQ(edit.Code(h), "") << "a reread without its code forgets the code read before";

  // No code text: the file is named by its bytes.
  test::WriteFile(h, "/* falls through */\n#define A 1\n");
  FileHashes fall;
  auto raw = fall.Get(h, 0, false, true);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(fall.Code(h), *raw);
}

TEST(PackDeps, RoundTripsAnyPathAndRefusesGarbage) {
  std::map<std::string, std::string> deps = {{"/src/a b:c.h", "f:" + std::string(64, 'a') + "/3"},
                                             {"/src/\xc3\xa9\n.h", "-"}, {"/src/x", "d"}, {"/usr/include/stdio.h", "i"}};
  auto back = UnpackDeps(PackDeps(deps));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, deps);
  EXPECT_TRUE(UnpackDeps("") && UnpackDeps("")->empty());
  for (const char* bad : {"5:/src", "x:/src1:i", "3:/ab", "99999999999:x", "2:/a"})
    EXPECT_FALSE(UnpackDeps(bad)) << bad;
}

// Found by tests/fuzz (cc_deps): a manifest kiln-cc sends was refused with
// its path and value quoted raw, control bytes and all.
TEST(PackDeps, ARefusedManifestIsQuotedEscaped) {
  Status relative = CheckManifestEntries({{"\x0e", "i"}});
  EXPECT_EQ(relative.code(), Code::kInvalidArgument);
  EXPECT_EQ(relative.message(), "dependency path '\\x0e' is not absolute");
  Status value = CheckManifestEntries({{"/src/a\nb", "f:\x1b[2J"}});
  EXPECT_EQ(value.message(), "dependency /src/a\\x0ab: value 'f:\\x1b[2J' is none of f:<hex>/<size>, i, d, -");
}

TEST_F(Manifests, AHeaderThatWouldShadowTheOneFoundMisses) {
  test::WriteFile(root() + "/build/a.c", "");
  test::WriteFile(root() + "/lib/util.h", "");
  FileHashes h;
  // -I../first -I../lib: util.h was found in the second directory.
  auto deps = RecordDeps({"a.c", "../lib/util.h"}, Opts({"../first", "../lib"}), h);
  ASSERT_TRUE(deps.ok()) << deps.status().message();
  EXPECT_EQ(deps->at(root() + "/first/util.h"), "-");
  FileHashes same;
  EXPECT_FALSE(CheckManifest(*deps, same));
  test::WriteFile(root() + "/first/util.h", "");
  FileHashes after;
  auto mm = CheckManifest(*deps, after);
  ASSERT_TRUE(mm);
  EXPECT_EQ(mm->path, root() + "/first/util.h");
  EXPECT_EQ(DescribeMiss({}, mm, {}).reason, "header added");
}

TEST_F(Manifests, NothingIsRecordedForAFileChangedDuringTheCompileOrUsingTheClock) {
  test::WriteFile(root() + "/build/a.c", "int x;\n");
  RecordOptions o = Opts();
  o.changed_since_ns = 1;  // everything is newer than that
  FileHashes h;
  auto late = RecordDeps({"a.c"}, o, h);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(late.status().message().find("changed during the compile"), std::string::npos);
  // The source was hashed before the compile: written just before it (as
  // configure writes conftest.c) is fine while its content is the same.
  RecordOptions known = o;
  known.known[root() + "/build/a.c"] = "f:" + cas::DigestOf(std::string_view("int x;\n")).Key();
  FileHashes hk;
  EXPECT_TRUE(RecordDeps({"a.c"}, known, hk).ok());
  test::WriteFile(root() + "/build/a.c", "int y;\n");
  FileHashes hk2;
  EXPECT_EQ(RecordDeps({"a.c"}, known, hk2).status().code(), Code::kFailedPrecondition);

  test::WriteFile(root() + "/build/t.c", "const char* when = __DATE__;\n");
  FileHashes h2;
  auto clock = RecordDeps({"t.c"}, Opts(), h2);
  ASSERT_FALSE(clock.ok());
  EXPECT_EQ(clock.status().code(), Code::kInvalidArgument) << clock.status().message();
  RecordOptions epoch = Opts();
  epoch.time_macros_ok = true;
  FileHashes h3;
  EXPECT_TRUE(RecordDeps({"t.c"}, epoch, h3).ok());
}

// A header naming __DATE__, __TIME__ or __TIMESTAMP__ anywhere, also across
// the file's 64 KiB reads, is seen; names that only look alike are not.
TEST_F(Manifests, TheClockMacrosAreFoundWhereverTheyLie) {
  const size_t chunk = 64 * 1024;
  std::vector<std::pair<std::string, bool>> cases;
  for (std::string m : {"__DATE__", "__TIME__", "__TIMESTAMP__"}) {
    for (size_t cut = 0; cut <= m.size(); ++cut)  // `cut` bytes of it in the first read
      cases.push_back({std::string(chunk - cut, 'x') + m + "\n", true});
    cases.push_back({std::string(3 * chunk + 17, 'y') + m, true});
    cases.push_back({m, true});
  }
  for (std::string near : {"__DATE_", "_DATE__", "__TIME_T_TYPE", "__TIMESTAMP_", "__DAT__E__"})
    cases.push_back({std::string(chunk - 4, 'x') + near + std::string(chunk, 'x'), false});
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string file = root() + "/build/h" + std::to_string(i) + ".h";
    test::WriteFile(file, cases[i].first);
    FileHashes h;
    auto d = h.Get(file);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(*d, "f:" + cas::DigestOf(cases[i].first).Key()) << "case " << i;
    EXPECT_EQ(h.UsesTimeMacros(file), cases[i].second) << "case " << i;
  }
}

KeyParts Parts() {
  KeyParts p;
  p.image = "sha256:" + std::string(64, 'a');
  p.compiler = std::string(64, 'c');
  p.cwd = "/src";
  p.args = {"-O2", "-c", "a.c"};
  p.env = {{"LANG", "C.UTF-8"}};
  return p;
}

TEST(CompileKeys, EncodingIsPinned) {
  // Computed from the documented encoding (docs/architecture.md, "Compile
  // cache") by hand, not by this code: sha256 of
  // "kiln-cc-direct-1\nimage 71:sha256:aaa...\ncompiler 64:ccc...\ncwd 4:/src\n"
  // "args 3\narg 3:-O2\narg 2:-c\narg 3:a.c\nenv 1\nname 4:LANG\nvalue 7:C.UTF-8\nsource 4:s/10\n".
  std::string enc = "kiln-cc-direct-1\nimage 71:sha256:" + std::string(64, 'a') + "\ncompiler 64:" +
                    std::string(64, 'c') +
                    "\ncwd 4:/src\nargs 3\narg 3:-O2\narg 2:-c\narg 3:a.c\nenv 1\nname 4:LANG\nvalue 7:C.UTF-8\n"
                    "source 4:s/10\n";
  EXPECT_EQ(DirectKey(Parts(), "s/10"), cas::DigestOf(enc).hash);
  EXPECT_EQ(DirectKey(Parts(), "s/10"), "1e0f00b8047de64ae9c4ca9c9e719dbca11b64420e670a77302391c7b678669d");
  // The result of a traced compile: the same fields, the source and the manifest's digest.
  std::string depend = "kiln-cc-result-depend-1" + enc.substr(enc.find('\n')) + "manifest 3:m/1\n";
  EXPECT_EQ(DependResultKey(Parts(), "s/10", "m/1"), cas::DigestOf(depend).hash);
  // Stored by its code: the same fields, and the digest of the manifest
  // with its files named by their code.
  std::string code = "kiln-cc-result-code-1" + enc.substr(enc.find('\n')) + "code 3:c/1\n";
  EXPECT_EQ(CodeResultKey(Parts(), "s/10", "c/1"), cas::DigestOf(code).hash);
}

TEST(CompileKeys, EachPartChangesBothKeys) {
  auto base = Parts();
  std::vector<KeyParts> variants(5, base);
  variants[0].image = "sha256:" + std::string(64, 'b');
  variants[1].compiler = std::string(64, 'd');
  variants[2].cwd = "/src/sub";
  variants[3].args = {"-O0", "-c", "a.c"};
  variants[4].env["CPATH"] = "/src/inc";
  for (const auto& v : variants) {
    EXPECT_NE(DirectKey(v, "s/1"), DirectKey(base, "s/1"));
    EXPECT_NE(ResultKey(v, "p/1"), ResultKey(base, "p/1"));
  }
  EXPECT_NE(DirectKey(base, "s/1"), DirectKey(base, "s/2"));
  EXPECT_NE(DirectKey(base, "s/1"), ResultKey(base, "s/1")) << "the kinds never collide";
  EXPECT_NE(ResultKey(base, "s/1"), DependResultKey(base, "s/1", "m"));
  for (const auto& v : variants) EXPECT_NE(DependResultKey(v, "s/1", "m"), DependResultKey(base, "s/1", "m"));
  EXPECT_NE(DependResultKey(base, "s/1", "m"), DependResultKey(base, "s/2", "m"));
  EXPECT_NE(DependResultKey(base, "s/1", "m"), DependResultKey(base, "s/1", "n")) << "another manifest";
  for (const auto& v : variants) EXPECT_NE(CodeResultKey(v, "s/1", "c"), CodeResultKey(base, "s/1", "c"));
  EXPECT_NE(CodeResultKey(base, "s/1", "c"), CodeResultKey(base, "s/1", "d"));
  EXPECT_NE(CodeResultKey(base, "s/1", "c"), CodeResultKey(base, "s/2", "c")) << "another source";
  EXPECT_NE(CodeResultKey(base, "s/1", "m"), DependResultKey(base, "s/1", "m"));
}

// Two versions of a file name the same code only when each token keeps its
// line and column, each line starts where it did (a line that starts in a
// comment is marked), and no comment can change a diagnostic.
TEST(CodeText, CommentsThatMoveNoTokenAreNotCode) {
  auto same = [](const std::string& a, const std::string& b) {
    auto x = CodeText(a), y = CodeText(b);
    return x && y && *x == *y;
  };
  const std::string base = "/* header: old words */\nint f(void); /* at the end */\n#define X 1 // one\n";
  EXPECT_TRUE(same(base, "/* header: other, longer words */\nint f(void); /* changed */\n#define X 1 // uno\n"));
  EXPECT_TRUE(same(base, base + "/* appended at the end */\n\n")) << "comments and blank lines at the end";
  EXPECT_TRUE(same("/* two\n   lines */\nint x;\n", "/* 2\n   ln */\nint x;\n"));
  EXPECT_TRUE(same("int a;\t/* tab */\n", "int a;\n"));
  EXPECT_TRUE(same("char c = '\"'; /* a */ int x;\n", "char c = '\"'; /* b */ int x;\n"))
      << "a quote in a character literal opens no string";
  EXPECT_TRUE(same("#define M(x) \\\n  f(x) /* c */ \\\n  + 1\n", "#define M(x) \\\n  f(x) /* d */ \\\n  + 1\n"));
  EXPECT_EQ(CodeText("a /* c */ b\n"), "a         b\n");
  EXPECT_EQ(CodeText("/* one\n two */\nx // y\n"), "\x01\n \x01\nx\n");
  EXPECT_EQ(CodeText("#include <inc/a.h> // c\n"), "#include <inc/a.h>\n");
  EXPECT_EQ(CodeText("#\\\ninclude <inc/a.h>\n"), "#\\\ninclude <inc/a.h>\n");
  EXPECT_EQ(CodeText("#include \\\n<inc/a.h>\n"), "#include \\\n<inc/a.h>\n");
  EXPECT_EQ(CodeText("#if X < 3\n#endif // c\n"), "#if X < 3\n#endif\n");

  EXPECT_FALSE(same(base, "/* header: old words */\nint f(void); /* at the end */\n#define X 2 // one\n")) << "code";
  EXPECT_FALSE(same(base, "\nint f(void);\n#define X 1\n")) << "a line that started in a comment is no blank line";
  EXPECT_FALSE(same("/* c */ int x;\n", "/* cc */ int x;\n")) << "x moves a column";
  EXPECT_FALSE(same("/* one line */\nint x;\n", "/* two\nlines */\nint x;\n")) << "x moves a line";
  EXPECT_FALSE(same("int x;\n", "int x; \n")) << "a blank of the code itself";
  EXPECT_FALSE(same("int x;\n", "int x;")) << "the final newline";
  EXPECT_FALSE(same("int a;\n// c", "int a;\n")) << "the final newline, after a comment";
  EXPECT_FALSE(same("#define X 1 \\\n\n", "#define X 1 \\\n")) << "a splice at the end: GCC warns";
  EXPECT_FALSE(same("/* a */\tint x;\n", "/* a */ int x;\n")) << "a tab stays a tab";
  EXPECT_FALSE(same("char *s = \"/* no comment */\";\n", "char *s = \"/* none at all */\";\n"));
  // -Wmisleading-indentation: a line starting in a comment at column 0
  // is an unindent between two statements, a blank line is not.
  EXPECT_FALSE(same("if (a)\n  r = 1;\n// done\n  r += 2;\n", "if (a)\n  r = 1;\n\n  r += 2;\n"));
  EXPECT_FALSE(same("if (a)\n  r = 1;\n/**/ r += 2;\n", "if (a)\n  r = 1;\n     r += 2;\n"));
}

TEST(CodeText, CommentsThatMayMatterOrAScanItCannotTrustGiveNoCodeText) {
  for (const char* text : {
           "switch (x) { case 1: f(); /* falls through */ case 2: ; }\n",  // -Wimplicit-fallthrough
           "/* FALLTHRU */\n", "/* fa\\\nllthrough */\n",
           "/** doc */ int f(void);\n", "/*! doc */\n", "/// doc\n", "//! doc\n",  // -Wdocumentation
           "/* a /* nested */\n", "/* a /\\\n* nested */\n",                   // -Wcomment
           "// continued \\\nint x;\n", "// continued \\  \nint x;\n", "// c \\\f\nint a = 1;\n",
           "/* caf\xc3\xa9 */\n",  // -Wbidi-chars and kin
           "int x;\r\n", "/* ?\?/ */\n", "int a = 1 ?\?' 2;\n", "%:include <a//b.h>\n",
           "auto s = R\"(/* x */)\";\n", "R\\\n\"(\n// x\n)\";\n",  // raw strings
           "int n = 1'000; /* c */\n", "int a = 0xa'b; /* c */\n", "int a = 1\\\n'0; /* c */\n",
           "/* never closed\n", "/\\\n* split opening */\n", "/* split closing *\\\n/\n",
           "/* a *\\\f\n/ int x = 1; // */\n",
           "const char *s = \"a\\\\\nn // y\";\n",  // a splice after an escaped backslash
           "#define X 1 /*\n*/ int y;\n", "#include /*\n*/ <inc//a.h>\n", "int a = /*\n*/ 1;\n",
           "#define A 1 \\ /* c */\nint y = 1;\n",  // the comment's blanks would make a splice
           "#if __has_include(<sys//types.h>)\n#endif\n", "#embed <data//x.bin>\n",
           "#include <a.h\n", "#include <inc//a.h>\n", "#\\\ninclude <inc//a.h>\n",
           // Names a splice or a macro hides, quotes GCC reads without
           // escapes in #include, "/*" in a header name Clang may not lex.
           "#if __has_inc\\\nlude(<a//b.h>)\n#endif\n", "%\\\n:include <a//b.h>\n",
           "#define CAT(a, b) a##b\n#if CAT(__has_, include)(<a//b.h>)\n#endif\n",
           "#if 0\n#include \"x\\\" /*\n#elif 1\nint y = 1; //*/\n#endif\n",
           "#if 0\n#include <x/*y.h>\n#elif 1\nint y = 1; //*/\n#endif\n",
           "const char *s = S(1.'a' /* x */ ');\n", "int a = 1e+'a'; /* c */\n", "int a = 1.u8'a'; /* c */\n",
           "int t = __TIME\\\nSTAMP__; /* c */\n",
       })
    EXPECT_FALSE(CodeText(text).has_value()) << text;
  EXPECT_FALSE(CodeText("int x;\n" + std::string(5000, ' ') + "/* long */\n").has_value()) << "a line too long";
  EXPECT_FALSE(CodeText(std::string_view("int x;\0 /* c */\n", 16)).has_value()) << "a NUL";
  EXPECT_TRUE(CodeText("/**/ int x;\n").has_value()) << "an empty comment is no doc comment";
  EXPECT_TRUE(CodeText("#include <a.h> /* c */\n").has_value());
  EXPECT_TRUE(CodeText("#include \"a/*b\"\n").has_value()) << "a quoted name is a literal";
  EXPECT_TRUE(CodeText("char c = u8'a', d = L'b'; /* c */\n").has_value()) << "prefixes";
  EXPECT_EQ(CodeText(""), "");
  EXPECT_EQ(CodeText("// c"), "\x02") << "no newline at the end: not the empty file";
  EXPECT_NE(CodeText("#define X 1\f// c\nint x = X;\n"), CodeText("#define X 1 // c\nint x = X;\n"))
      << "a form feed in a directive stays";
}

TEST(DescribeMiss, ComparesWithTheNearestEarlierCompile) {
  auto now = Parts();
  now.source_digest = "s/1";
  EXPECT_EQ(DescribeMiss(now, std::nullopt, {}).reason, "new source");
  KeyParts p = now;
  p.args = {"-O0", "-c", "a.c"};
  auto m = DescribeMiss(now, std::nullopt, {p});
  EXPECT_EQ(m.reason, "arguments changed");
  EXPECT_EQ(m.detail, "arguments: removed -O0, added -O2");
  KeyParts src = now;
  src.source_digest = "s/2";
  EXPECT_EQ(DescribeMiss(now, std::nullopt, {src}).reason, "source changed");
  // The closest earlier compile explains: here the one that differs in the source only.
  EXPECT_EQ(DescribeMiss(now, std::nullopt, {p, src}).reason, "source changed");
  KeyParts cc = now;
  cc.compiler = std::string(64, 'e');
  cc.env.clear();
  auto both = DescribeMiss(now, std::nullopt, {cc});
  EXPECT_EQ(both.reason, "compiler changed");
  EXPECT_NE(both.detail.find("environment: LANG unset -> \"C.UTF-8\""), std::string::npos) << both.detail;
}

TEST(ResolveInvocation, FindsTheRealCompilerPastItsOwnLinks) {
  test::TempDir d;
  std::string self = d.path() + "/wrap/kiln-cc";
  test::WriteFile(self, "#!/bin/sh\n", true);
  fs::create_symlink("kiln-cc", d.path() + "/wrap/gcc");
  test::WriteFile(d.path() + "/bin/gcc", "#!/bin/sh\n", true);
  std::string path = d.path() + "/wrap:" + d.path() + "/bin";
  auto inv = ResolveInvocation({d.path() + "/wrap/gcc", "-c", "a.c"}, path, self);
  ASSERT_TRUE(inv.ok()) << inv.status().message();
  EXPECT_EQ(inv->path, d.path() + "/bin/gcc");
  EXPECT_EQ(inv->args, (std::vector<std::string>{"-c", "a.c"}));
  auto named = ResolveInvocation({"kiln-cc", "gcc", "-c", "a.c"}, path, self);
  ASSERT_TRUE(named.ok());
  EXPECT_EQ(named->path, d.path() + "/bin/gcc");
  EXPECT_EQ(ResolveInvocation({"kiln-cc", "g++"}, path, self).status().code(), Code::kNotFound);
  EXPECT_EQ(ResolveInvocation({"kiln-cc"}, path, self).status().code(), Code::kInvalidArgument);
}

// What the compiler printed reaches the build whole, whether it is kept in
// memory files (the default) or streamed through a pipe (the preprocessor).
TEST(RunProcess, KeepsEveryByteTheChildAndItsChildrenWrote) {
  // 2,000 writes of a few bytes to each stream, half of them from a child
  // process (as cc1 writes under the gcc driver), then exit 3.
  const std::string script =
      "i=0; while [ $i -lt 1000 ]; do printf 'o%d ' $i; printf 'e%d ' $i >&2; i=$((i+1)); done;"
      " sh -c 'i=0; while [ $i -lt 1000 ]; do printf \"O%d \" $i; printf \"E%d \" $i >&2; i=$((i+1)); done';"
      " exit 3";
  std::string want_out, want_err;
  for (int i = 0; i < 1000; ++i) want_out += "o" + std::to_string(i) + " ", want_err += "e" + std::to_string(i) + " ";
  for (int i = 0; i < 1000; ++i) want_out += "O" + std::to_string(i) + " ", want_err += "E" + std::to_string(i) + " ";

  ProcessResult kept = RunProcess({"/bin/sh", "-c", script});
  EXPECT_EQ(kept.exit_code, 3);
  EXPECT_EQ(kept.out, want_out);
  EXPECT_EQ(kept.err, want_err);

  std::string streamed;
  ProcessResult piped = RunProcess({"/bin/sh", "-c", script}, [&](std::string_view c) { streamed.append(c); });
  EXPECT_EQ(piped.exit_code, 3);
  EXPECT_EQ(streamed, want_out);
  EXPECT_EQ(piped.out, "");
  EXPECT_EQ(piped.err, want_err);

  EXPECT_EQ(RunProcess({"/bin/sh", "-c", "kill -TERM $$"}).exit_code, 128 + SIGTERM);
  ProcessResult missing = RunProcess({"/nonexistent/cc"});
  EXPECT_EQ(missing.exit_code, -1);
  EXPECT_FALSE(missing.error.empty());
}

}  // namespace
}  // namespace kiln::cc
