#include <gtest/gtest.h>

#include <fstream>

#include "common/text.h"
#include "common/util.h"
#include "config/config.h"
#include "config/project_config.h"

namespace kiln {
namespace {

TEST(Duration, ParsesUnitsAndRejectsGarbage) {
  EXPECT_EQ(ParseDuration("250ms")->count(), 250);
  EXPECT_EQ(ParseDuration("5s")->count(), 5000);
  EXPECT_EQ(ParseDuration("2m")->count(), 120000);
  EXPECT_EQ(ParseDuration("7")->count(), 7000);
  EXPECT_FALSE(ParseDuration("5 parsecs").ok());
  EXPECT_FALSE(ParseDuration("").ok());
  EXPECT_FALSE(ParseDuration("-1s").ok());
}

TEST(ControllerConfig, FileThenValidation) {
  std::string path = "/tmp/kiln-config-test-" + std::to_string(getpid());
  std::ofstream(path) << "# comment\nlisten = 0.0.0.0:9000\ndatabase_url = 'host=/tmp dbname=x'\nlease = 4s\n";
  auto c = config::LoadController(path);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->listen, "0.0.0.0:9000");
  EXPECT_EQ(c->database_url, "host=/tmp dbname=x");
  EXPECT_EQ(c->lease.count(), 4000);
  EXPECT_TRUE(config::Validate(*c).ok());
  c->lease = std::chrono::milliseconds(3000);  // less than twice the heartbeat
  EXPECT_FALSE(config::Validate(*c).ok());
  std::ofstream(path) << "lsiten = x\n";
  auto bad = config::LoadController(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown setting \"lsiten\""), std::string::npos);
  std::remove(path.c_str());
}

TEST(WorkerConfig, LabelsAndReservedNames) {
  config::WorkerConfig w;
  ASSERT_TRUE(config::Apply(w, "label.ssd", "true").ok());
  EXPECT_EQ(w.labels["ssd"], "true");
  EXPECT_TRUE(config::Validate(w).ok());
  w.labels["arch"] = "arm";
  EXPECT_FALSE(config::Validate(w).ok());
  EXPECT_FALSE(config::Apply(w, "slots", "many").ok());
}

TEST(ProjectConfig, ValidatesOnWrite) {
  auto ok = config::ParseProjectConfig(R"({"default_priority": 5, "env": {"CC": "gcc"}, "max_attempts": 2})");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->default_priority, 5);
  EXPECT_EQ(ok->env.at("CC"), "gcc");
  EXPECT_FALSE(config::ParseProjectConfig("{").ok());
  EXPECT_FALSE(config::ParseProjectConfig("[]").ok());
  EXPECT_FALSE(config::ParseProjectConfig(R"({"max_attempts": 0})").ok());
  EXPECT_FALSE(config::ParseProjectConfig(R"({"env": {"A": 1}})").ok());
  auto scoped = config::ParseProjectConfig(R"({"cache_scope": "team-a.shared"})");
  ASSERT_TRUE(scoped.ok()) << scoped.status().message();
  EXPECT_EQ(scoped->cache_scope, "team-a.shared");
  for (const char* bad : {R"({"cache_scope": ""})", R"({"cache_scope": "a b"})", R"({"cache_scope": 3})"}) {
    auto r = config::ParseProjectConfig(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("cache_scope"), std::string::npos) << r.status().message();
  }
  auto unknown = config::ParseProjectConfig(R"({"priorty": 1})");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("priorty"), std::string::npos);
}

// Finding 1 of the security probe, in a project's configuration: names and
// labels hold no control character; an env value may hold a newline, not a NUL.
TEST(ProjectConfig, RejectsControlCharactersInEnvNamesAndRequirements) {
  for (const char* bad : {R"({"env": {"A\nB": "x"}})", R"({"env": {"A": "x\u0000y"}})",
                          R"({"requirements": {"gpu\u0000": "1"}})", R"({"requirements": {"gpu": "1\r"}})",
                          R"({"cache_scope": "a\u0000b"})"}) {
    auto r = config::ParseProjectConfig(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos) << r.status().message();
    EXPECT_EQ(r.status().message().find('\0'), std::string::npos) << r.status().message();
  }
  auto multi = config::ParseProjectConfig(R"({"env": {"SCRIPT": "echo a\necho b"}})");
  ASSERT_TRUE(multi.ok()) << multi.status().message();
  EXPECT_EQ(multi->env.at("SCRIPT"), "echo a\necho b");
}

// Found by tests/fuzz (project_config): a number too large for a double is
// nlohmann's out_of_range, not a parse_error, and escaped the catch: the
// controller's SetProjectConfig handler would have thrown (and terminated).
TEST(ProjectConfig, ANumberTooLargeIsInvalidJsonNotACrash) {
  auto r = config::ParseProjectConfig(R"({"timeout_s": 5e4649})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().message().rfind("project config is not valid JSON: ", 0), 0u) << r.status().message();
  EXPECT_NE(r.status().message().find("number overflow"), std::string::npos) << r.status().message();
}

// Found by tests/fuzz (project_config): the parser's message quotes what it
// last read, control bytes and all, and as long as a string runs.
TEST(ProjectConfig, TheJsonErrorQuotesTheInputEscapedAndCut) {
  auto r = config::ParseProjectConfig("0\x7f");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("last read: '0\\x7f'"), std::string::npos) << r.status().message();
  auto long_string = config::ParseProjectConfig("{\"env\": \"" + std::string(60000, 'x'));
  ASSERT_FALSE(long_string.ok());
  EXPECT_LT(long_string.status().message().size(), 400u);
}

}  // namespace
}  // namespace kiln
