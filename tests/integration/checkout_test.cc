// The job's checkout end to end (real controller, worker, runc and
// PostgreSQL, through the kiln CLI): a build owns a writable tree, as in a
// git clone, that never writes through to the worker's cache or to another
// job; its disk has a cap; and its inputs' mtimes follow the rule of
// docs/architecture.md ("The job's checkout"), with make and with ninja.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "cas/digest.h"
#include "harness/container_farm.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

class Checkout : public ContainerFarm {
 protected:
  Checkout() { extra_conf_ = "workspace_grace = 1s\n"; }

  std::string src() const { return dir_.path() + "/tree"; }

  test::CommandResult Submit(const std::string& script, std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"submit", "--input", src(), "--no-gitignore", "--no-cache"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--", "sh", "-c", script});
    return Kiln(args, 120s);
  }

  // Every file of worker 0's local CAS cache that is not as the cache
  // wrote it: bytes whose digest is its name (a blob is named by its
  // SHA-256), the build user's, 0644 (0755 for an executable's copy),
  // mtime 1 s after the epoch.
  std::vector<std::string> DamagedCacheFiles() {
    std::vector<std::string> bad;
    size_t n = 0;
    for (const auto& e : fs::recursive_directory_iterator(dir_.path() + "/w0/cas")) {
      if (!e.is_regular_file()) continue;
      std::string name = e.path().filename();
      const bool exec = name.size() > 2 && name.compare(name.size() - 2, 2, ".x") == 0;
      if (exec) name.resize(name.size() - 2);
      ++n;
      struct stat st {};
      ::lstat(e.path().c_str(), &st);
      if (cas::DigestOf(test::ReadFile(e.path())).hash != name || st.st_uid != 100000 ||
          (st.st_mode & 07777) != (exec ? 0755u : 0644u) || st.st_mtime != 1)
        bad.push_back(e.path());
    }
    EXPECT_GT(n, 0u) << "the cache holds the tree's files";
    return bad;
  }

  // The tree of a running job on worker 0, as the build sees it.
  std::string JobTree(const std::string& id) { return dir_.path() + "/w0/jobs/" + id + "-1/src"; }
  bool Ended(const std::string& id) {
    auto s = Status(id);
    return s.is_object() && s.value("status", "") != "QUEUED" && s.value("status", "") != "RUNNING";
  }

  nlohmann::json Status(const std::string& id) {
    auto r = Kiln({"status", "--json", id});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, false);
  }
};

// What a build does to its inputs in a local checkout, all of it.
constexpr const char* kEdits =
    "set -e; ls -ln in.txt run.sh sub/deep.txt | awk '{print \"owner\", $1, $3, $4}';"
    "echo appended >> in.txt; : > sub/deep.txt; touch -d @1700000000 keep.txt; chmod 0600 run.sh;"
    "rm gone.txt; echo new > gone.txt; mv sub/moved.txt sub/renamed.txt; echo x > made.txt;"
    "cat in.txt; stat -c 'sizes %s' sub/deep.txt; stat -c 'mtime %Y' keep.txt; stat -c 'mode %a' run.sh;"
    "chmod 0555 sub";

TEST_F(Checkout, ABuildModifiesItsInputsAsInAClonedTreeAndNoOtherJobOrTheCacheSeesIt) {
  Up();
  const std::string img = Busybox();
  test::WriteFile(src() + "/in.txt", "original\n");
  test::WriteFile(src() + "/run.sh", "echo run\n");
  fs::permissions(src() + "/run.sh", fs::perms::owner_exec, fs::perm_options::add);
  test::WriteFile(src() + "/keep.txt", "keep\n");
  test::WriteFile(src() + "/gone.txt", "gone\n");
  test::WriteFile(src() + "/sub/deep.txt", "deep\n");
  test::WriteFile(src() + "/sub/moved.txt", "moved\n");
  const std::string check = "cat in.txt sub/deep.txt gone.txt sub/moved.txt keep.txt; stat -c '%a %Y' run.sh keep.txt;"
                            "test -e made.txt && echo kept || echo clean; touch sub/w && echo sub writable";
  const std::string original = "original\ndeep\ngone\nmoved\nkeep\n755 ";
  for (std::string mode : {"fresh", "persistent"}) {
    SCOPED_TRACE(mode);
    std::vector<std::string> where{"--image", img, "--workspace", mode};
    // As the build user (not root) in the container: every input is its
    // own, 0644 or 0755 as recorded, and it may change every one of them.
    auto edit = Submit(kEdits, where);
    ASSERT_EQ(edit.exit_code, 0) << edit.err << edit.out;
    EXPECT_NE(edit.out.find("owner -rw-r--r-- 100000 100000\nowner -rwxr-xr-x 100000 100000\n"
                            "owner -rw-r--r-- 100000 100000\n"),
              std::string::npos)
        << edit.out;
    EXPECT_NE(edit.out.find("original\nappended\nsizes 0\nmtime 1700000000\nmode 600\n"), std::string::npos)
        << edit.out;
    // Before the next job could repair anything: the cache is as it was.
    EXPECT_EQ(DamagedCacheFiles(), std::vector<std::string>{});
    // The next job on the same worker, fresh or in the same warm
    // workspace, sees the tree's bytes.
    auto again = Submit(check, where);
    ASSERT_EQ(again.exit_code, 0) << again.err << again.out;
    EXPECT_NE(again.out.find(original), std::string::npos) << again.out;
    if (mode == "fresh") {
      EXPECT_NE(again.out.find("\n755 1\n644 1\nclean\nsub writable\n"), std::string::npos) << again.out;
      // A directory of the tree renames in place (its files keep their
      // inodes), as rename(2) does in a local checkout.
      auto mv = Submit("a=$(stat -c %i sub/deep.txt); mv sub sub2 && [ \"$(stat -c %i sub2/deep.txt)\" = \"$a\" ]"
                       " && echo renamed in place",
                       where);
      EXPECT_EQ(mv.exit_code, 0) << mv.err;
      EXPECT_NE(mv.out.find("renamed in place"), std::string::npos) << mv.out;
    } else {
      // What the build made stays in its workspace; the six inputs it
      // changed are the tree's again, written anew (a new mtime).
      EXPECT_NE(again.out.find("\nkept\nsub writable\n"), std::string::npos) << again.out;
      EXPECT_NE(again.out.find("(6 changed, 0 added, 0 removed, 1 untouched"), std::string::npos) << again.out;
      EXPECT_EQ(again.out.find("\n644 1\n"), std::string::npos) << again.out;
    }
  }
  EXPECT_EQ(DamagedCacheFiles(), std::vector<std::string>{});
}

TEST_F(Checkout, TwoJobsWritingTheSameInputAtOnceSeeOnlyTheirOwnWrites) {
  StartController();
  StartWorker(0, 2);
  const std::string img = Busybox();
  test::WriteFile(src() + "/shared.txt", "tree\n");
  // Each writes its job id into the same input and waits at a gate; once
  // both have written, the test opens both gates and each reads it back.
  const std::string script =
      "echo $KILN_JOB_ID > shared.txt; touch ready; while [ ! -e go ]; do sleep 0.05; done;"
      "[ \"$(cat shared.txt)\" = \"$KILN_JOB_ID\" ] && echo only mine";
  auto a = Submit(script, {"--image", img, "--detach"});
  auto b = Submit(script, {"--image", img, "--detach"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  std::string ida = a.out.substr(0, a.out.find('\n')), idb = b.out.substr(0, b.out.find('\n'));
  const std::string ja = JobTree(ida), jb = JobTree(idb);
  ASSERT_TRUE(test::WaitFor([&] { return fs::exists(ja + "/ready") && fs::exists(jb + "/ready"); }, 60s))
      << "both jobs wrote, and both are running";
  test::WriteFile(ja + "/go", "");
  test::WriteFile(jb + "/go", "");
  ASSERT_TRUE(test::WaitFor([&] { return Ended(ida) && Ended(idb); }, 60s));
  for (const auto& id : {ida, idb}) {
    EXPECT_EQ(Status(id).value("status", ""), "SUCCEEDED") << Status(id).dump();
    EXPECT_EQ(Kiln({"logs", id}).out, "only mine\n");
  }
}

TEST_F(Checkout, ABuildWritingPastItsDiskCapSeesEnospcAndTheHostKeepsItsSpace) {
  Up();
  const std::string img = Busybox();
  test::WriteFile(src() + "/in.txt", "x\n");
  struct statvfs before {};
  ASSERT_EQ(::statvfs(dir_.path().c_str(), &before), 0);
  // 256 MiB as fast as it can, against a 32 MiB cap; then it waits at a
  // gate, its disk as full as it got, and ends with dd's status.
  auto big = Submit("dd if=/dev/zero of=big bs=1M count=256; rc=$?; touch wrote;"
                    "while [ ! -e go ]; do sleep 0.05; done; exit $rc",
                    {"--image", img, "--disk", "32MiB", "--detach"});
  ASSERT_EQ(big.exit_code, 0) << big.err;
  const std::string id = big.out.substr(0, big.out.find('\n'));
  ASSERT_TRUE(test::WaitFor([&] { return fs::exists(JobTree(id) + "/wrote"); }, 60s));
  // What the host gave it: the allocated size of its disk's file, once
  // what the job wrote reached it (the job's file system writes back to
  // its loop device, and that to the file, in its own time: CI saw 16 MiB
  // right after dd ended; sync hurries it).
  struct stat img_st {};
  const std::string img_file = dir_.path() + "/w0/jobs/" + id + "-1/disk.img";
  EXPECT_TRUE(test::WaitFor(
      [&] {
        ::sync();
        return ::stat(img_file.c_str(), &img_st) == 0 && int64_t{img_st.st_blocks} * 512 > int64_t{24} << 20;
      },
      30s))
      << "it did write up to its cap: " << int64_t{img_st.st_blocks} * 512 << " bytes allocated";
  EXPECT_LT(int64_t{img_st.st_blocks} * 512, int64_t{36} << 20) << "bytes of host disk taken by a 32 MiB cap";
  // And the host as a whole, with everything the job wrote still there
  // (the margin is for what PostgreSQL and the daemons write meanwhile).
  struct statvfs during {};
  ASSERT_EQ(::statvfs(dir_.path().c_str(), &during), 0);
  int64_t lost = (static_cast<int64_t>(before.f_bavail) - static_cast<int64_t>(during.f_bavail)) *
                 static_cast<int64_t>(before.f_frsize);
  EXPECT_LT(lost, int64_t{96} << 20) << "bytes of host disk used by a build that tried to write 256 MiB";
  test::WriteFile(JobTree(id) + "/go", "");
  ASSERT_TRUE(test::WaitFor([&] { return Ended(id); }, 60s));
  auto st = Status(id);
  EXPECT_EQ(st.value("status", ""), "FAILED") << st.dump();
  EXPECT_EQ(st["result"].value("limit", ""), "disk") << st.dump();
  EXPECT_NE(st["result"].value("error", "").find("disk is full: it reached the limit of 32 MiB"), std::string::npos)
      << st.dump();
  EXPECT_NE(Kiln({"logs", id}).out.find("No space left on device"), std::string::npos);
  // Within its cap a build writes what it likes.
  auto fits = Submit("dd if=/dev/zero of=big bs=1M count=16 2>/dev/null && echo wrote", {"--image", img, "--disk", "32MiB"});
  EXPECT_EQ(fits.exit_code, 0) << fits.err << fits.out;
}

// A grammar and the parser generated from it, both in the tree; the
// generator (bison) is not installed. A fresh job, as a fresh clone, must
// not regenerate it: all inputs have one mtime.
void WriteGeneratedTree(const std::string& dir) {
  test::WriteFile(dir + "/parse.y", "%%\nstart: ;\n");
  test::WriteFile(dir + "/parse.c", "int parse(void) { return 0; }\n");
  test::WriteFile(dir + "/main.c", "int parse(void);\nint main(void) { return parse(); }\n");
  test::WriteFile(dir + "/Makefile",
                  "prog: main.o parse.o\n\tcat main.o parse.o > prog\n"
                  "%.o: %.c\n\tcat $< > $@\n"
                  "parse.c: parse.y\n\tbison -o $@ $<\n");
  // ninja needs its log to trust an output; a generated file without one
  // is only trusted where the edge says it is a generator's (as CMake's
  // re-run rule does). The same holds in a fresh local clone.
  test::WriteFile(dir + "/build.ninja",
                  "rule cat\n  command = cat $in > $out\n"
                  "rule bison\n  command = bison -o $out $in\n  generator = 1\n"
                  "build parse.c: bison parse.y\n"
                  "build main.o: cat main.c\nbuild parse.o: cat parse.c\n"
                  "build prog: cat main.o parse.o\n");
}

TEST_F(Checkout, AFreshJobHasCloneMtimesAndAWarmWorkspaceSeesChangedInputsAsNewer) {
  Up();
  // The toolchain image has make and ninja, and no bison.
  const std::string img = Toolchain();
  WriteGeneratedTree(src());
  auto bison = Submit("command -v make; command -v ninja; command -v bison || echo no bison", {"--image", img});
  ASSERT_EQ(bison.exit_code, 0) << bison.err;
  ASSERT_NE(bison.out.find("/make\n/usr/bin/ninja\nno bison\n"), std::string::npos) << bison.out;
  for (std::string tool : {"make", "ninja"}) {
    SCOPED_TRACE(tool);
    auto fresh = Submit(tool + " && stat -c %Y parse.y parse.c main.c | sort -u | wc -l", {"--image", img});
    ASSERT_EQ(fresh.exit_code, 0) << fresh.err << fresh.out;
    EXPECT_EQ(fresh.out.find("bison"), std::string::npos) << fresh.out;
    EXPECT_NE(fresh.out.find("\n1\n"), std::string::npos) << "one mtime for every input: " << fresh.out;
  }
  // A warm workspace: a changed input is newer than every output of the
  // last build, so exactly what depends on it is rebuilt.
  for (std::string tool : {"make", "ninja"}) {
    SCOPED_TRACE(tool);
    std::vector<std::string> ws{"--image", img, "--workspace", "persistent", "--workspace-name", tool};
    test::WriteFile(src() + "/main.c", "int parse(void);\nint main(void) { return parse(); }\n");
    auto first = Submit(tool, ws);
    ASSERT_EQ(first.exit_code, 0) << first.err << first.out;
    test::WriteFile(src() + "/main.c", "int parse(void);\nint main(void) { return parse() + 0; }\n");
    auto second = Submit(tool + " && cat prog", ws);
    ASSERT_EQ(second.exit_code, 0) << second.err << second.out;
    EXPECT_NE(second.out.find("cat main.c > main.o"), std::string::npos) << second.out;
    EXPECT_EQ(second.out.find("parse.c > parse.o"), std::string::npos) << "parse.o is up to date: " << second.out;
    EXPECT_NE(second.out.find("parse() + 0"), std::string::npos) << second.out;
  }
}

}  // namespace
}  // namespace kiln
