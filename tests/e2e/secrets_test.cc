// Secret env (kiln submit --secret-env / --secret-file), as a user and an
// operator would check it: the build gets the value, its log shows ***, and
// the value is in no output of the CLI, no daemon log, no table and no file
// of the database once the job ended. A job with a secret is never served
// from the action cache.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "harness/container_farm.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

// Files under `dir` (recursively, up to `max_bytes` each: a worker's sparse
// checkout images are skipped) whose bytes contain `needle`. Read in pieces
// that overlap by the needle's length.
std::vector<std::string> FilesHolding(const std::string& dir, const std::string& needle,
                                      uintmax_t max_bytes = uintmax_t{1} << 30) {
  std::vector<std::string> found;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file(ec) || it->file_size(ec) > max_bytes) continue;
    std::ifstream in(it->path(), std::ios::binary);
    std::string carry, piece(1 << 20, '\0');
    while (in) {
      in.read(piece.data(), static_cast<std::streamsize>(piece.size()));
      std::string window = carry + piece.substr(0, static_cast<size_t>(in.gcount()));
      if (window.find(needle) != std::string::npos) {
        found.push_back(it->path().string());
        break;
      }
      carry = window.size() >= needle.size() ? window.substr(window.size() - needle.size()) : window;
    }
  }
  return found;
}

class Secrets : public ContainerFarm {
 protected:
  // kiln with `env` added to its environment.
  test::CommandResult KilnWith(std::vector<std::string> args, const std::map<std::string, std::string>& env) {
    std::vector<std::string> argv{test::BinPath("kiln"), "--controller", addresses_[0]};
    argv.insert(argv.end(), args.begin(), args.end());
    std::string cwd = dir_.path() + "/cwd";
    fs::create_directories(cwd);
    std::map<std::string, std::string> all{{"XDG_CACHE_HOME", dir_.path() + "/xdg"}};
    all.insert(env.begin(), env.end());
    return test::RunCommand(argv, 60s, all, cwd);
  }
};

TEST_F(Secrets, TheBuildGetsItAndNothingElseShowsOrKeepsIt) {
  extra_conf_ = "log_level = debug\n";  // the daemons' most talkative logs are searched too
  SetUp();
  StartController();
  StartWorker(0, 2, {"--log-level", "debug"});
  const std::string image = Busybox();
  const std::string secret = "kiln-secret-" + RandomHex(10);
  const std::string from_file = "kiln-file-secret-" + RandomHex(10);
  test::WriteFile(dir_.path() + "/secret.txt", from_file + "\n");
  const std::vector<std::string> args{"submit",        "--no-input",   "--image",
                                      image,           "--secret-env", "API_TOKEN",
                                      "--secret-file", "DEPLOY_KEY=" + dir_.path() + "/secret.txt",
                                      "--",            "sh",           "-c",
                                      "echo \"token=$API_TOKEN\"; echo \"key=$DEPLOY_KEY\" >&2; "
                                      "printf %s \"$API_TOKEN$DEPLOY_KEY\" | wc -c"};
  auto first = KilnWith(args, {{"API_TOKEN", secret}});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  // The build saw both values (their length), and its log shows ***.
  EXPECT_NE(first.out.find("token=***\n"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("key=***\n"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find(std::to_string(secret.size() + from_file.size())), std::string::npos) << first.out;
  // Never action-cached: the same submit runs again.
  auto second = KilnWith(args, {{"API_TOKEN", secret}});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.err.find("from the action cache"), std::string::npos) << second.err;
  auto list = Kiln({"list", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto jobs = nlohmann::json::parse(list.out);
  ASSERT_GE(jobs.size(), 2u) << list.out;
  const std::string id = jobs[0]["id"].get<std::string>();
  const std::string first_id = jobs[1]["id"].get<std::string>();

  std::vector<test::CommandResult> outputs{first, second, list};
  for (const auto& a : std::vector<std::vector<std::string>>{{"status", id},
                                                             {"status", "--json", id},
                                                             {"why", id},
                                                             {"logs", id},
                                                             {"logs", first_id},
                                                             {"list"}}) {
    outputs.push_back(Kiln(a));
    EXPECT_EQ(outputs.back().exit_code, 0) << outputs.back().err;
  }
  auto& status = outputs[3];
  EXPECT_NE(status.out.find("secret env:"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("API_TOKEN DEPLOY_KEY"), std::string::npos) << status.out;
  auto& why = outputs[5];
  EXPECT_NE(why.out.find("not cacheable: it has secret env (API_TOKEN, DEPLOY_KEY)"), std::string::npos) << why.out;
  EXPECT_NE(outputs[6].out.find("token=***"), std::string::npos) << outputs[6].out;
  for (const auto& v : {secret, from_file}) {
    for (const auto& o : outputs) {
      EXPECT_EQ(o.out.find(v), std::string::npos) << o.out;
      EXPECT_EQ(o.err.find(v), std::string::npos) << o.err;
    }
  }

  // Nothing kept: the daemons' logs, every table (pg_dump), every file of
  // the database (tables, indexes, WAL), once the jobs ended.
  ASSERT_TRUE(AllEnded(30s));
  test::Sql(url_, "CHECKPOINT");
  auto dump = test::RunCommand({"/usr/lib/postgresql/15/bin/pg_dump", "--data-only", "-d", url_}, 60s);
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  EXPECT_NE(dump.out.find("API_TOKEN"), std::string::npos) << "the job's spec names its secrets";
  for (const auto& v : {secret, from_file}) {
    EXPECT_EQ(dump.out.find(v), std::string::npos);
    for (const auto& log : logs_) EXPECT_EQ(test::ReadFile(log).find(v), std::string::npos) << log;
    EXPECT_EQ(FilesHolding(test::DatabaseFiles(), v), std::vector<std::string>{});
    EXPECT_EQ(FilesHolding(dir_.path() + "/w0", v, uintmax_t{256} << 20), std::vector<std::string>{})
        << "the worker left it on disk";
  }
}

// A compile whose diagnostics print the secret: its log shows ***, and so
// does the compile cache's copy of them, which a later build's hit replays;
// neither the cache's rows (output, arguments) nor the database's files
// hold the value.
TEST_F(Secrets, TheCompileCacheKeepsOnlyTheMaskedOutput) {
  Up();
  const std::string image = Toolchain();
  const std::string secret = "kiln-cc-secret-" + RandomHex(10);
  const std::string proj = dir_.path() + "/proj";
  test::WriteFile(proj + "/a.c",
                  "#define S(x) #x\n#define STR(x) S(x)\n#pragma message \"token \" STR(TOKEN)\n"
                  "int a(void) { return 1; }\n");
  const std::vector<std::string> args{"submit", "--input", proj, "--image", image, "--secret-env", "API_TOKEN",
                                      "--", "sh", "-c", "cc -DTOKEN=$API_TOKEN -c a.c -o a.o && echo built"};
  auto first = KilnWith(args, {{"API_TOKEN", secret}});
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_NE(first.out.find("token ***"), std::string::npos) << first.out;
  auto second = KilnWith(args, {{"API_TOKEN", secret}});
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_NE(second.out.find("token ***"), std::string::npos) << "the hit replays the kept output: " << second.out;
  EXPECT_EQ(test::Sql(url_, "SELECT sum(hits) FROM compile_stats"), "1") << "the second compile was a hit";
  ASSERT_TRUE(AllEnded(30s));
  test::Sql(url_, "CHECKPOINT");
  auto dump = test::RunCommand({"/usr/lib/postgresql/15/bin/pg_dump", "--data-only", "-d", url_}, 60s);
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  EXPECT_NE(dump.out.find("-DTOKEN=***"), std::string::npos) << "the cache keeps the compile's masked arguments";
  EXPECT_EQ(dump.out.find(secret), std::string::npos);
  for (const auto& o : {first, second}) EXPECT_EQ((o.out + o.err).find(secret), std::string::npos);
  EXPECT_EQ(FilesHolding(test::DatabaseFiles(), secret), std::vector<std::string>{});
}

TEST_F(Secrets, BadSecretsAreRefusedSayingWhy) {
  Up();
  auto unset = KilnWith({"submit", "--no-input", "--secret-env", "KILN_TEST_UNSET_VAR", "--", "true"}, {});
  EXPECT_EQ(unset.exit_code, 2);
  EXPECT_NE(unset.err.find("KILN_TEST_UNSET_VAR is not set in your environment"), std::string::npos) << unset.err;
  auto inline_value = KilnWith({"submit", "--no-input", "--secret-env", "A=visible", "--", "true"}, {});
  EXPECT_EQ(inline_value.exit_code, 2);
  EXPECT_NE(inline_value.err.find("not NAME=VALUE"), std::string::npos) << inline_value.err;
  auto short_value = KilnWith({"submit", "--no-input", "--secret-env", "PIN", "--", "true"}, {{"PIN", "123"}});
  EXPECT_NE(short_value.exit_code, 0);
  EXPECT_NE(short_value.err.find("shorter than 4 bytes"), std::string::npos) << short_value.err;
  EXPECT_EQ(short_value.err.find("123"), std::string::npos) << "a refusal never echoes the value";
  auto twice = KilnWith({"submit", "--no-input", "--env", "PIN=1", "--secret-env", "PIN", "--", "true"},
                        {{"PIN", "12345"}});
  EXPECT_NE(twice.exit_code, 0);
  EXPECT_NE(twice.err.find("both as env and as secret env"), std::string::npos) << twice.err;
  EXPECT_EQ(Count("true"), 0) << "nothing refused was queued";
}

// A controller without the farm's secrets key refuses secrets rather than
// keeping them in clear.
TEST_F(Secrets, NoSecretsKeyNoSecrets) {
  extra_conf_ = "secrets_key_file = " + dir_.path() + "/absent.key\n";
  SetUp();
  StartController();
  auto r = KilnWith({"submit", "--no-input", "--detach", "--secret-env", "API_TOKEN", "--", "true"},
                    {{"API_TOKEN", "some-secret-value"}});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("no secrets key"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("certs init"), std::string::npos) << r.err;
  auto plain = Kiln({"submit", "--no-input", "--detach", "--", "true"});
  EXPECT_EQ(plain.exit_code, 0) << "jobs without secrets still run: " << plain.err;
}

}  // namespace
}  // namespace kiln
