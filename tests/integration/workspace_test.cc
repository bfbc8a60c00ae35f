// Warm workspaces end to end: real controller, workers and PostgreSQL, driven
// through the kiln CLI. Syncing a new tree into a workspace, one job at a
// time, locality with a grace, discarding after a kill, kiln workspace rm,
// and a one-file change that builds what a clean build builds.

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <set>
#include <sstream>
#include <string>

#include "harness/c_project.h"
#include "harness/container_farm.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

class Workspaces : public ContainerFarm {
 protected:
  Workspaces() { extra_conf_ = "workspace_grace = 1s\n"; }

  std::string src() const { return dir_.path() + "/tree"; }
  std::string Q(const std::string& sql) { return test::Sql(url_, sql); }
  int64_t LastJob() { return std::stoll(Q("SELECT max(id) FROM build_jobs")); }
  std::string WorkerOf(int64_t job) { return Q("SELECT worker_id FROM build_jobs WHERE id = " + std::to_string(job)); }

  // kiln submit in the warm workspace `name` (plain processes: the sync is
  // the same in a container); returns the CLI's result.
  test::CommandResult InWorkspace(const std::string& script, std::vector<std::string> extra = {},
                                  const std::string& name = "main") {
    std::vector<std::string> args{"submit", "--workspace", "persistent", "--workspace-name", name, "--input", src(),
                                  "--no-gitignore"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--", "sh", "-c", script});
    return Kiln(args, 120s);
  }

  // "path kind inode mtime" of every entry under the job's directory, as the
  // build sees it, and the content of regular files.
  static constexpr const char* kList =
      "find . -path ./.tmp -prune -o -print | sort | while read p; do"
      "  if [ -L \"$p\" ]; then echo \"$p link $(readlink \"$p\")\";"
      "  elif [ -d \"$p\" ]; then echo \"$p dir\";"
      "  else echo \"$p file $(stat -c '%i %Y.%y %a' \"$p\") $(cat \"$p\" | head -c 40)\"; fi; done";
  std::map<std::string, std::string> Listing(const std::string& out) {
    std::map<std::string, std::string> m;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("./", 0) != 0 && line != ".") continue;
      auto sp = line.find(' ');
      m[line.substr(0, sp)] = sp == std::string::npos ? "" : line.substr(sp + 1);
    }
    return m;
  }
};

TEST_F(Workspaces, ANewTreeIsSyncedIntoTheWorkspaceAndWhatBuildsLeftStays) {
  Up();
  test::WriteFile(src() + "/a.txt", "a1\n");
  test::WriteFile(src() + "/b.sh", "echo b\n");
  test::WriteFile(src() + "/dir/c.txt", "c\n");
  test::WriteFile(src() + "/becomes_file/x.txt", "x\n");
  test::WriteFile(src() + "/becomes_dir", "file\n");
  test::WriteFile(src() + "/old.txt", "renamed\n");
  fs::create_symlink("a.txt", src() + "/link");
  // The first build leaves outputs beside and inside the tree's directories.
  auto first = InWorkspace(std::string("mkdir -p out && echo obj > out/obj.o && echo gen > dir/gen.txt; ") + kList);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.out.find("kiln: warm workspace main on worker"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("new: the tree was written in full"), std::string::npos) << first.out;
  auto before = Listing(first.out);
  ASSERT_TRUE(before.count("./dir/c.txt")) << first.out;

  test::WriteFile(src() + "/a.txt", "a2\n");
  fs::permissions(src() + "/b.sh", fs::perms::owner_exec, fs::perm_options::add);
  fs::remove_all(src() + "/becomes_file");
  test::WriteFile(src() + "/becomes_file", "now a file\n");
  fs::remove(src() + "/becomes_dir");
  test::WriteFile(src() + "/becomes_dir/y.txt", "y\n");
  fs::rename(src() + "/old.txt", src() + "/new.txt");
  test::WriteFile(src() + "/added.txt", "added\n");
  auto second = InWorkspace(kList);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  // a.txt, b.sh and becomes_file changed; becomes_dir, its y.txt, new.txt
  // and added.txt added; old.txt and becomes_file/x.txt removed.
  EXPECT_NE(second.out.find("(3 changed, 4 added, 2 removed, 3 untouched"), std::string::npos) << second.out;
  auto after = Listing(second.out);
  // Untouched: the same inode and mtime, so make sees nothing new.
  EXPECT_EQ(after["./dir/c.txt"], before["./dir/c.txt"]);
  EXPECT_EQ(after["./link"], "link a.txt");
  // Replaced: new content, a new file; the executable bit follows the tree.
  EXPECT_NE(after["./a.txt"].find("a2"), std::string::npos) << after["./a.txt"];
  EXPECT_NE(after["./a.txt"].substr(0, after["./a.txt"].find(' ', 5)),
            before["./a.txt"].substr(0, before["./a.txt"].find(' ', 5)));
  EXPECT_NE(after["./b.sh"].find(" 755 "), std::string::npos) << after["./b.sh"];
  EXPECT_NE(after["./becomes_file"].find("file "), std::string::npos) << after["./becomes_file"];
  EXPECT_FALSE(after.count("./becomes_file/x.txt"));
  EXPECT_EQ(after["./becomes_dir"], "dir");
  EXPECT_TRUE(after.count("./becomes_dir/y.txt"));
  EXPECT_FALSE(after.count("./old.txt")) << "a renamed file leaves its old name";
  EXPECT_TRUE(after.count("./new.txt"));
  EXPECT_TRUE(after.count("./added.txt"));
  // What the first build wrote is still there.
  EXPECT_NE(after["./out/obj.o"].find("obj"), std::string::npos) << second.out;
  EXPECT_NE(after["./dir/gen.txt"].find("gen"), std::string::npos) << second.out;

  // And back: the file a directory again, the directory a file.
  fs::remove(src() + "/becomes_file");
  test::WriteFile(src() + "/becomes_file/z.txt", "z\n");
  fs::remove_all(src() + "/becomes_dir");
  test::WriteFile(src() + "/becomes_dir", "file again\n");
  auto third = InWorkspace(kList);
  ASSERT_EQ(third.exit_code, 0) << third.err;
  auto back = Listing(third.out);
  EXPECT_EQ(back["./becomes_file"], "dir");
  EXPECT_TRUE(back.count("./becomes_file/z.txt"));
  EXPECT_NE(back["./becomes_dir"].find("file again"), std::string::npos) << back["./becomes_dir"];
  EXPECT_EQ(back["./dir/c.txt"], before["./dir/c.txt"]);
  // Exactly the tree plus the outputs: nothing else.
  std::set<std::string> expect = {"./a.txt", "./added.txt", "./b.sh", "./becomes_dir", "./becomes_file",
                                  "./becomes_file/z.txt", "./dir", "./dir/c.txt", "./dir/gen.txt", "./link",
                                  "./new.txt", "./out", "./out/obj.o"};
  std::set<std::string> got;
  for (const auto& [p, _] : back) got.insert(p);
  EXPECT_EQ(got, expect) << third.out;
}

TEST_F(Workspaces, ABuildCannotMakeTheSyncWriteOrDeleteOutsideTheWorkspace) {
  Up();
  const std::string img = Busybox();
  // A host directory the build must never reach through the worker.
  const std::string victim = dir_.path() + "/victim";
  test::WriteFile(victim + "/secret", "host file\n");
  test::WriteFile(src() + "/d/secret", "tree file\n");
  test::WriteFile(src() + "/d/keep", "k\n");
  // The build replaces a tree directory by a symlink to that host path.
  auto evil = InWorkspace("rm -rf d && ln -s " + victim + " d && ls -la", {"--image", img});
  ASSERT_EQ(evil.exit_code, 0) << evil.err << evil.out;
  // The next tree drops d/secret: the sync must not follow the link.
  fs::remove(src() + "/d/secret");
  auto next = InWorkspace("ls d; test -L d && echo still a link || echo a directory", {"--image", img});
  ASSERT_EQ(next.exit_code, 0) << next.err;
  EXPECT_EQ(test::ReadFile(victim + "/secret"), "host file\n") << "nothing outside the workspace was touched";
  EXPECT_FALSE(fs::exists(victim + "/keep")) << "nothing was written through the link";
  EXPECT_NE(next.out.find("keep\na directory"), std::string::npos) << "d is the tree's directory again: " << next.out;
}

TEST_F(Workspaces, WhatABuildDidToItsInputsIsUndoneByTheNextSync) {
  Up();
  test::WriteFile(src() + "/keep.txt", "k\n");
  test::WriteFile(src() + "/edited.txt", "tree\n");
  test::WriteFile(src() + "/deleted.txt", "tree\n");
  test::WriteFile(src() + "/moved/m.txt", "tree\n");
  test::WriteFile(src() + "/swapped/s.txt", "tree\n");
  // The build deletes one input, writes its own file in another's place,
  // moves a directory away (a new one of the same name in its place) and
  // moves another away with a symlink to it in its place (the same files,
  // seen through the link: not the tree's directory).
  auto first = InWorkspace(std::string(kList) +
                           "; rm deleted.txt && rm -f edited.txt && echo build > edited.txt"
                           " && mv moved elsewhere && mkdir moved && echo build > moved/m.txt"
                           " && mv swapped aside && ln -s aside swapped");
  ASSERT_EQ(first.exit_code, 0) << first.err << first.out;
  auto before = Listing(first.out);
  // The same tree again (another command: the action cache does not answer).
  auto second = InWorkspace(std::string("echo; cat edited.txt deleted.txt moved/m.txt swapped/s.txt keep.txt; ") + kList);
  ASSERT_EQ(second.exit_code, 0) << second.err << second.out;
  EXPECT_NE(second.out.find("\ntree\ntree\ntree\ntree\nk\n"), std::string::npos)
      << "the build sees the tree, not what the last build made of it: " << second.out;
  auto after = Listing(second.out);
  EXPECT_EQ(after["./keep.txt"], before["./keep.txt"]) << "an input the build left alone stays untouched";
  EXPECT_EQ(after["./swapped"], "dir");
  EXPECT_TRUE(after.count("./swapped/s.txt")) << second.out;
  EXPECT_TRUE(after.count("./elsewhere/m.txt")) << "what the build made stays: " << second.out;
  EXPECT_TRUE(after.count("./aside/s.txt")) << "what the build made stays: " << second.out;
}

TEST_F(Workspaces, OneJobAtATimeAndNeverAcrossProjects) {
  StartController();
  StartWorker(0, 2);
  test::WriteFile(src() + "/in.txt", "in\n");
  auto slow = Kiln({"submit", "--detach", "--workspace", "persistent", "--workspace-name", "main", "--input", src(),
                    "--no-gitignore", "--", "sh", "-c", "echo mine > marker; sleep 5"});
  ASSERT_EQ(slow.exit_code, 0) << slow.err;
  const std::string slow_id = slow.out.substr(0, slow.out.find('\n'));
  ASSERT_TRUE(test::WaitFor([&] { return Q("SELECT status FROM build_jobs WHERE id = " + slow_id) == "running"; }, 20s));
  auto second = InWorkspace("ls");
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_NE(second.out.find("in.txt"), std::string::npos);
  EXPECT_EQ(second.out.find("marker"), std::string::npos) << "it did not share the busy workspace";
  EXPECT_NE(second.out.find("workspace main is in use by another job"), std::string::npos) << second.out;
  ASSERT_TRUE(AllEnded(30s));
  EXPECT_NE(InWorkspace("cat marker").out.find("mine"), std::string::npos) << "the workspace kept the first job's file";
  // Another project's workspace of the same name is another workspace.
  ASSERT_EQ(Kiln({"projects", "create", "other"}).exit_code, 0);
  ASSERT_EQ(Kiln({"clusters", "map", "default", "other"}).exit_code, 0);
  auto other = InWorkspace("ls; test ! -e marker && echo clean", {"--project", "other"});
  EXPECT_NE(other.out.find("clean"), std::string::npos) << other.out << other.err;
  auto list = Kiln({"workspace", "list"});
  EXPECT_NE(list.out.find("default  main"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("other    main"), std::string::npos) << list.out;
  // A job without inputs keeps a workspace too: the empty tree, then what it left.
  std::vector<std::string> scratch{"submit", "--workspace", "persistent", "--workspace-name", "scratch", "--no-input",
                                   "--", "sh", "-c", "cat left 2>/dev/null || echo none; echo again > left"};
  auto first = Kiln(scratch);
  ASSERT_EQ(first.exit_code, 0) << first.out << first.err;
  EXPECT_NE(first.out.find("none"), std::string::npos) << first.out;
  auto next = Kiln(scratch);
  ASSERT_EQ(next.exit_code, 0) << next.out << next.err;
  EXPECT_NE(next.out.find("again"), std::string::npos) << next.out;
}

TEST_F(Workspaces, TheHolderGetsTheNextJobAndAnotherWorkerTakesItWhenTheHolderIsBusy) {
  StartController();
  StartWorker(0, 1, {"--label", "pool=a"});
  StartWorker(0, 1, {"--label", "pool=b"});
  test::WriteFile(src() + "/in.txt", "in\n");
  // Workspace "one" made on worker a, "two" on worker b (pinned once).
  ASSERT_EQ(InWorkspace("true", {"--require", "pool=a"}, "one").exit_code, 0);
  const std::string a = WorkerOf(LastJob());
  ASSERT_EQ(InWorkspace("true", {"--require", "pool=b"}, "two").exit_code, 0);
  const std::string b = WorkerOf(LastJob());
  ASSERT_NE(a, b);
  ASSERT_TRUE(test::WaitFor([&] { return Q("SELECT count(*) FROM workspaces") == "2"; }, 10s));
  // Both workers free, no pin: each workspace's job goes to its holder
  // (whichever worker the dispatcher would pick first otherwise).
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(InWorkspace("true", {}, "one").exit_code, 0);
    EXPECT_EQ(WorkerOf(LastJob()), a) << "round " << i;
    ASSERT_EQ(InWorkspace("true", {}, "two").exit_code, 0);
    EXPECT_EQ(WorkerOf(LastJob()), b) << "round " << i;
  }
  const std::string holder = a;
  // The holder busy: after the grace (1 s here) the other worker builds it.
  const std::string pool = Q("SELECT properties->>'pool' FROM workers WHERE id = '" + holder + "'");
  auto busy = Kiln({"submit", "--detach", "--require", "pool=" + pool, "--no-input", "--", "sleep", "20"});
  ASSERT_EQ(busy.exit_code, 0) << busy.err;
  const std::string busy_id = busy.out.substr(0, busy.out.find('\n'));
  ASSERT_TRUE(test::WaitFor([&] { return Q("SELECT status FROM build_jobs WHERE id = " + busy_id) == "running"; }, 20s));
  auto began = std::chrono::steady_clock::now();
  auto r = InWorkspace("true", {}, "one");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(WorkerOf(LastJob()), holder);
  EXPECT_LT(std::chrono::steady_clock::now() - began, 15s) << "it did not wait for the holder";
  EXPECT_NE(r.out.find("new: the tree was written in full"), std::string::npos) << "a workspace of its own: " << r.out;
  EXPECT_EQ(Kiln({"cancel", busy_id}).exit_code, 0);
}

TEST_F(Workspaces, AKilledOrCancelledBuildLeavesNoHalfWrittenWorkspaceAndRmDeletesIt) {
  StartController();
  StartWorker(0, 1);
  test::WriteFile(src() + "/in.txt", "in\n");
  ASSERT_EQ(InWorkspace("echo built > out.o").exit_code, 0);
  EXPECT_NE(InWorkspace("cat out.o").out.find("built"), std::string::npos);
  // A failed build (an exit code) keeps it: make's own logic deals with that.
  EXPECT_EQ(InWorkspace("exit 2").exit_code, 2);
  EXPECT_NE(InWorkspace("cat out.o").out.find("built"), std::string::npos);
  // A cancelled one may have left anything half written: the next starts clean.
  auto slow = Kiln({"submit", "--detach", "--workspace", "persistent", "--workspace-name", "main", "--input", src(),
                    "--no-gitignore", "--", "sh", "-c", "echo half > out.o; sleep 30"});
  ASSERT_EQ(slow.exit_code, 0);
  const std::string id = slow.out.substr(0, slow.out.find('\n'));
  ASSERT_TRUE(test::WaitFor([&] { return Q("SELECT status FROM build_jobs WHERE id = " + id) == "running"; }, 20s));
  ASSERT_EQ(Kiln({"cancel", id}).exit_code, 0);
  auto after = InWorkspace("cat out.o || echo no output");
  EXPECT_NE(after.out.find("no output"), std::string::npos) << after.out;
  EXPECT_NE(after.out.find("new: the tree was written in full"), std::string::npos) << after.out;
  // A worker killed in the middle of a build: its workspace is gone at restart.
  auto doomed = Kiln({"submit", "--detach", "--workspace", "persistent", "--workspace-name", "main", "--input", src(),
                      "--no-gitignore", "--", "sh", "-c", "echo half > out.o; sleep 30"});
  const std::string doomed_id = doomed.out.substr(0, doomed.out.find('\n'));
  ASSERT_TRUE(test::WaitFor([&] { return Q("SELECT status FROM build_jobs WHERE id = " + doomed_id) == "running"; }, 20s));
  workers_[0]->Signal(SIGKILL);
  workers_[0]->Wait(10s);
  // Its job goes back in line when the stream drops; cancelled before it runs again.
  ASSERT_TRUE(test::WaitFor([&] { return Q("SELECT status FROM build_jobs WHERE id = " + doomed_id) == "queued"; }, 20s));
  ASSERT_EQ(Kiln({"cancel", doomed_id}).exit_code, 0);
  StartWorker(0, 1, {}, dir_.path() + "/w0");
  EXPECT_NE(test::ReadFile(logs_.back()).find("a job was using it when the worker stopped"), std::string::npos);
  auto clean = InWorkspace("cat out.o || echo no output; echo kept > out.o");
  EXPECT_NE(clean.out.find("new: the tree was written in full"), std::string::npos) << clean.out;
  // A worker stopped between builds keeps its workspaces warm across the restart.
  workers_.back()->Signal(SIGTERM);
  ASSERT_EQ(workers_.back()->Wait(20s), 0);
  StartWorker(0, 1, {}, dir_.path() + "/w0");
  test::WriteFile(src() + "/in.txt", "changed\n");
  auto warm = InWorkspace("cat out.o in.txt");
  EXPECT_NE(warm.out.find("(1 changed, 0 added, 0 removed,"), std::string::npos) << warm.out;
  EXPECT_NE(warm.out.find("kept\nchanged\n"), std::string::npos) << warm.out;
  // kiln workspace rm: the worker deletes it, the list forgets it.
  ASSERT_TRUE(test::WaitFor([&] { return Kiln({"workspace", "list"}).out.find("main") != std::string::npos; }, 10s));
  auto rm = Kiln({"workspace", "rm", "main"});
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_NE(rm.out.find("1 worker deletes it"), std::string::npos) << rm.out;
  EXPECT_TRUE(test::WaitFor([&] { return Q("SELECT count(*) FROM workspaces") == "0"; }, 10s));
  EXPECT_TRUE(test::WaitFor([&] { return fs::is_empty(dir_.path() + "/w0/workspaces"); }, 10s));
  EXPECT_EQ(Kiln({"workspace", "rm", "main"}).exit_code, 4) << "nothing left to remove";
}

// Two workers on one host: a restarted worker takes over only the dead rows
// of its own work directory, never its neighbour's. (Keyed by hostname, w1's
// restart took w0's row, with the removal it carried, and w0 came back
// still holding a workspace that kiln workspace rm had removed.)
TEST_F(Workspaces, OfTwoWorkersOnOneHostEachTakesOverOnlyItsOwnWorkDir) {
  StartController();
  StartWorker(0, 1);  // w0
  test::WriteFile(src() + "/in.txt", "in\n");
  ASSERT_EQ(InWorkspace("echo built > out.o").exit_code, 0);
  StartWorker(0, 1);  // w1, same host
  EXPECT_EQ(Q("SELECT count(DISTINCT hostname) || ' ' || count(DISTINCT work_dir) FROM workers"), "1 2");
  EXPECT_EQ(Q("SELECT work_dir FROM workers w JOIN workspaces h ON h.worker_id = w.id"), dir_.path() + "/w0");
  // w0 stops; its workspace is removed while it is away.
  workers_[0]->Signal(SIGTERM);
  ASSERT_EQ(workers_[0]->Wait(20s), 0);
  auto rm = Kiln({"workspace", "rm", "main"});
  ASSERT_EQ(rm.exit_code, 0) << rm.err;
  // w1 restarts first: w0's row is not its own.
  workers_[1]->Signal(SIGTERM);
  ASSERT_EQ(workers_[1]->Wait(20s), 0);
  StartWorker(0, 1, {}, dir_.path() + "/w1");
  EXPECT_EQ(Q("SELECT count(*) FROM workspaces WHERE removed"), "1") << "w0's removal is still waiting for it";
  // w0 comes back: it learns of the removal and deletes the workspace.
  StartWorker(0, 1, {}, dir_.path() + "/w0");
  EXPECT_TRUE(test::WaitFor([&] { return Q("SELECT count(*) FROM workspaces") == "0"; }, 10s));
  EXPECT_TRUE(test::WaitFor([&] { return fs::is_empty(dir_.path() + "/w0/workspaces"); }, 10s));
}

TEST_F(Workspaces, AOneFileChangeInAWarmWorkspaceBuildsWhatACleanBuildBuilds) {
  Up();
  const std::string img = Toolchain();
  test::WriteCProject(src());
  auto build = [&](const std::string& mode, const std::string& outdir) {
    std::vector<std::string> args{"submit",   "--image", img,     "--workspace", mode,     "--input",       src(),
                                  "--no-gitignore", "--output", "app", "--output", "out", "--outputs-dir", outdir};
    if (mode == "fresh") args.insert(args.end(), {"--no-cache", "--no-compile-cache"});
    args.insert(args.end(), {"--", "make", "-j2", "app"});
    fs::remove_all(outdir);
    auto r = Kiln(args, 120s);
    EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
    return r;
  };
  auto artifacts = [](const std::string& d) {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(d))
      if (e.is_regular_file()) out[fs::relative(e.path(), d).string()] = test::ReadFile(e.path());
    return out;
  };
  // The objects make compiled, from its echoed commands ("... -c -o out/x.o x.c").
  auto compiled = [](const std::string& out) {
    std::set<std::string> objects;
    const std::string flag = " -c -o ";
    for (size_t at = out.find(flag); at != std::string::npos; at = out.find(flag, at + 1)) {
      size_t from = at + flag.size();
      objects.insert(out.substr(from, out.find(' ', from) - from));
    }
    return objects;
  };
  auto first = build("persistent", dir_.path() + "/warm");
  EXPECT_EQ(compiled(first.out), (std::set<std::string>{"out/main.o", "out/a.o", "out/b.o", "out/c.o", "out/lib/d.o"}))
      << first.out;
  test::WriteFile(src() + "/c.c", "#include \"common.h\"\nint unit_c(void) { return 33; }\n");
  auto one = build("persistent", dir_.path() + "/warm");
  EXPECT_EQ(compiled(one.out), std::set<std::string>{"out/c.o"}) << "only the changed unit recompiles: " << one.out;
  build("fresh", dir_.path() + "/clean");
  EXPECT_EQ(artifacts(dir_.path() + "/warm"), artifacts(dir_.path() + "/clean"))
      << "the incremental build gives the clean build's bytes";
  // A header: make (with the -MMD files) rebuilds its dependants only.
  test::WriteFile(src() + "/include/leaf.h", "#define LEAF 50\n");
  auto header = build("persistent", dir_.path() + "/warm");
  EXPECT_EQ(compiled(header.out), (std::set<std::string>{"out/a.o", "out/b.o"})) << header.out;
  build("fresh", dir_.path() + "/clean");
  EXPECT_EQ(artifacts(dir_.path() + "/warm"), artifacts(dir_.path() + "/clean"));
  EXPECT_EQ(test::RunCommand({dir_.path() + "/warm/app"}, 10s).out, "hello 100 101 33 4 \n");
}

}  // namespace
}  // namespace kiln
