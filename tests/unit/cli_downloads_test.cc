// Declared outputs are never inputs: the pure parts (what a download
// records, what a submit leaves out) and the record file. The walk's `keep`
// is tested in cas_test.cc.
// The farm end of it is in tests/integration/cache_test.cc.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "cas/digest.h"
#include "cli/downloads.h"
#include "harness/harness.h"

namespace kiln::cli {
namespace {

namespace fs = std::filesystem;

cas::Entry File(const std::string& content, bool exec = false) {
  cas::Entry e;
  e.kind = cas::Kind::kFile;
  e.digest = cas::DigestOf(std::string_view(content));
  e.executable = exec;
  return e;
}
cas::Entry Link(const std::string& target) {
  cas::Entry e;
  e.kind = cas::Kind::kSymlink;
  e.target = target;
  return e;
}
cas::Entry Dir() {
  cas::Entry e;
  e.kind = cas::Kind::kDir;
  return e;
}

TEST(DownloadRecord, KilnOwnsWhatItCreatedAndNeverWhatWasThereFirst) {
  DownloadRecord rec;
  NoteDownload(rec, {{"build", Dir(), false},
                     {"build/app", File("v1", true), false},
                     {"Makefile", File("generated"), true},  // shipped in the tree: kiln replaced it
                     {"lib", Dir(), true},                    // the user's directory
                     {"lib/libx.so", Link("libx.so.1"), false}});
  EXPECT_EQ(rec["build"], "d");
  EXPECT_EQ(rec["build/app"], "x:" + cas::DigestOf(std::string_view("v1")).Key());
  EXPECT_EQ(rec["Makefile"], "-");
  EXPECT_EQ(rec.count("lib"), 0u) << "kiln did not create it";
  EXPECT_EQ(rec["lib/libx.so"], "l:libx.so.1");

  // The next download overwrites its own files (whatever they hold now) and
  // keeps the shipped one someone else's, until it is gone.
  NoteDownload(rec, {{"build", Dir(), true}, {"build/app", File("v2"), true}, {"Makefile", File("generated"), true}});
  EXPECT_EQ(rec["build"], "d") << "still the directory kiln created";
  EXPECT_EQ(rec["build/app"], "f:" + cas::DigestOf(std::string_view("v2")).Key());
  EXPECT_EQ(rec["Makefile"], "-");
  NoteDownload(rec, {{"Makefile", File("generated"), false}});
  EXPECT_EQ(rec["Makefile"], "f:" + cas::DigestOf(std::string_view("generated")).Key())
      << "deleted, then written by kiln: now kiln's";
}

TEST(DownloadRecord, OnlyUnchangedDownloadsInTheCommandsOutputsAreLeftOut) {
  DownloadRecord rec;
  NoteDownload(rec, {{"out", Dir(), false},
                     {"out/bin", Dir(), false},
                     {"out/bin/app", File("app"), false},
                     {"out/bin/tool", File("tool", true), false},
                     {"out/link", Link("bin/app"), false},
                     {"other.txt", File("x"), false},
                     {"shipped.c", File("gen"), true}});
  DownloadedOutputs d{{"out", "shipped.c"}, rec};
  EXPECT_TRUE(LeaveOut(d, "out/bin/app", File("app")));
  EXPECT_TRUE(LeaveOut(d, "out/bin/tool", File("tool", true)));
  EXPECT_TRUE(LeaveOut(d, "out/link", Link("bin/app")));
  EXPECT_TRUE(LeaveOut(d, "out/bin", Dir())) << "a directory kiln created, emptied by the above";
  EXPECT_FALSE(LeaveOut(d, "out/bin/app", File("edited"))) << "changed bytes: an input again";
  EXPECT_FALSE(LeaveOut(d, "out/bin/tool", File("tool", false))) << "a chmod is an edit too";
  EXPECT_FALSE(LeaveOut(d, "out/link", Link("bin/tool")));
  EXPECT_FALSE(LeaveOut(d, "out/bin/app", Link("x"))) << "a symlink where kiln wrote a file";
  EXPECT_FALSE(LeaveOut(d, "out/new.txt", File("app"))) << "kiln never wrote there";
  EXPECT_FALSE(LeaveOut(d, "other.txt", File("x"))) << "downloaded, but not an output of this command";
  EXPECT_FALSE(LeaveOut(d, "shipped.c", File("gen"))) << "kiln replaced a shipped file: it stays an input";

  // A directory kiln created on the way to a declared output.
  DownloadedOutputs deep{{"out/bin/app"}, rec};
  EXPECT_TRUE(LeaveOut(deep, "out", Dir()));
  EXPECT_TRUE(LeaveOut(deep, "out/bin", Dir()));
  EXPECT_FALSE(LeaveOut(deep, "out/bin/tool", File("tool", true))) << "not declared this time";
  // "out" as an area does not cover "outer/...".
  DownloadRecord r2{{"outer/x", "f:" + cas::DigestOf(std::string_view("x")).Key()}};
  EXPECT_FALSE(LeaveOut(DownloadedOutputs{{"out"}, r2}, "outer/x", File("x")));
}

class DownloadRecordFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* old = std::getenv("XDG_CACHE_HOME");
    if (old) old_ = old;
    had_ = old != nullptr;
    ::setenv("XDG_CACHE_HOME", (dir_.path() + "/xdg").c_str(), 1);
    tree_ = fs::canonical(dir_.path()).string() + "/tree";
    fs::create_directories(tree_);
  }
  void TearDown() override {
    if (had_) ::setenv("XDG_CACHE_HOME", old_.c_str(), 1);
    else ::unsetenv("XDG_CACHE_HOME");
  }
  test::TempDir dir_;
  std::string tree_, old_;
  bool had_ = false;
};

TEST_F(DownloadRecordFiles, LiveInTheUserCacheKeepExistingPathsAndSurviveDamage) {
  test::WriteFile(tree_ + "/app", "app");
  DownloadRecord rec{{"app", "f:" + cas::DigestOf(std::string_view("app")).Key()}, {"gone", "f:00/1"}};
  ASSERT_TRUE(SaveDownloadRecord(tree_, rec).ok());
  std::string file = DownloadRecordFile(tree_);
  EXPECT_EQ(file.rfind(dir_.path() + "/xdg/kiln/downloads/", 0), 0u) << file;
  DownloadRecord back = LoadDownloadRecord(tree_);
  EXPECT_EQ(back.size(), 1u) << "a path that no longer exists is dropped";
  EXPECT_EQ(back["app"], rec["app"]);
  EXPECT_TRUE(LoadDownloadRecord(tree_ + "/elsewhere").empty());

  std::ofstream(file) << "{not json";
  EXPECT_TRUE(LoadDownloadRecord(tree_).empty()) << "a damaged record leaves nothing out";
  std::ofstream(file) << R"({"version":1,"dir":"/somewhere/else","paths":{"app":"f:x"}})";
  EXPECT_TRUE(LoadDownloadRecord(tree_).empty()) << "another directory's record is not this one's";
  for (const char* bad : {R"({"version":"1","dir":1,"paths":[]})", "[1,2]", "null", ""}) {
    std::ofstream(file) << bad;
    EXPECT_TRUE(LoadDownloadRecord(tree_).empty()) << bad;
  }
  std::ofstream(file) << R"({"version":1,"dir":")" + tree_ + R"(","paths":{"app":"f:x","n":7}})";
  EXPECT_EQ(LoadDownloadRecord(tree_), (DownloadRecord{{"app", "f:x"}})) << "entries of the wrong type are skipped";
}

TEST_F(DownloadRecordFiles, AnOutputsDirectoryInsideTheTreeIsReRootedAtTheTree) {
  fs::create_directories(tree_ + "/dist");
  test::WriteFile(tree_ + "/dist/app", "app");
  test::WriteFile(tree_ + "/app", "top");
  std::string app = "f:" + cas::DigestOf(std::string_view("app")).Key();
  std::string top = "f:" + cas::DigestOf(std::string_view("top")).Key();
  ASSERT_TRUE(SaveDownloadRecord(tree_ + "/dist", {{"app", app}}).ok());
  ASSERT_TRUE(SaveDownloadRecord(tree_, {{"app", top}}).ok());
  ASSERT_TRUE(NoteCreatedDirectories(tree_, {"dist"}).ok());

  DownloadedOutputs d = FindDownloadedOutputs(tree_, {"./app/"}, tree_ + "/dist");
  EXPECT_EQ(d.areas, (std::vector<std::string>{"app", "dist"}));
  EXPECT_EQ(d.written["dist"], "d");
  EXPECT_EQ(d.written["dist/app"], app);
  EXPECT_EQ(d.written["app"], top);

  // Directories created on the way down are found in the record of the
  // nearest one that existed.
  fs::create_directories(tree_ + "/dist/a/b");
  test::WriteFile(tree_ + "/dist/a/b/lib.so", "lib");
  ASSERT_TRUE(NoteCreatedDirectories(tree_ + "/dist", {"a", "a/b"}).ok());
  std::string lib = "f:" + cas::DigestOf(std::string_view("lib")).Key();
  ASSERT_TRUE(SaveDownloadRecord(tree_ + "/dist/a/b", {{"lib.so", lib}}).ok());
  DownloadedOutputs nested = FindDownloadedOutputs(tree_, {"lib.so"}, tree_ + "/dist/a/b");
  EXPECT_EQ(nested.areas, (std::vector<std::string>{"lib.so", "dist/a/b"}));
  EXPECT_EQ(nested.written["dist/a/b/lib.so"], lib);
  EXPECT_TRUE(LeaveOut(nested, "dist/a", Dir()));
  EXPECT_TRUE(LeaveOut(nested, "dist/a/b", Dir()));
  EXPECT_TRUE(LeaveOut(nested, "dist", Dir())) << "created by the first download, and on the way to this one";
  EXPECT_FALSE(LeaveOut(nested, "src", Dir())) << "not created by kiln";

  // Outputs downloaded outside the tree: only the tree's own record counts.
  DownloadedOutputs outside = FindDownloadedOutputs(tree_, {"app"}, dir_.path());
  EXPECT_EQ(outside.areas, (std::vector<std::string>{"app"}));
  EXPECT_EQ(outside.written.count("dist/app"), 0u);
  // No record at all: nothing to leave out.
  fs::create_directories(dir_.path() + "/fresh");
  EXPECT_TRUE(FindDownloadedOutputs(dir_.path() + "/fresh", {"app"}, "").areas.empty());
}

}  // namespace
}  // namespace kiln::cli
