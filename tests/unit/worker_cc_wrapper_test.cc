// The compile cache's wrapper setup: which names kiln-cc stands in for, and
// the per-image directory of links to it.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "harness/harness.h"
#include "worker/cc_wrapper.h"

namespace kiln::worker {
namespace {

namespace fs = std::filesystem;

TEST(IsCompilerName, NamesKilnCcStandsInFor) {
  for (const char* n : {"cc", "c++", "gcc", "g++", "gcc-12", "g++-13", "x86_64-linux-gnu-gcc",
                        "x86_64-linux-gnu-g++-12"})
    EXPECT_TRUE(IsCompilerName(n)) << n;
  for (const char* n : {"", "clang", "clang++", "gcc-", "gcc-ar", "gcc-ar-12", "gcc12", "g++-1x", "c89", "cpp",
                        "gccgo", "aarch64-linux-gnu-gcc", "x86_64-linux-gnu-", "x86_64-linux-gnu-cc", "ccache"})
    EXPECT_FALSE(IsCompilerName(n)) << n;
}

void Touch(const std::string& path) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path) << "#!/bin/sh\n";
}

TEST(CompilersIn, FindsCompilersInTheImagesBinDirectoriesOnly) {
  test::TempDir t;
  const std::string root = t.path() + "/rootfs";
  Touch(root + "/usr/bin/gcc-12");
  Touch(root + "/usr/bin/g++-12");
  Touch(root + "/usr/bin/clang");
  Touch(root + "/usr/bin/gcc-ar-12");
  Touch(root + "/bin/cc");
  Touch(root + "/opt/bin/gcc");  // not a PATH directory searched
  // usr/local/bin is a link out of the image: not followed.
  Touch(t.path() + "/host/gcc-99");
  fs::create_directories(root + "/usr/local");
  fs::create_directory_symlink(t.path() + "/host", root + "/usr/local/bin");
  EXPECT_EQ(CompilersIn(root), (std::set<std::string>{"cc", "g++-12", "gcc-12"}));
  EXPECT_TRUE(CompilersIn(t.path() + "/missing").empty());
}

TEST(CompileCacheSetup, MakesOneWrapperDirectoryPerImage) {
  test::TempDir t;
  const std::string work = t.path() + "/work";
  fs::create_directories(work + "/kiln-cc");
  const std::string master = work + "/kiln-cc/kiln-cc";
  Touch(master);
  Touch(t.path() + "/rootfs/usr/bin/gcc");
  Touch(t.path() + "/rootfs/usr/bin/g++");

  CompileCacheSetup cc(work, master, 0);
  EXPECT_EQ(cc.memory(), nullptr);
  const std::string image = "sha256:" + std::string(64, 'c');
  auto dir = cc.WrapperDir(image, t.path() + "/rootfs");
  ASSERT_TRUE(dir.ok()) << dir.status().message();
  EXPECT_EQ(*dir, work + "/kiln-cc/" + std::string(64, 'c'));
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(*dir)) names.insert(e.path().filename());
  EXPECT_EQ(names, (std::set<std::string>{"g++", "gcc", "kiln-cc"}));
  EXPECT_EQ(fs::read_symlink(*dir + "/gcc"), "kiln-cc");
  EXPECT_EQ(fs::read_symlink(*dir + "/g++"), "kiln-cc");
  EXPECT_TRUE(fs::equivalent(*dir + "/kiln-cc", master)) << "a hard link to the worker's copy";
  EXPECT_FALSE(fs::exists(*dir + ".partial"));
  struct stat st {};
  ASSERT_EQ(::stat(dir->c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);

  // Made once: a second job of the image gets the same directory as it is.
  fs::remove(*dir + "/g++");
  auto again = cc.WrapperDir(image, t.path() + "/rootfs");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *dir);
  EXPECT_FALSE(fs::exists(fs::symlink_status(*dir + "/g++"))) << "not made again";

  // Another image has its own, with its own compilers.
  Touch(t.path() + "/other/bin/cc");
  auto other = cc.WrapperDir("sha256:" + std::string(64, 'd'), t.path() + "/other");
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(fs::is_symlink(*other + "/cc"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(*other + "/gcc")));
}

TEST(CompileCacheSetup, FailsWhenTheDirectoryCannotBeMade) {
  test::TempDir t;
  // work_dir/kiln-cc is a file: nothing can be made below it.
  Touch(t.path() + "/kiln-cc");
  CompileCacheSetup cc(t.path(), t.path() + "/kiln-cc", 0);
  auto dir = cc.WrapperDir("sha256:" + std::string(64, 'e'), t.path());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), Code::kFailedPrecondition);
}

TEST(CompileCacheSetup, InstallsItsOwnCopyOfKilnCc) {
  test::TempDir t;
  const std::string src = t.path() + "/dist/kiln-cc";
  Touch(src);
  ::chmod(src.c_str(), 0700);
  const std::string work = t.path() + "/work";
  Touch(work + "/kiln-cc/stale/gcc");  // a previous run's wrapper directories go

  auto cc = CompileCacheSetup::Install(work, src, 1 << 20);
  ASSERT_NE(cc, nullptr);
  EXPECT_EQ(cc->master(), work + "/kiln-cc/kiln-cc");
  EXPECT_NE(cc->memory(), nullptr);
  EXPECT_FALSE(fs::exists(work + "/kiln-cc/stale"));
  EXPECT_FALSE(fs::equivalent(cc->master(), src)) << "a copy, not the installed file";
  EXPECT_EQ(test::ReadFile(cc->master()), "#!/bin/sh\n");
  struct stat st {};
  ASSERT_EQ(::stat(cc->master().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
}

TEST(CompileCacheSetup, IsOffWithoutAnExecutableKilnCc) {
  test::TempDir t;
  EXPECT_EQ(CompileCacheSetup::Install(t.path() + "/work", t.path() + "/nowhere/kiln-cc", 0), nullptr);
  const std::string src = t.path() + "/kiln-cc";
  Touch(src);
  ::chmod(src.c_str(), 0644);
  EXPECT_EQ(CompileCacheSetup::Install(t.path() + "/work", src, 0), nullptr);
}

}  // namespace
}  // namespace kiln::worker
