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

TEST(ControllerConfig, HealthThresholdsParseAndRefuseGarbage) {
  config::ControllerConfig c;
  EXPECT_EQ(c.health_min_free_disk, int64_t{1} << 30);
  EXPECT_EQ(c.health_min_free_percent, 5);
  EXPECT_TRUE(config::Apply(c, "health_min_free_disk", "16MiB").ok());
  EXPECT_EQ(c.health_min_free_disk, int64_t{16} << 20);
  EXPECT_TRUE(config::Apply(c, "health_max_load_per_cpu", "2.5").ok());
  EXPECT_EQ(c.health_max_load_per_cpu, 2.5);
  auto bad = config::Apply(c, "health_max_load_per_cpu", "lots");
  EXPECT_EQ(bad.message(), "health_max_load_per_cpu: expected a number from 0 (off) to 1000, got \"lots\"");
  EXPECT_FALSE(config::Apply(c, "health_min_free_percent", "100").ok());
  EXPECT_FALSE(config::Apply(c, "health_recover_after", "soon").ok());
  config::WorkerConfig w;
  EXPECT_EQ(w.health_check_interval.count(), 60000);
  EXPECT_TRUE(config::Apply(w, "health_check_interval", "10ms").ok());
  EXPECT_EQ(config::Validate(w).message(), "health_check_interval must be at least 1s");
}

TEST(Reload, ChangedKeysAndWhichAreReloadable) {
  std::map<std::string, std::string> before{{"lease", "3s"}, {"log_level", "info"}, {"listen", "a"}};
  std::map<std::string, std::string> after{{"lease", "4s"}, {"log_level", "info"}, {"health_recover_after", "1s"}};
  EXPECT_EQ(config::ChangedKeys(before, after), (std::vector<std::string>{"health_recover_after", "lease", "listen"}));
  EXPECT_TRUE(config::ControllerReloadable("log_level"));
  EXPECT_TRUE(config::ControllerReloadable("health_min_free_disk"));
  EXPECT_FALSE(config::ControllerReloadable("lease"));
  EXPECT_TRUE(config::WorkerReloadable("health_check_interval"));
  EXPECT_FALSE(config::WorkerReloadable("slots"));
}

TEST(MetricsAddress, EmptyIsOffAndAnythingElseIsHostAndPort) {
  config::ControllerConfig c;
  c.database_url = "host=/tmp dbname=x";
  EXPECT_TRUE(config::Validate(c).ok()) << "off by default";
  ASSERT_TRUE(config::Apply(c, "metrics_address", "127.0.0.1:0").ok());
  EXPECT_TRUE(config::Validate(c).ok());
  config::WorkerConfig w;
  ASSERT_TRUE(config::Apply(w, "metrics_address", "[::1]:9465").ok());
  EXPECT_TRUE(config::Validate(w).ok());
  for (const char* bad : {"9464", ":9464", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000"}) {
    c.metrics_address = bad;
    Status s = config::Validate(c);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find("metrics_address: expected HOST:PORT"), std::string::npos) << s.message();
    w.metrics_address = bad;
    EXPECT_FALSE(config::Validate(w).ok()) << bad;
  }
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

TEST(ProjectConfig, LogQuotasTakeADurationAndASizeAndRefuseGarbageClearly) {
  auto unset = config::ParseProjectConfig("{}");
  ASSERT_TRUE(unset.ok());
  EXPECT_FALSE(unset->log_retention_ms.has_value());  // the controller's defaults apply
  EXPECT_FALSE(unset->log_max_bytes.has_value());
  auto ok = config::ParseProjectConfig(R"({"log_retention": "30d", "log_max_bytes": "10GiB"})");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(*ok->log_retention_ms, 30LL * 86'400'000);
  EXPECT_EQ(*ok->log_max_bytes, int64_t{10} << 30);
  // The shortest retention (for tests), "0" (kept for ever), bytes as a number.
  auto short_one = config::ParseProjectConfig(R"({"log_retention": "1s", "log_max_bytes": 4096})");
  ASSERT_TRUE(short_one.ok()) << short_one.status().message();
  EXPECT_EQ(*short_one->log_retention_ms, 1000);
  EXPECT_EQ(*short_one->log_max_bytes, 4096);
  auto forever = config::ParseProjectConfig(R"({"log_retention": "0", "log_max_bytes": 0})");
  ASSERT_TRUE(forever.ok()) << forever.status().message();
  EXPECT_EQ(*forever->log_retention_ms, 0);
  EXPECT_EQ(*forever->log_max_bytes, 0);

  // Each refusal names the key and says what is allowed.
  for (const char* bad : {R"({"log_retention": "-1d"})", R"({"log_retention": "soon"})",
                          R"({"log_retention": "500ms"})", R"({"log_retention": "3651d"})",
                          R"({"log_retention": "999999999999d"})", R"({"log_retention": 30})",
                          R"({"log_retention": ""})", R"({"log_retention": null})"}) {
    auto r = config::ParseProjectConfig(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    EXPECT_EQ(r.status().message().rfind("log_retention: ", 0), 0u) << r.status().message();
    EXPECT_NE(r.status().message().find("such as \"30d\""), std::string::npos) << r.status().message();
  }
  for (const char* bad : {R"({"log_max_bytes": -1})", R"({"log_max_bytes": "lots"})", R"({"log_max_bytes": 1.5})",
                          R"({"log_max_bytes": "-5MiB"})", R"({"log_max_bytes": 18446744073709551615})",
                          R"({"log_max_bytes": true})", R"({"log_max_bytes": "99999999999999TiB"})"}) {
    auto r = config::ParseProjectConfig(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().message().rfind("log_max_bytes: ", 0), 0u) << r.status().message();
    EXPECT_NE(r.status().message().find("such as \"10GiB\""), std::string::npos) << r.status().message();
  }
  // What is quoted back is escaped and cut.
  auto ctl = config::ParseProjectConfig("{\"log_retention\": \"1\\u0007d" + std::string(500, 'x') + "\"}");
  ASSERT_FALSE(ctl.ok());
  EXPECT_NE(ctl.status().message().find("\\x07"), std::string::npos) << ctl.status().message();
  EXPECT_LT(ctl.status().message().size(), 300u);
}

TEST(ControllerConfig, LogQuotaDefaultsAndBounds) {
  config::ControllerConfig c;
  c.database_url = "host=/tmp";
  EXPECT_EQ(c.log_retention.count(), 30LL * 86'400'000);
  EXPECT_EQ(c.project_log_max_bytes, 0);
  EXPECT_EQ(c.log_max_bytes, int64_t{100} << 30);
  ASSERT_TRUE(config::Apply(c, "log_retention", "0").ok());
  ASSERT_TRUE(config::Apply(c, "project_log_max_bytes", "1GiB").ok());
  ASSERT_TRUE(config::Apply(c, "log_prune_interval", "100ms").ok());
  EXPECT_TRUE(config::Validate(c).ok());
  EXPECT_FALSE(config::Apply(c, "log_max_bytes", "a lot").ok());
  ASSERT_TRUE(config::Apply(c, "log_retention", "200ms").ok());
  EXPECT_FALSE(config::Validate(c).ok());
  ASSERT_TRUE(config::Apply(c, "log_retention", "7d").ok());
  ASSERT_TRUE(config::Apply(c, "log_prune_interval", "10ms").ok());
  EXPECT_FALSE(config::Validate(c).ok());
}

TEST(Duration, TooManyDaysIsAnErrorNotAnOverflow) {
  EXPECT_FALSE(ParseDuration("999999999999d").ok());
  EXPECT_EQ(ParseDuration("106751d")->count(), 106751LL * 86'400'000);
  EXPECT_EQ(FormatDuration(30LL * 86'400'000), "30d");
  EXPECT_EQ(FormatDuration(90'000), "90s");
  EXPECT_EQ(FormatDuration(7'200'000), "2h");
  EXPECT_EQ(FormatDuration(250), "250ms");
}

}  // namespace
}  // namespace kiln
