#pragma once
// A farm whose builds run in runc containers, with the kiln CLI and the
// busybox image (deploy/images/busybox.sh) at hand. Needs KILN_SOURCE_DIR.

#include <filesystem>
#include <string>
#include <vector>

#include "harness/farm.h"

namespace kiln {

class ContainerFarm : public Farm {
 protected:
  test::CommandResult Kiln(std::vector<std::string> args, std::chrono::milliseconds timeout = 60s,
                           const std::string& cwd = "") {
    std::vector<std::string> argv{test::BinPath("kiln"), "--controller", addresses_[0]};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string dir = cwd.empty() ? dir_.path() + "/cwd" : cwd;
    std::filesystem::create_directories(dir);
    return test::RunCommand(argv, timeout, {{"XDG_CACHE_HOME", dir_.path() + "/xdg"}}, dir);
  }
  // Imports the busybox image; returns its digest.
  std::string Busybox() {
    std::string tar = dir_.path() + "/busybox.tar";
    auto b = test::RunCommand({"/bin/bash", std::string(KILN_SOURCE_DIR) + "/deploy/images/busybox.sh", tar}, 60s);
    EXPECT_EQ(b.exit_code, 0) << b.err;
    auto r = Kiln({"image", "import", tar, "--name", "busybox"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string d = r.out.substr(0, r.out.find('\n'));
    EXPECT_EQ(d.rfind("sha256:", 0), 0u) << r.out;
    return d;
  }
  // Imports the toolchain image (deploy/images/toolchain.sh: built once per
  // machine, then cached); returns its digest. Sets toolchain_tar_.
  std::string Toolchain() {
    auto tc = test::RunCommand({"/bin/bash", std::string(KILN_SOURCE_DIR) + "/deploy/images/toolchain.sh"}, 600s);
    EXPECT_EQ(tc.exit_code, 0) << tc.err;
    toolchain_tar_ = tc.out.substr(0, tc.out.find('\n'));
    auto imp = Kiln({"image", "import", toolchain_tar_, "--name", "toolchain"}, 300s);
    EXPECT_EQ(imp.exit_code, 0) << imp.err;
    return imp.out.substr(0, imp.out.find('\n'));
  }
  std::string toolchain_tar_;

  // Container ids in worker n's runc state directory, one per line.
  std::string Containers(int n = 0) {
    return test::RunCommand({"/usr/sbin/runc", "--root", dir_.path() + "/w" + std::to_string(n) + "/runc", "list", "-q"},
                            10s)
        .out;
  }
  void Up() {
    StartController();
    StartWorker(0, 2);
  }
  // Runs a command in the image (no input tree); returns the CLI's result.
  test::CommandResult Run(const std::string& image, std::vector<std::string> extra, const std::string& script) {
    std::vector<std::string> args{"submit", "--no-input", "--image", image};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"--", "sh", "-c", script});
    return Kiln(args);
  }
};

}  // namespace kiln
