// The action digest: its encoding is a contract (docs/architecture.md,
// "Action cache"), so it is pinned here byte for byte.

#include <gtest/gtest.h>

#include "cache/action.h"
#include "cas/digest.h"

namespace kiln::cache {
namespace {

queue::JobSpec Sample() {
  queue::JobSpec s;
  s.image = "sha256:" + std::string(64, 'a');
  s.argv = {"make", "-j8"};
  s.env = {{"CFLAGS", "-O2"}, {"A", "x\ny"}};
  s.working_dir = "sub";
  s.input_root = std::string(64, 'b') + "/120";
  s.outputs = {"dist/app", "bin/tool", "dist/app"};
  s.requirements = {{"arch", "x86_64"}, {"sandbox", "runc"}};
  s.timeout_s = 60;
  s.memory_bytes = 1 << 30;
  return s;
}

TEST(ActionDigest, EncodingIsPinned) {
  EXPECT_EQ(ActionEncoding(Sample()),
            "kiln-action-1\n"
            "image 71:sha256:" + std::string(64, 'a') + "\n"
            "argv 2\narg 4:make\narg 3:-j8\n"
            "env 2\nname 1:A\nvalue 3:x\ny\nname 6:CFLAGS\nvalue 3:-O2\n"
            "cwd 3:sub\n"
            "input 68:" + std::string(64, 'b') + "/120\n"
            "outputs 2\noutput 8:bin/tool\noutput 8:dist/app\n"
            "platform 2\nname 4:arch\nvalue 6:x86_64\nname 7:sandbox\nvalue 4:runc\n");
  EXPECT_EQ(ActionDigest(Sample()), cas::DigestOf(ActionEncoding(Sample())).hash);
}

TEST(ActionDigest, EveryResultInputChangesItAndNothingElseDoes) {
  const std::string base = ActionDigest(Sample());
  auto changed = [&](auto edit) {
    queue::JobSpec s = Sample();
    edit(s);
    return ActionDigest(s) != base;
  };
  EXPECT_TRUE(changed([](queue::JobSpec& s) { s.image = "sha256:" + std::string(64, 'c'); }));
  EXPECT_TRUE(changed([](queue::JobSpec& s) { s.argv.push_back("V=1"); }));
  EXPECT_TRUE(changed([](queue::JobSpec& s) { s.argv = {"make -j8"}; }));  // no joining ambiguity
  EXPECT_TRUE(changed([](queue::JobSpec& s) { s.env["CFLAGS"] = "-O0"; }));
  EXPECT_TRUE(changed([](queue::JobSpec& s) { s.working_dir = ""; }));
  EXPECT_TRUE(changed([](queue::JobSpec& s) { s.input_root = std::string(64, 'b') + "/121"; }));
  EXPECT_TRUE(changed([](queue::JobSpec& s) { s.outputs.push_back("lib"); }));
  EXPECT_TRUE(changed([](queue::JobSpec& s) { s.requirements["arch"] = "aarch64"; }));
  // Order of outputs, duplicates, limits and timeouts do not change a result.
  EXPECT_FALSE(changed([](queue::JobSpec& s) { s.outputs = {"bin/tool", "dist/app"}; }));
  EXPECT_FALSE(changed([](queue::JobSpec& s) { s.timeout_s = 3600; }));
  EXPECT_FALSE(changed([](queue::JobSpec& s) { s.memory_bytes = 0; }));
  EXPECT_FALSE(changed([](queue::JobSpec& s) { s.pids = 10; }));
}

TEST(ActionDigest, ExcludedOutputsAreNotPartOfIt) {
  // What the CLI left out of the input tree is already absent from the input
  // root: the list only explains it, and must not make an identical tree miss.
  queue::JobSpec s = Sample();
  s.excluded_outputs = {"dist/app", "bin/tool"};
  EXPECT_EQ(ActionDigest(s), ActionDigest(Sample()));
}

TEST(ActionDigest, OnlyJobsInAnImageAreCacheable) {
  queue::JobSpec s = Sample();
  EXPECT_TRUE(Cacheable(s));
  s.image.clear();
  EXPECT_FALSE(Cacheable(s));
}

}  // namespace
}  // namespace kiln::cache
