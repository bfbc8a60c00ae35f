// Builds in runc containers: real runc, a real image made from Debian's
// busybox-static (deploy/images/busybox.sh), imported with the kiln CLI.

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cas/digest.h"
#include "harness/container_farm.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

using Sandbox = ContainerFarm;

TEST_F(Sandbox, TheBuildSeesOnlyItsImageAndTreeAsANonRootUserWithoutNetwork) {
  Up();
  std::string img = Busybox();
  // The host's own addresses (never an address off this machine): the
  // controller listens on loopback; the first non-loopback one, if any.
  std::string port = addresses_[0].substr(addresses_[0].rfind(':') + 1);
  auto ips = test::RunCommand({"/bin/sh", "-c", "hostname -I | awk '{print $1}'"}, 10s);
  std::string host_ip = ips.out.substr(0, ips.out.find('\n'));
  if (host_ip.empty()) host_ip = "127.0.0.2";
  auto r = Run(img, {},
               "id -u; grep -c : /proc/net/dev; "
               "nc -w 2 127.0.0.1 " + port + " </dev/null 2>/dev/null && echo CONNECTED || echo no-tcp; "
               "nc -w 2 " + host_ip + " " + port + " </dev/null 2>/dev/null && echo CONNECTED || echo no-tcp; "
               "ping -c 1 -W 1 " + host_ip + " >/dev/null 2>&1 && echo PINGED || echo no-ping; "
               "touch /usr/x 2>/dev/null && echo WROTE-USR || echo usr-read-only; "
               "ls / | tr '\\n' ' '; echo; test -e " + dir_.path() + " && echo SEES-HOST || echo host-hidden");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "100000\n"
            "1\n"  // lo only
            "no-tcp\n"
            "no-tcp\n"
            "no-ping\n"
            "usr-read-only\n"
            "bin dev etc kiln proc src sys tmp usr \n"
            "host-hidden\n");
}

TEST_F(Sandbox, ACProgramBuildsWithMakeInTheToolchainImageAndRunsOnTheHost) {
  Up();
  // Built once per machine (mmdebstrap from Debian's packages), then cached.
  std::string img = Toolchain();
  ASSERT_FALSE(HasFailure());
  std::string dest = dir_.path() + "/built";
  auto r = Kiln({"submit", "--image", img, "--input", std::string(KILN_SOURCE_DIR) + "/deploy/sample", "--no-gitignore",
                 "--exclude", "*.o", "--exclude", "hello", "--output", "hello", "--outputs-dir", dest, "--", "make"},
                300s);
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  // make compiled both units and linked in the container, as the sample's Makefile says.
  EXPECT_EQ(r.out,
            "cc  -O2 -Wall -c -o hello.o hello.c\n"
            "cc  -O2 -Wall -c -o util.o util.c\n"
            "cc  -o hello hello.o util.o\n");
  auto run = test::RunCommand({dest + "/hello"}, 10s);
  EXPECT_EQ(run.exit_code, 0);
  EXPECT_NE(run.out.find("hello from kiln"), std::string::npos) << run.out;
  // The seccomp profile: no new (user) namespace through clone; a plain fork
  // still works (and clone3 falls back to clone, as make and gcc showed).
  std::string probe = dir_.path() + "/probe";
  fs::create_directories(probe);
  test::WriteFile(probe + "/probe.c",
                  "#define _GNU_SOURCE\n#include <errno.h>\n#include <sched.h>\n#include <signal.h>\n"
                  "#include <stdio.h>\n#include <sys/syscall.h>\n#include <sys/wait.h>\n#include <unistd.h>\n"
                  "static const char* try_clone(long flags) {\n"
                  "  long r = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);\n"
                  "  if (r == 0) _exit(0);\n"
                  "  if (r < 0) return errno == EPERM ? \"refused\" : \"failed\";\n"
                  "  waitpid((pid_t)r, 0, 0);\n  return \"ok\";\n}\n"
                  "int main(void) {\n  printf(\"userns %s\\n\", try_clone(CLONE_NEWUSER));\n"
                  "  printf(\"netns %s\\n\", try_clone(CLONE_NEWNET));\n"
                  "  printf(\"fork %s\\n\", try_clone(0));\n  return 0;\n}\n");
  auto p = Kiln({"submit", "--image", img, "--input", probe, "--no-gitignore", "--", "sh", "-c",
                 "cc -o /tmp/probe probe.c && /tmp/probe"},
                120s);
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(p.out, "userns refused\nnetns refused\nfork ok\n");
}

TEST_F(Sandbox, LimitsEndTheJobAndSayWhich) {
  Up();
  std::string img = Busybox();
  auto mem = Run(img, {"--memory", "32MiB"}, "head -c 300000000 /dev/zero | tail > /dev/null");
  EXPECT_NE(mem.exit_code, 0);
  EXPECT_NE(mem.err.find("killed: exceeded memory limit 32 MiB"), std::string::npos) << mem.err;
  auto pids = Run(img, {"--pids", "16"}, "for i in $(seq 40); do sleep 5 & done; wait");
  EXPECT_NE(pids.exit_code, 0);
  EXPECT_NE(pids.err.find("reached the limit of 16 processes"), std::string::npos) << pids.err;
  auto slow = Run(img, {"--timeout-s", "1"}, "sleep 30");
  EXPECT_EQ(slow.exit_code, 124) << slow.err;
  // CPU: half a core is the container's CFS quota while it runs.
  auto cpu = Run(img, {"--cpus", "0.5", "--detach"}, "echo started; sleep 30");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.err;
  int64_t cpu_job = std::stoll(cpu.out);
  // Once the build runs, runc has set its cgroup up, named like the
  // container, below the worker's cgroup in each hierarchy (the worker is in
  // this test's cgroups).
  ASSERT_TRUE(test::WaitFor([&] { return Log(*Jobs(), cpu_job) == "started\n"; }, 30s));
  std::string container = Containers().substr(0, Containers().find('\n'));
  auto own = [](const std::string& controller) {
    return "$(awk -F: '$2 ~ /(^|,)" + controller + "(,|$)/ {print $3}' /proc/self/cgroup | sed 's#/$##')";
  };
  auto quota = test::RunCommand(
      {"/bin/sh", "-c",
       "cat /sys/fs/cgroup/cpu" + own("cpu") + "/" + container + "/cpu.cfs_quota_us; "
       "cat /sys/fs/cgroup/memory" + own("memory") + "/" + container + "/memory.limit_in_bytes"},
      10s);
  EXPECT_EQ(quota.out, "50000\n4294967296\n") << quota.err;
  EXPECT_EQ(Kiln({"cancel", cpu.out.substr(0, cpu.out.find('\n'))}).exit_code, 0);
  // Nothing of them is left running.
  auto left = test::RunCommand({"/bin/sh", "-c", "ls " + dir_.path() + "/w0/bundles | wc -l"}, 10s);
  EXPECT_EQ(left.out, "0\n");
}

TEST_F(Sandbox, CancelStopsTheContainerPromptly) {
  Up();
  std::string img = Busybox();
  auto sub = Run(img, {"--detach"}, "echo started; sleep 60");
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  int64_t id = std::stoll(sub.out);
  auto jobs = Jobs();
  ASSERT_TRUE(test::WaitFor([&] { return Log(*jobs, id) == "started\n"; }, 30s));
  ASSERT_NE(Containers(), "");
  auto asked = std::chrono::steady_clock::now();
  ASSERT_EQ(Kiln({"cancel", "--no-wait", std::to_string(id)}).exit_code, 0);
  // The container itself is gone (not only the job marked) within a second
  // (typically under 0.1 s here).
  ASSERT_TRUE(test::WaitFor([&] { return Containers().empty(); }, 20s)) << Containers();
  auto took = std::chrono::steady_clock::now() - asked;
  EXPECT_LT(took, 1s);
  std::cerr << "cancel to container gone: " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
            << " ms\n";
  ASSERT_TRUE(test::WaitFor([&] { return Get(*jobs, id).status() == v1::CANCELLED; }, 20s));
}

TEST_F(Sandbox, OutputsOfAContainerBuildComeBackAndRepeat) {
  StartController();
  StartWorker(0, 1, {"--label", "n=0"});
  StartWorker(0, 1, {"--label", "n=1"});
  std::string img = Busybox();
  std::string src = dir_.path() + "/proj";
  test::WriteFile(src + "/in.txt", "input\n");
  std::string outs[2];
  for (int i = 0; i < 2; ++i) {
    std::string dest = dir_.path() + "/out" + std::to_string(i);
    // Once on each worker process.
    auto r = Kiln({"submit", "--image", img, "--require", "n=" + std::to_string(i), "--output", "dist",
                   "--outputs-dir", dest, "--", "sh", "-c",
                   "mkdir -p dist && tr a-z A-Z < in.txt > dist/up.txt && pwd > dist/where"},
                  60s, src);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    outs[i] = test::ReadFile(dest + "/dist/up.txt") + test::ReadFile(dest + "/dist/where");
  }
  EXPECT_EQ(outs[0], "INPUT\n/src\n");
  EXPECT_EQ(outs[0], outs[1]);
}

// A tar with the given entries (name -> content; a name ending in '/' is a
// directory; content "-> T" makes a symlink to T).
void WriteTar(const std::string& path, const std::vector<std::pair<std::string, std::string>>& entries) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_open_filename(a, path.c_str());
  for (const auto& [name, data] : entries) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    bool dir = !name.empty() && name.back() == '/';
    bool link = data.rfind("-> ", 0) == 0;
    archive_entry_set_filetype(e, dir ? AE_IFDIR : link ? AE_IFLNK : AE_IFREG);
    archive_entry_set_perm(e, dir ? 0755 : 0644);
    if (link) archive_entry_set_symlink(e, data.substr(3).c_str());
    archive_entry_set_size(e, dir || link ? 0 : static_cast<la_int64_t>(data.size()));
    archive_write_header(a, e);
    if (!dir && !link) archive_write_data(a, data.data(), data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

// An OCI layout around one layer file; returns the manifest digest.
std::string MakeLayout(const std::string& dir, const std::string& layer_path) {
  auto blob = [&](const std::string& data) {
    auto d = cas::DigestOf(std::string_view(data));
    test::WriteFile(dir + "/blobs/sha256/" + d.hash, data);
    return d;
  };
  auto layer = cas::DigestOf(std::string_view(test::ReadFile(layer_path)));
  fs::create_directories(dir + "/blobs/sha256");
  fs::copy_file(layer_path, dir + "/blobs/sha256/" + layer.hash, fs::copy_options::overwrite_existing);
  auto config = blob(R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}})");
  nlohmann::json m = {{"schemaVersion", 2},
                      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                      {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                                  {"digest", "sha256:" + config.hash}, {"size", config.size}}},
                      {"layers", {{{"mediaType", "application/vnd.oci.image.layer.v1.tar"},
                                   {"digest", "sha256:" + layer.hash}, {"size", layer.size}}}}};
  auto md = blob(m.dump());
  test::WriteFile(dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  nlohmann::json index = {{"schemaVersion", 2},
                          {"manifests", {{{"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                                          {"digest", "sha256:" + md.hash}, {"size", md.size}}}}};
  test::WriteFile(dir + "/index.json", index.dump());
  return "sha256:" + md.hash;
}

TEST_F(Sandbox, ImagesAreVerifiedAndUnpackedSafely) {
  Up();
  // The same image twice: the same digest.
  std::string a = Busybox(), b = Busybox();
  EXPECT_EQ(a, b);
  // An unknown digest fails at submit, not on a worker.
  auto unknown = Run("sha256:" + std::string(64, 'e'), {}, "true");
  EXPECT_EQ(unknown.exit_code, 4);
  EXPECT_NE(unknown.err.find("is not imported; import it with: kiln image import"), std::string::npos) << unknown.err;

  // A layout whose layer was tampered with is refused at import.
  std::string layer = dir_.path() + "/layer.tar";
  WriteTar(layer, {{"etc/", ""}, {"etc/motd", "hello\n"}});
  std::string layout = dir_.path() + "/layout";
  MakeLayout(layout, layer);
  std::string lh = cas::DigestOf(std::string_view(test::ReadFile(layer))).hash;
  std::string tampered = test::ReadFile(layer);
  tampered[600] ^= 1;
  test::WriteFile(layout + "/blobs/sha256/" + lh, tampered);
  auto bad = Kiln({"image", "import", layout});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("the image is damaged"), std::string::npos) << bad.err;

  // A layer that climbs out with "../" imports (its digest is right) but
  // never unpacks: the job fails and says why; nothing lands outside.
  std::string evil = dir_.path() + "/evil.tar";
  WriteTar(evil, {{"bin/", ""}, {"../../../../../../tmp/kiln-escape-test", "pwned\n"}});
  std::string evil_layout = dir_.path() + "/evil-layout";
  MakeLayout(evil_layout, evil);
  auto imp = Kiln({"image", "import", evil_layout});
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  std::string evil_img = imp.out.substr(0, imp.out.find('\n'));
  auto run = Run(evil_img, {}, "true");
  EXPECT_NE(run.exit_code, 0);
  EXPECT_NE(run.err.find("leaves the archive's tree"), std::string::npos) << run.err;
  EXPECT_FALSE(fs::exists("/tmp/kiln-escape-test"));

  // An absolute symlink is fine inside the image, but nothing is written
  // through it: a later entry under it is refused.
  std::string via = dir_.path() + "/via-link.tar";
  WriteTar(via, {{"host", "-> /"}, {"host/tmp/kiln-escape-test", "pwned\n"}});
  std::string via_layout = dir_.path() + "/via-layout";
  MakeLayout(via_layout, via);
  auto imp2 = Kiln({"image", "import", via_layout});
  ASSERT_EQ(imp2.exit_code, 0) << imp2.err;
  auto run2 = Run(imp2.out.substr(0, imp2.out.find('\n')), {}, "true");
  EXPECT_NE(run2.exit_code, 0);
  EXPECT_NE(run2.err.find("goes through the symlink 'host'"), std::string::npos) << run2.err;
  EXPECT_FALSE(fs::exists("/tmp/kiln-escape-test"));
}

TEST_F(Sandbox, AWorkerKilledMidBuildLeavesNoContainerOnceItIsBack) {
  StartController();
  StartWorker(0, 1);
  std::string img = Busybox();
  auto sub = Run(img, {"--detach"}, "echo started; sleep 600");
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  int64_t id = std::stoll(sub.out);
  auto jobs = Jobs();
  ASSERT_TRUE(test::WaitFor([&] { return Log(*jobs, id) == "started\n"; }, 30s));
  std::string wdir = dir_.path() + "/w0";
  auto containers = [&] { return Containers(0); };
  std::string old = containers();
  ASSERT_NE(old, "");
  old = old.substr(0, old.find('\n'));  // kiln-<worker>-<job>-1
  workers_[0]->Signal(SIGKILL);
  workers_[0]->Wait(5s);
  EXPECT_NE(containers().find(old), std::string::npos) << "the container outlives its worker until the worker is back";
  // The same worker (same work directory) comes back and cleans up first.
  StartWorker(0, 1, {}, wdir);
  EXPECT_TRUE(test::WaitFor([&] { return containers().find(old) == std::string::npos; }, 20s)) << containers();
  EXPECT_TRUE(test::WaitFor([&] { return !fs::exists(wdir + "/bundles/" + old); }, 20s));
  // And the job runs again elsewhere (here: on the restarted worker).
  EXPECT_TRUE(test::WaitFor([&] { return Get(*jobs, id).attempt() >= 2; }, 30s));
  // Stop it before the harness kills the worker (a killed worker's container
  // waits for the worker's return, which would not come).
  EXPECT_EQ(Kiln({"cancel", std::to_string(id)}).exit_code, 0);
  EXPECT_TRUE(test::WaitFor([&] { return containers().empty(); }, 20s)) << containers();
}

TEST_F(Sandbox, TwoJobsNeedingANewImageUnpackItOnce) {
  StartController();
  StartWorker(0, 2);
  std::string img = Busybox();
  auto s1 = Run(img, {"--detach"}, "sleep 0.5");
  auto s2 = Run(img, {"--detach"}, "sleep 0.5");
  ASSERT_EQ(s1.exit_code, 0);
  ASSERT_EQ(s2.exit_code, 0);
  ASSERT_TRUE(AllEnded(60s));
  EXPECT_EQ(Count("status = 'succeeded'"), 2);
  std::string log = workers_[0]->Log();
  size_t n = 0;
  for (size_t p = log.find("unpacked:"); p != std::string::npos; p = log.find("unpacked:", p + 1)) ++n;
  EXPECT_EQ(n, 1u) << log;
}

TEST_F(Sandbox, TheImageStoreEvictsTheLeastRecentlyUsedImagePastItsCap) {
  StartController();
  StartWorker(0, 1, {"--set", "image_cache_bytes=3MiB"});  // one busybox image (2 MiB), not two
  std::string a = Busybox();
  // A second image: the same root plus one file.
  std::string tar = dir_.path() + "/busybox2.tar";
  auto mk = test::RunCommand({"/bin/sh", "-c",
                              "cp " + dir_.path() + "/busybox.tar " + tar + " && cd " + dir_.path() +
                                  " && mkdir -p extra/etc && echo two > extra/etc/variant && tar -rf " + tar +
                                  " -C extra ./etc/variant"},
                             30s);
  ASSERT_EQ(mk.exit_code, 0) << mk.err;
  auto imp = Kiln({"image", "import", tar, "--name", "busybox2"});
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  std::string b = imp.out.substr(0, imp.out.find('\n'));
  ASSERT_NE(a, b);
  std::string store = dir_.path() + "/w0/images/";
  auto unpacked = [&](const std::string& img) { return fs::exists(store + img.substr(7) + "/rootfs/bin/busybox"); };
  EXPECT_EQ(Run(a, {}, "true").exit_code, 0);
  EXPECT_TRUE(unpacked(a));
  auto rb = Run(b, {}, "cat /etc/variant");
  EXPECT_EQ(rb.exit_code, 0) << rb.err;
  EXPECT_EQ(rb.out, "two\n");
  // a was not in use and is older: gone; b stays until something replaces it.
  EXPECT_FALSE(unpacked(a));
  EXPECT_TRUE(unpacked(b));
  // And a comes back when needed.
  EXPECT_EQ(Run(a, {}, "test ! -e /etc/variant").exit_code, 0);
  EXPECT_TRUE(unpacked(a));
  EXPECT_FALSE(unpacked(b));
}

}  // namespace
}  // namespace kiln
