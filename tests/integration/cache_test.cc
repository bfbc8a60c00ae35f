// The action cache end to end: real controller, workers, runc containers and
// PostgreSQL, driven through the kiln CLI as a user would.

#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <string>

#include "cas/digest.h"
#include "harness/container_farm.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

class ActionCache : public ContainerFarm {
 protected:
  // A small source tree; returns its directory.
  std::string Source(const std::string& content = "input\n") {
    std::string src = dir_.path() + "/src";
    test::WriteFile(src + "/in.txt", content);
    test::WriteFile(src + "/sub/keep", "");
    return src;
  }
  // kiln submit of `script` in `image` on `src`, declaring out.txt.
  test::CommandResult Build(const std::string& image, const std::string& src, const std::string& script,
                            std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"submit", "--image", image, "--input", src, "--no-gitignore", "--output", "out.txt",
                                  "--outputs-dir", dir_.path() + "/out"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--", "sh", "-c", script});
    return Kiln(args);
  }
  // Jobs that ran on a worker (attempt > 0), as opposed to served from cache.
  int Ran() { return Count("attempt > 0"); }
  int64_t LastJob() { return std::stoll(test::Sql(url_, "SELECT max(id) FROM build_jobs")); }
  std::string BlobPath(const std::string& hash) { return dir_.path() + "/cas/blobs/" + hash.substr(0, 2) + "/" + hash; }
  // Waits until the controller's jobs of `project` use `scope` (it reloads
  // project configuration on NOTIFY kiln_config, a moment after a change).
  bool WaitForScope(const std::string& project, const std::string& scope) {
    return test::WaitFor(
        [&] {
          return Kiln({"cache", "stats", "--project", project}).out.find("(scope " + scope + ")") != std::string::npos;
        },
        10s);
  }
};

// Absolute paths: the same wherever the build starts (see the working directory case).
constexpr const char* kScript = "cat /src/in.txt > /src/out.txt; echo built from $(cat /src/in.txt)";

TEST_F(ActionCache, AnIdenticalBuildIsServedFromTheCacheWithoutAWorker) {
  Up();
  std::string img = Busybox();
  std::string src = Source();
  auto first = Build(img, src, kScript);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, "built from input\n");
  ASSERT_EQ(Ran(), 1);
  int64_t producer = LastJob();
  // The entry names its producer: the worker, the certificate it reported
  // under (the farm issued it to that worker) and the image.
  EXPECT_EQ(test::Sql(url_, "SELECT a.worker_id = j.worker_id AND a.image = '" + img + "'"
                            " AND EXISTS (SELECT 1 FROM worker_certs c WHERE c.serial = a.worker_cert"
                            "             AND c.worker_id = a.worker_id)"
                            " FROM action_cache a JOIN build_jobs j ON j.id = a.job_id"),
            "t");
  fs::remove(dir_.path() + "/out/out.txt");
  std::string log_rows = test::Sql(url_, "SELECT count(*) FROM job_logs");

  auto again = Build(img, src, kScript);
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, "built from input\n") << "the cached log is replayed";
  EXPECT_NE(again.err.find("from the action cache (the result of job " + std::to_string(producer)), std::string::npos)
      << again.err;
  EXPECT_EQ(test::ReadFile(dir_.path() + "/out/out.txt"), "input\n") << "the cached outputs are downloaded";
  EXPECT_EQ(Ran(), 1) << "no worker ran it";
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM job_logs"), log_rows) << "the log is referenced, not copied";
  int64_t hit = LastJob();
  EXPECT_EQ(test::Sql(url_, "SELECT coalesce(worker_id, '-') || ' ' || attempt || ' ' || status || ' ' ||"
                            " (result->>'cached_from') FROM build_jobs WHERE id = " + std::to_string(hit)),
            "- 0 succeeded " + std::to_string(producer));
  auto status = Kiln({"status", std::to_string(hit)});
  EXPECT_NE(status.out.find("action cache"), std::string::npos) << status.out;

  // --no-cache runs it (and records the new result).
  auto forced = Build(img, src, kScript, {"--no-cache"});
  ASSERT_EQ(forced.exit_code, 0) << forced.err;
  EXPECT_EQ(Ran(), 2);
  EXPECT_EQ(test::Sql(url_, "SELECT job_id FROM action_cache"), std::to_string(LastJob()));
}

TEST_F(ActionCache, AnythingThatCanChangeTheResultMisses) {
  StartController();
  StartWorker(0, 2, {"--label", "pool=a"});
  std::string img = Busybox();
  std::string src = Source();
  ASSERT_EQ(Build(img, src, kScript).exit_code, 0);
  ASSERT_EQ(Ran(), 1);
  int expected = 1;
  auto misses = [&](const char* what, const test::CommandResult& r) {
    EXPECT_EQ(r.exit_code, 0) << what << ": " << r.err;
    EXPECT_EQ(Ran(), ++expected) << what << " should have run the build: " << r.err;
  };
  misses("an environment variable", Build(img, src, kScript, {"--env", "CFLAGS=-O2"}));
  misses("the command", Build(img, src, std::string(kScript) + " ;"));
  misses("the working directory", Build(img, src, kScript, {"--workdir", "sub"}));
  misses("the declared outputs", Build(img, src, kScript, {"--output", "in.txt"}));
  misses("a platform requirement", Build(img, src, kScript, {"--require", "pool=a"}));
  test::WriteFile(src + "/in.txt", "changed\n");
  misses("an input file", Build(img, src, kScript));
  fs::permissions(src + "/in.txt", fs::perms::owner_exec, fs::perm_options::add);
  misses("an input's executable bit", Build(img, src, kScript));
  // And each of those is now cached in turn: the last one hits.
  auto hit = Build(img, src, kScript);
  EXPECT_EQ(hit.exit_code, 0);
  EXPECT_EQ(Ran(), expected);
  EXPECT_NE(hit.err.find("action cache"), std::string::npos) << hit.err;
}

TEST_F(ActionCache, EntriesServeOnlyTheirProjectUnlessProjectsShareAScope) {
  Up();
  std::string img = Busybox();
  std::string src = Source();
  for (const char* p : {"alpha", "beta", "gamma"}) {
    ASSERT_EQ(Kiln({"projects", "create", p}).exit_code, 0);
    ASSERT_EQ(Kiln({"clusters", "map", "default", p}).exit_code, 0);
  }
  // beta and gamma share a scope an admin created listing them.
  ASSERT_EQ(Kiln({"cache", "scopes", "set", "trusted", "--project", "beta", "--project", "gamma"}).exit_code, 0);
  for (const char* p : {"beta", "gamma"}) {
    ASSERT_EQ(Kiln({"projects", "config", "set", p, R"({"cache_scope": "trusted"})"}).exit_code, 0);
    ASSERT_TRUE(WaitForScope(p, "shared:trusted")) << p;
  }
  auto in = [&](const char* project) { return Build(img, src, kScript, {"--project", project}); };
  ASSERT_EQ(in("alpha").exit_code, 0);
  ASSERT_EQ(Ran(), 1);
  auto beta = in("beta");
  EXPECT_EQ(beta.exit_code, 0);
  EXPECT_EQ(Ran(), 2) << "another project's entry is not used: " << beta.err;
  auto gamma = in("gamma");  // shares beta's scope
  EXPECT_EQ(gamma.exit_code, 0);
  EXPECT_NE(gamma.err.find("action cache"), std::string::npos) << gamma.err;
  EXPECT_EQ(Ran(), 2);
  auto alpha = in("alpha");
  EXPECT_NE(alpha.err.find("action cache"), std::string::npos) << alpha.err;
}

// "Results are only as trusted as their producer": naming another team's
// cache_scope shared its entries without its consent. Only the projects an
// admin's scope lists are served from it, and only while it lists them.
TEST_F(ActionCache, OnlyTheProjectsAScopeListsAreServedFromIt) {
  Up();
  std::string img = Busybox();
  std::string src = Source();
  for (const char* p : {"alpha", "beta", "mallory"}) {
    ASSERT_EQ(Kiln({"projects", "create", p}).exit_code, 0);
    ASSERT_EQ(Kiln({"clusters", "map", "default", p}).exit_code, 0);
  }
  const std::string conf = R"({"cache_scope": "alpha-team"})";
  // Before an admin creates the scope nobody may name it.
  auto early = Kiln({"projects", "config", "set", "alpha", conf});
  EXPECT_EQ(early.exit_code, 5) << early.err;
  EXPECT_NE(early.err.find("cache scope alpha-team does not exist: an admin creates it with kiln cache scopes set "
                           "alpha-team --project alpha --project OTHER"),
            std::string::npos)
      << early.err;
  auto set = Kiln({"cache", "scopes", "set", "alpha-team", "--project", "alpha", "--project", "beta"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_EQ(set.out,
            "cache scope alpha-team: projects alpha, beta share its action and compile cache entries (each project's "
            "configuration names it with \"cache_scope\": \"alpha-team\")\n");
  for (const char* p : {"alpha", "beta"}) {
    auto r = Kiln({"projects", "config", "set", p, conf});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(WaitForScope(p, "shared:alpha-team")) << p;
  }
  // A project the scope does not list may not name it.
  auto refused = Kiln({"projects", "config", "set", "mallory", conf});
  EXPECT_EQ(refused.exit_code, 5) << refused.err;
  EXPECT_NE(refused.err.find("cache scope alpha-team does not list project mallory"), std::string::npos)
      << refused.err;
  EXPECT_EQ(test::Sql(url_, "SELECT config::text FROM projects WHERE name = 'mallory'"), "{}");

  auto in = [&](const char* project) { return Build(img, src, kScript, {"--project", project}); };
  ASSERT_EQ(in("alpha").exit_code, 0);
  ASSERT_EQ(Ran(), 1);
  auto beta = in("beta");
  ASSERT_EQ(beta.exit_code, 0) << beta.err;
  EXPECT_NE(beta.err.find("action cache"), std::string::npos) << "beta is listed: " << beta.err;
  EXPECT_EQ(Ran(), 1);
  int64_t served = LastJob();
  auto mallory = in("mallory");
  ASSERT_EQ(mallory.exit_code, 0) << mallory.err;
  EXPECT_EQ(mallory.err.find("action cache"), std::string::npos) << mallory.err;
  EXPECT_EQ(Ran(), 2) << "mallory's build ran in its own scope";

  // beta removed from the scope: its identical build runs, though its
  // configuration still names the scope.
  auto removed = Kiln({"cache", "scopes", "set", "alpha-team", "--project", "alpha"});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  ASSERT_TRUE(WaitForScope("beta", "project:beta"));
  auto again = in("beta");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, "built from input\n");
  EXPECT_EQ(again.err.find("action cache"), std::string::npos) << again.err;
  EXPECT_EQ(Ran(), 3) << "beta is no longer served alpha's result";
  const std::string id = std::to_string(LastJob());
  auto status = Kiln({"status", id});
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_EQ(status.out.find("action cache"), std::string::npos) << status.out;
  auto why = Kiln({"why", id});
  ASSERT_EQ(why.exit_code, 0) << why.err;
  EXPECT_NE(why.out.find("job " + id + " ran although job " + std::to_string(served) +
                         " is identical and had succeeded"),
            std::string::npos)
      << why.out;
  auto show = Kiln({"projects", "show", "beta"});
  EXPECT_NE(show.out.find("project:beta (its cache_scope alpha-team is not in effect"), std::string::npos)
      << show.out;
  // alpha still is.
  auto alpha = in("alpha");
  EXPECT_NE(alpha.err.find("action cache"), std::string::npos) << alpha.err;
  EXPECT_EQ(Ran(), 3);
  auto list = Kiln({"cache", "scopes", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("alpha-team"), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find("beta"), std::string::npos) << list.out;
}

TEST_F(ActionCache, WhySaysWhatChangedSinceTheNearestEarlierJob) {
  Up();
  std::string img = Busybox();
  std::string src = Source();
  test::WriteFile(src + "/inc/defs.h", "#define A 1\n");
  test::WriteFile(src + "/gone.c", "x\n");
  ASSERT_EQ(Build(img, src, kScript).exit_code, 0);
  int64_t first = LastJob();
  ASSERT_EQ(Build(img, src, kScript).exit_code, 0);
  int64_t hit = LastJob();
  auto why_hit = Kiln({"why", std::to_string(hit)});
  ASSERT_EQ(why_hit.exit_code, 0) << why_hit.err;
  EXPECT_NE(why_hit.out.find("was served from the action cache: it is identical to job " + std::to_string(first)),
            std::string::npos)
      << why_hit.out;
  // A header changed, a file added, one removed, and a flag.
  test::WriteFile(src + "/inc/defs.h", "#define A 2\n");
  test::WriteFile(src + "/inc/new.h", "\n");
  fs::remove(src + "/gone.c");
  ASSERT_EQ(Build(img, src, kScript, {"--env", "CFLAGS=-O0"}).exit_code, 0);
  int64_t changed = LastJob();
  auto why = Kiln({"why", std::to_string(changed)});
  ASSERT_EQ(why.exit_code, 0) << why.err;
  EXPECT_NE(why.out.find("ran: its action differs from job " + std::to_string(hit)), std::string::npos) << why.out;
  EXPECT_NE(why.out.find("compared with job " + std::to_string(hit) + " (succeeded"), std::string::npos) << why.out;
  EXPECT_NE(why.out.find("env CFLAGS: added, \"-O0\""), std::string::npos) << why.out;
  EXPECT_NE(why.out.find("input tree: 1 modified, 1 added, 1 removed"), std::string::npos) << why.out;
  std::string before = cas::DigestOf(std::string_view("#define A 1\n")).hash.substr(0, 12);
  std::string after = cas::DigestOf(std::string_view("#define A 2\n")).hash.substr(0, 12);
  auto line_of = [&](const std::string& path) {
    size_t at = why.out.find(" " + path + " ");
    if (at == std::string::npos) return std::string();
    size_t start = why.out.rfind('\n', at) + 1;
    return why.out.substr(start, why.out.find('\n', at) - start);
  };
  std::string header = line_of("inc/defs.h");
  EXPECT_NE(header.find("modified"), std::string::npos) << why.out;
  EXPECT_NE(header.find("file sha256:" + before), std::string::npos) << header;
  EXPECT_NE(header.find("file sha256:" + after), std::string::npos) << header;
  EXPECT_NE(line_of("inc/new.h").find("added"), std::string::npos) << why.out;
  EXPECT_NE(line_of("gone.c").find("removed"), std::string::npos) << why.out;
  // The earlier tree was collected meanwhile: said so, the rest still shown.
  test::Sql(url_, "DELETE FROM cas_trees WHERE digest = '" + Get(*Jobs(), hit).spec().input_root().hash() + "'");
  auto gone = Kiln({"why", std::to_string(changed)});
  EXPECT_EQ(gone.exit_code, 0) << gone.err;
  EXPECT_NE(gone.out.find("input tree: changed, but the trees cannot be compared: directory node"), std::string::npos)
      << gone.out;
  EXPECT_NE(gone.out.find("env CFLAGS"), std::string::npos) << gone.out;
  // Not cacheable at all: said so.
  ASSERT_EQ(Kiln({"submit", "--no-input", "--", "true"}).exit_code, 0);
  auto plain = Kiln({"why", std::to_string(LastJob())});
  EXPECT_NE(plain.out.find("is not cacheable: it names no image"), std::string::npos) << plain.out;
  EXPECT_EQ(Kiln({"why", "999999"}).exit_code, 4);
}

// Declared outputs downloaded into the tree are not inputs of the next
// submit while they hold what kiln wrote: "submit, edit nothing, submit
// again" hits, and an edit makes the file an input again.
TEST_F(ActionCache, DownloadedOutputsAreNotInputsWhileUnchanged) {
  Up();
  std::string img = Busybox();
  std::string src = Source();
  // A file, and a directory with a file and a symlink in it; all downloaded into src.
  const std::string script =
      "rm -rf /src/out.txt /src/dist; cat /src/in.txt > /src/out.txt; mkdir -p /src/dist/bin; "
      "echo app > /src/dist/bin/app; ln -s bin/app /src/dist/current; echo built";
  auto build = [&] {
    return Kiln({"submit", "--image", img, "--input", src, "--no-gitignore", "--output", "out.txt", "--output",
                 "dist", "--", "sh", "-c", script});
  };
  auto first = build();
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_EQ(Ran(), 1);
  int64_t producer = LastJob();
  ASSERT_EQ(test::ReadFile(src + "/out.txt"), "input\n") << "downloaded into the tree";
  ASSERT_EQ(fs::read_symlink(src + "/dist/current"), "bin/app");

  auto again = build();
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_NE(again.err.find("from the action cache (the result of job " + std::to_string(producer)), std::string::npos)
      << again.err;
  EXPECT_EQ(Ran(), 1) << "nothing was edited: an identical build";
  EXPECT_NE(again.err.find("left out 3 paths kiln downloaded as declared outputs"), std::string::npos) << again.err;
  int64_t hit = LastJob();
  EXPECT_EQ(Get(*Jobs(), hit).spec().input_root().hash(), Get(*Jobs(), producer).spec().input_root().hash());
  auto why = Kiln({"why", std::to_string(hit)});
  ASSERT_EQ(why.exit_code, 0) << why.err;
  EXPECT_NE(why.out.find("left out of the input tree: dist/bin/app dist/current out.txt (declared outputs that "
                         "kiln downloaded there"),
            std::string::npos)
      << why.out;
  auto status = Kiln({"status", std::to_string(hit)});
  EXPECT_NE(status.out.find("left out:"), std::string::npos) << status.out;

  // An edited download is an input again; kiln why says so.
  test::WriteFile(src + "/out.txt", "edited by hand\n");
  auto edited = build();
  ASSERT_EQ(edited.exit_code, 0) << edited.err;
  EXPECT_EQ(Ran(), 2) << "the edited file is an input: not a cache hit. " << edited.err;
  EXPECT_NE(edited.err.find("left out 2 paths"), std::string::npos) << edited.err;
  EXPECT_NE(edited.err.find("3 files, 21 B"), std::string::npos) << "in.txt, sub/keep, out.txt: " << edited.err;
  EXPECT_EQ(edited.err.find("-1 unchanged"), std::string::npos) << edited.err;
  auto why_edited = Kiln({"why", std::to_string(LastJob())});
  EXPECT_NE(why_edited.out.find("ran: its action differs from job " + std::to_string(hit)), std::string::npos)
      << why_edited.out;
  EXPECT_NE(why_edited.out.find("an input again: changed since kiln downloaded it"), std::string::npos)
      << why_edited.out;
  EXPECT_EQ(test::ReadFile(src + "/out.txt"), "input\n") << "the build's output replaced the edit";

  // Downloaded over the edit, it is kiln's again: unchanged, the next submit hits.
  auto back = build();
  ASSERT_EQ(back.exit_code, 0) << back.err;
  EXPECT_EQ(Ran(), 2) << back.err;
  EXPECT_NE(back.err.find("from the action cache (the result of job " + std::to_string(producer)), std::string::npos)
      << back.err;
}

// --outputs-dir inside the tree: what kiln wrote there (and the directory
// it created for it) is not an input either.
TEST_F(ActionCache, AnOutputsDirectoryInsideTheTreeIsNotAnInputEither) {
  Up();
  std::string img = Busybox();
  std::string src = Source();
  auto build = [&] {
    return Kiln({"submit", "--image", img, "--input", src, "--no-gitignore", "--output", "out.txt", "--outputs-dir",
                 src + "/dl/latest", "--", "sh", "-c", kScript});
  };
  auto first = build();
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_EQ(test::ReadFile(src + "/dl/latest/out.txt"), "input\n");
  auto again = build();
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(Ran(), 1) << again.err;
  EXPECT_NE(again.err.find("from the action cache"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("left out 1 path kiln downloaded as declared outputs, unchanged since (dl/latest/out.txt)"),
            std::string::npos)
      << again.err;
}

// A file shipped in the tree that the build regenerates and declares as an
// output stays an input: the build must see it, as it would locally.
TEST_F(ActionCache, AShippedFileDeclaredAsAnOutputStaysAnInput) {
  Up();
  std::string img = Busybox();
  std::string src = Source();
  test::WriteFile(src + "/gen.c", "shipped\n");
  const std::string script = "cat /src/gen.c; rm -f /src/gen.c; echo regenerated > /src/gen.c";
  auto build = [&] {
    return Kiln({"submit", "--image", img, "--input", src, "--no-gitignore", "--output", "gen.c", "--", "sh", "-c",
                 script});
  };
  auto first = build();
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_EQ(first.out, "shipped\n");
  int64_t producer = LastJob();
  ASSERT_EQ(test::ReadFile(src + "/gen.c"), "regenerated\n");

  // kiln replaced a file it had not written: it stays an input, with the
  // downloaded bytes, and the build sees it.
  auto second = build();
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.out, "regenerated\n") << second.err;
  EXPECT_EQ(Ran(), 2);
  EXPECT_EQ(second.err.find("left out"), std::string::npos) << second.err;
  auto why = Kiln({"why", std::to_string(LastJob())});
  EXPECT_EQ(why.out.find("left out of the input tree"), std::string::npos) << why.out;

  // The shipped bytes back (say, git checkout): an input that differs from
  // the download, so the tree is the first one's again.
  test::WriteFile(src + "/gen.c", "shipped\n");
  auto restored = build();
  ASSERT_EQ(restored.exit_code, 0) << restored.err;
  EXPECT_EQ(Ran(), 2);
  EXPECT_NE(restored.err.find("from the action cache (the result of job " + std::to_string(producer)),
            std::string::npos)
      << restored.err;
  EXPECT_EQ(restored.out, "shipped\n") << "the first build's log";
}

TEST_F(ActionCache, OnlySuccessfulContainerBuildsAreCached) {
  Up();
  std::string img = Busybox();
  std::string src = Source();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(Build(img, src, "exit 3").exit_code, 3);
  EXPECT_EQ(Ran(), 2) << "a failed build is run again";
  // Without an image a job depends on its host: never cached.
  for (int i = 0; i < 2; ++i) {
    auto r = Kiln({"submit", "--input", src, "--no-gitignore", "--", "cat", "in.txt"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
  }
  EXPECT_EQ(Ran(), 4);
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM action_cache"), "0");
}

TEST_F(ActionCache, TwoIdenticalJobsInFlightRunOnce) {
  Up();
  std::string img = Busybox();
  std::string src = Source();
  const std::string slow = "sleep 1; " + std::string(kScript);
  auto a = Build(img, src, slow, {"--detach"});
  auto b = Build(img, src, slow, {"--detach"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  int64_t ida = std::stoll(a.out), idb = std::stoll(b.out);
  EXPECT_EQ(Get(*Jobs(), idb).waits_for_job(), ida);
  ASSERT_TRUE(AllEnded(60s));
  EXPECT_EQ(Ran(), 1);
  auto jb = Get(*Jobs(), idb);
  EXPECT_EQ(jb.status(), v1::SUCCEEDED);
  EXPECT_EQ(jb.result().cached_from_job(), ida);
  EXPECT_EQ(jb.result().output_root().hash(), Get(*Jobs(), ida).result().output_root().hash());
  EXPECT_EQ(Log(*Jobs(), idb), "built from input\n");

  // A waiter whose leader is cancelled runs itself.
  auto c = Build(img, src, "sleep 30", {"--detach"});
  auto d = Build(img, src, "sleep 30", {"--detach"});
  int64_t idc = std::stoll(c.out), idd = std::stoll(d.out);
  ASSERT_EQ(Get(*Jobs(), idd).waits_for_job(), idc);
  ASSERT_TRUE(test::WaitFor([&] { return Get(*Jobs(), idc).status() == v1::RUNNING; }, 30s));
  EXPECT_EQ(Get(*Jobs(), idd).status(), v1::QUEUED);
  ASSERT_EQ(Kiln({"cancel", std::to_string(idc)}).exit_code, 0);
  EXPECT_EQ(Get(*Jobs(), idd).waits_for_job(), 0) << "it no longer waits for the cancelled job";
  EXPECT_TRUE(test::WaitFor([&] { return Get(*Jobs(), idd).status() == v1::RUNNING; }, 30s));
  EXPECT_EQ(Kiln({"cancel", std::to_string(idd)}).exit_code, 0);
}

TEST_F(ActionCache, AWorkerKilledBetweenBuildAndReportLeavesNoEntry) {
  StartController();
  auto& w = StartWorker(0, 1);
  std::string img = Busybox();
  std::string src = Source();
  auto sub = Build(img, src, "echo start; sleep 2; " + std::string(kScript), {"--detach"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  int64_t id = std::stoll(sub.out);
  ASSERT_TRUE(test::WaitFor([&] { return Log(*Jobs(), id) == "start\n"; }, 30s));
  std::string container = Containers();
  container = container.substr(0, container.find('\n'));
  ASSERT_FALSE(container.empty());
  // The worker freezes; the build finishes and exits; then the worker dies
  // before it could upload or report anything.
  w.Signal(SIGSTOP);
  std::string wdir = dir_.path() + "/w0";
  ASSERT_TRUE(test::WaitFor(
      [&] {
        auto st = test::RunCommand({"/usr/sbin/runc", "--root", wdir + "/runc", "state", container}, 10s);
        return st.out.find("\"stopped\"") != std::string::npos;
      },
      30s));
  w.Signal(SIGKILL);
  w.Wait(5s);
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM action_cache"), "0");
  EXPECT_NE(Get(*Jobs(), id).status(), v1::SUCCEEDED);
  // The same worker comes back (cleaning up its container); the job runs again.
  StartWorker(0, 1, {}, wdir);
  ASSERT_TRUE(test::WaitFor([&] { return Get(*Jobs(), id).status() == v1::SUCCEEDED; }, 60s));
  EXPECT_EQ(Get(*Jobs(), id).attempt(), 2);
  // One entry, whose output tree and blob are all stored.
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM action_cache a JOIN cas_trees t"
                            " ON t.digest = split_part(a.result->>'output_root', '/', 1)"),
            "1");
  EXPECT_TRUE(fs::exists(BlobPath(cas::DigestOf(std::string_view("input\n")).hash)));
  auto hit = Build(img, src, "echo start; sleep 2; " + std::string(kScript));
  EXPECT_EQ(hit.exit_code, 0) << hit.err;
  EXPECT_NE(hit.err.find("action cache"), std::string::npos) << hit.err;
}

TEST_F(ActionCache, TheCollectorKeepsWhatEntriesReferenceUntilTheyExpire) {
  extra_conf_ = "cas_gc_interval = 200ms\ncas_min_age = 1s\ncas_max_age = 1s\noutput_retention = 1s\n";
  SetUp();
  Up();
  std::string img = Busybox();
  std::string src = Source("kept as output\n");
  test::WriteFile(src + "/only-input.txt", "only an input\n");
  ASSERT_EQ(Build(img, src, kScript).exit_code, 0);
  std::string output = BlobPath(cas::DigestOf(std::string_view("kept as output\n")).hash);
  std::string input_only = BlobPath(cas::DigestOf(std::string_view("only an input\n")).hash);
  // Past the retention, the finished job's input goes; the cached output stays.
  ASSERT_TRUE(test::WaitFor([&] { return !fs::exists(input_only); }, 30s));
  EXPECT_TRUE(fs::exists(output));
  fs::remove_all(dir_.path() + "/out");
  auto hit = Build(img, src, kScript);
  ASSERT_EQ(hit.exit_code, 0) << hit.err;
  EXPECT_NE(hit.err.find("action cache"), std::string::npos) << hit.err;
  EXPECT_EQ(test::ReadFile(dir_.path() + "/out/out.txt"), "kept as output\n");
  // An entry unused for action_cache_max_age goes, and its outputs after it.
  test::Sql(url_, "UPDATE action_cache SET last_used = now() - interval '100 days'");
  EXPECT_TRUE(test::WaitFor([&] { return test::Sql(url_, "SELECT count(*) FROM action_cache") == "0"; }, 30s));
  EXPECT_TRUE(test::WaitFor([&] { return !fs::exists(output); }, 30s));
}

}  // namespace
}  // namespace kiln
