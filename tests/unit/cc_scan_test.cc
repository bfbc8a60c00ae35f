// The include scan (cc/scan.h): the names a file's text includes, and the
// files a compile may read, checked against the real compiler: given only
// the scanned files, gcc preprocesses a unit exactly as in the whole tree.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "cc/process.h"
#include "cc/scan.h"
#include "harness/harness.h"

namespace kiln::cc {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> Names(std::string_view text) {
  auto n = IncludeNames(text);
  EXPECT_TRUE(n.ok()) << n.status().message();
  std::vector<std::string> out;
  if (n.ok())
    for (const auto& i : *n) out.push_back(i.name);
  return out;
}

TEST(IncludeNames, FindsEveryIncludeInEveryBranchAndNothingInCommentsOrStrings) {
  EXPECT_EQ(Names("#include \"a.h\"\n#include <b.h>\n"), (std::vector<std::string>{"a.h", "b.h"}));
  // Every branch of #if; #include_next and #import; __has_include's names.
  EXPECT_EQ(Names("#if 0\n#include \"never.h\"\n#endif\n  #  include_next <n.h>\n#import \"i.h\"\n"
                  "#if __has_include(\"opt.h\") && __has_include_next (<sys/x.h>)\n#endif\n"),
            (std::vector<std::string>{"never.h", "n.h", "i.h", "opt.h", "sys/x.h"}));
  // A directive after a comment, a splice, a digraph; a comment inside.
  EXPECT_EQ(Names("/* one\n two */ #include \"after_comment.h\"\n#\\\ninclude \"spliced.h\"\n"
                  "%:include <digraph.h>\n# /* c */ include /* d */ <commented_between.h>\n"
                  "#include <a//b.h>\n"),
            (std::vector<std::string>{"after_comment.h", "spliced.h", "digraph.h", "commented_between.h", "a//b.h"}));
  // Not directives: in comments, strings, mid-line, a comment's line that
  // goes on after a newline inside it.
  EXPECT_EQ(Names("/* #include \"c1.h\" */\n// #include \"c2.h\"\nconst char* s = \"#include \\\"s.h\\\" /*\";\n"
                  "int x; #include \"mid.h\"\nint y; /* \n */ #include \"joined.h\"\n#ifdef __has_include\n#endif\n"
                  "char q = '\"'; // #include \"c3.h\"\n"),
            std::vector<std::string>{});
  // A // comment continued by a splice hides the next line too.
  EXPECT_EQ(Names("// note \\\n#include \"hidden.h\"\n#include \"seen.h\"\n"), std::vector<std::string>{"seen.h"});
  // An #include the compiler rejects names nothing.
  EXPECT_EQ(Names("#include\n#include \"unclosed.h\n#include <>\n"), std::vector<std::string>{});
  // A byte order mark at the start is skipped, as compilers skip it.
  EXPECT_EQ(Names("\xEF\xBB\xBF#include \"bom.h\"\n"), std::vector<std::string>{"bom.h"});
  // A quote after a digit, read either way, hides nothing on these lines.
  EXPECT_EQ(Names("#if 0\n#error 2's complement\n#endif\nint n = 1'000'000;\n#include \"after.h\"\n"),
            std::vector<std::string>{"after.h"});
  // Asking whether __has_include exists is no name; nor is another pragma.
  EXPECT_EQ(Names("#ifdef __has_include\n#elif defined(__has_include) || defined __has_include_next\n#endif\n"
                  "#pragma once /* no dependency */\n"),
            std::vector<std::string>{});
}

TEST(IncludeNames, RefusesWhatCouldHideAName) {
  static constexpr char kNul[] = "\0#include \"nul.h\"\n";  // GCC reads a NUL as a blank
  for (std::string_view text : std::initializer_list<std::string_view>{
           "#include HEADER_H\n", "#  include_next CONFIG(x)\n", "#if __has_include(H)\n#endif\n",
        "#define HAS __has_include\n#if HAS(<x.h>)\n#endif\n", "#define H(x) __has_include(<x>)\n",
        "#if __has_include\n#endif\n", "#if __has_embed(\"x.bin\")\n#endif\n", "#embed \"data.bin\"\n",
        "#pragma GCC dependency \"parse.y\"\n", "_Pragma(\"GCC dependency \\\"parse.y\\\"\")\n",
        "const char* r = R\"(/*)\";\n", "?\?=include \"t.h\"\n", "#if 1 ?\?' 2\n#endif\n", "int x;\r\n",
        std::string_view(kNul, sizeof kNul - 1), "/* open\n#include \"a.h\"\n",
        "int n = 1'000; /* a comment, or a character literal's text? */\n"}) {
    SCOPED_TRACE(text);
    auto n = IncludeNames(text);
    ASSERT_FALSE(n.ok());
    EXPECT_EQ(n.status().code(), Code::kFailedPrecondition);
    EXPECT_FALSE(n.status().message().empty());
  }
}

class ScanIncludesTest : public ::testing::Test {
 protected:
  std::string Tree() const { return dir_.path() + "/tree"; }
  void Write(const std::string& rel, const std::string& text) { test::WriteFile(Tree() + "/" + rel, text); }

  // A tree whose main.c finds headers every way the compiler can.
  void WriteTree() {
    Write("src/main.c",
          "#include \"local.h\"\n"                       // beside main.c
          "#include <sys.h>\n"                           // in inc2 only
          "#if 0\n#include \"never.h\"\n#endif\n"        // a branch never taken
          "#if __has_include(\"opt.h\")\nint has_opt = 7;\n#else\nint has_opt = 0;\n#endif\n"
          "#if __has_include(<absent.h>)\nint absent = 1;\n#endif\n"
          "#\\\ninclude \"spliced.h\"\n"
          "# /* c */ include /* d */ <sub/deep.h>\n"
          "#include \"../empty/../inc2/dotdot.h\"\n"
          "#include <stdio.h>\n"
          "int main(void) { return LOCAL + SYS + NEXT + DEEP + DOTDOT + SPLICED; }\n");
    Write("src/local.h", "#include \"next.h\"\n#define LOCAL 1\n");
    Write("inc1/next.h", "#include_next <next.h>\n#define NEXT1 1\n");
    Write("inc2/next.h", "#define NEXT 2\n");
    Write("inc2/sys.h", "#define SYS 3\n");
    Write("inc1/never.h", "#error never\n");
    Write("inc2/opt.h", "#define OPT 7\n");
    Write("inc2/spliced.h", "#define SPLICED 4\n");
    Write("inc1/sub/deep.h", "#include \"deeper.h\"\n#define DEEP DEEPER\n");
    Write("inc1/sub/deeper.h", "#define DEEPER 5\n");
    Write("inc2/dotdot.h", "#define DOTDOT 6\n");
    Write("inc2/unused.h", "#define UNUSED 8\n");
    fs::create_directories(Tree() + "/empty");  // holds no header: only a ".." steps through it
  }
  // -I../inc1 -I../inc2, then gcc's own directories.
  std::vector<std::string> Search() const {
    std::vector<std::string> dirs{"../inc1", "../inc2"};
    auto v = RunProcess({"/usr/bin/gcc", "-xc", "-E", "-v", "/dev/null"});
    bool in = false;
    size_t pos = 0;
    while (pos < v.err.size()) {
      size_t nl = std::min(v.err.find('\n', pos), v.err.size());
      std::string line = v.err.substr(pos, nl - pos);
      pos = nl + 1;
      if (line.rfind("#include <...> search starts here:", 0) == 0) in = true;
      else if (line.rfind("End of search list.", 0) == 0) in = false;
      else if (in && !line.empty() && line[0] == ' ') dirs.push_back(line.substr(1));
    }
    EXPECT_GT(dirs.size(), 2u) << v.err;
    return dirs;
  }

  // gcc -E -P of src/main.c in `root` (a copy of the tree or the tree).
  std::string Preprocess(const std::string& root) {
    auto r = RunProcess({"/bin/sh", "-c", "cd " + root + "/src && gcc -E -P -I../inc1 -I../inc2 main.c"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  // What a helper gets of the tree, as kiln-cc sends it: the scanned
  // `files` in it, the `dirs` the scan names, and the include directories
  // (the system's headers are there already).
  std::string CopyOf(const std::vector<std::string>& files, const std::vector<std::string>& dirs,
                     const std::string& name) {
    const std::string root = dir_.path() + "/" + name;
    auto in_tree = [&](const std::string& p) { return p.rfind(Tree() + "/", 0) == 0; };
    for (const auto& f : files) {
      if (!in_tree(f)) continue;
      std::string rel = f.substr(Tree().size() + 1);
      fs::create_directories(fs::path(root + "/" + rel).parent_path());
      fs::copy_file(f, root + "/" + rel);
    }
    for (const auto& d : dirs)
      if (in_tree(d)) fs::create_directories(root + "/" + d.substr(Tree().size() + 1));
    for (const char* d : {"src", "inc1", "inc2"}) fs::create_directories(root + "/" + d);
    return root;
  }

  test::TempDir dir_;
};

TEST_F(ScanIncludesTest, GivenOnlyTheScannedFilesTheCompilerPreprocessesTheSame) {
  WriteTree();
  auto scan = ScanIncludes("main.c", Search(), Tree() + "/src");
  ASSERT_TRUE(scan.ok()) << scan.status().message();
  std::set<std::string> tree_files;
  for (const auto& f : scan->files)
    if (f.rfind(Tree() + "/", 0) == 0) tree_files.insert(f.substr(Tree().size() + 1));
  // Every name, found wherever it could be; the source first; a branch never
  // taken included (it costs a file, never a wrong answer); not unused.h.
  EXPECT_EQ(scan->files.front(), Tree() + "/src/main.c");
  EXPECT_EQ(tree_files, (std::set<std::string>{"src/main.c", "src/local.h", "inc1/next.h", "inc2/next.h",
                                               "inc2/sys.h", "inc1/never.h", "inc2/opt.h", "inc2/spliced.h",
                                               "inc1/sub/deep.h", "inc1/sub/deeper.h", "inc2/dotdot.h"}));
  EXPECT_NE(std::find(scan->files.begin(), scan->files.end(), "/usr/include/stdio.h"), scan->files.end())
      << "the system's headers are scanned too: a tree header may answer their names";
  EXPECT_NE(std::find(scan->dirs.begin(), scan->dirs.end(), Tree() + "/empty"), scan->dirs.end())
      << "the directories a \"..\" stepped out of";

  const std::string whole = Preprocess(Tree());
  EXPECT_NE(whole.find("has_opt = 7"), std::string::npos) << whole;
  EXPECT_EQ(Preprocess(CopyOf(scan->files, scan->dirs, "copy")), whole);

  // The check can fail: without the file __has_include found, or without
  // the directory a ".." steps out of, the unit preprocesses otherwise.
  std::vector<std::string> less;
  for (const auto& f : scan->files)
    if (f != Tree() + "/inc2/opt.h") less.push_back(f);
  EXPECT_NE(Preprocess(CopyOf(less, scan->dirs, "less")), whole);
  auto r = RunProcess({"/bin/sh", "-c", "cd " + CopyOf(scan->files, {}, "nodirs") +
                                            "/src && gcc -E -P -I../inc1 -I../inc2 main.c"});
  EXPECT_NE(r.exit_code, 0) << "../empty/.. needs the directory";
}

TEST_F(ScanIncludesTest, RefusesAMacroIncludeAnywhereAndADotDotOutOfASymlink) {
  WriteTree();
  Write("inc2/sys.h", "#define SYS 3\n#ifdef NEVER\n#include NEVER\n#endif\n");
  auto macro = ScanIncludes("main.c", Search(), Tree() + "/src");
  ASSERT_FALSE(macro.ok());
  EXPECT_NE(macro.status().message().find(Tree() + "/inc2/sys.h: an #include names a macro"), std::string::npos)
      << macro.status().message();

  WriteTree();
  fs::create_directory_symlink(Tree() + "/inc2", Tree() + "/src/link");
  Write("src/main.c", "#include \"link/../local.h\"\n");
  auto link = ScanIncludes("main.c", Search(), Tree() + "/src");
  ASSERT_FALSE(link.ok());
  EXPECT_NE(link.status().message().find("steps out of a symbolic link"), std::string::npos)
      << link.status().message();

  auto missing = ScanIncludes("nothere.c", Search(), Tree() + "/src");
  EXPECT_FALSE(missing.ok());
}

TEST_F(ScanIncludesTest, RefusesWhatACopyCannotReproduceAndNeverWaitsOnAFifo) {
  WriteTree();
  auto refused = [&](std::vector<std::string> search, const std::string& want) {
    auto scan = ScanIncludes("main.c", search, Tree() + "/src");
    ASSERT_FALSE(scan.ok()) << want;
    EXPECT_NE(scan.status().message().find(want), std::string::npos) << scan.status().message();
  };
  // A directory under the sysroot, one reached through a symbolic link
  // (the compiler would drop it as a duplicate; a copy has two).
  refused({"=/inc1"}, "relative to the sysroot");
  fs::create_directory_symlink(Tree() + "/inc1", Tree() + "/inc1_link");
  refused({"../inc1", "../inc1_link"}, "reached through a symbolic link");
  // A FIFO named anywhere, even in a branch never taken: no read of it.
  ASSERT_EQ(::mkfifo((Tree() + "/inc1/fifo.h").c_str(), 0644), 0);
  Write("src/main.c", "#if 0\n#include \"fifo.h\"\n#endif\n");
  refused({"../inc1"}, "is not a regular file");
}

}  // namespace
}  // namespace kiln::cc
