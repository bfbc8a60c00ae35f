// The command provider (cluster/command_provider.h) against small scripts
// that record what they get and answer what a test tells them, then against
// the shipped deploy/provider-example.sh with a stand-in for kiln-worker.
// And the providers' settings as MakeProvider checks them.

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>

#include <nlohmann/json.hpp>

#include "cluster/command_provider.h"
#include "cluster/spec.h"
#include "unit/cluster_provider_test_util.h"

namespace kiln::cluster {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace kiln::cluster::testing;

class CommandProviderTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = FreshDir("kiln-cp"); }
  void TearDown() override { fs::remove_all(dir_); }

  // A provider calling a script with `body` (after "#!/bin/sh\n"); the
  // script's directory is $D.
  CommandProvider Script(const std::string& body, std::chrono::seconds timeout = 60s) {
    const std::string path = (dir_ / "provider.sh").string();
    std::ofstream(path) << "#!/bin/sh\nD=" << dir_.string() << "\n" << body;
    fs::permissions(path, fs::perms::owner_all);
    return CommandProvider({path, "c", R"({"command": ")" + path + R"(", "region": "eu-1"})",
                            (dir_ / "work").string(), timeout});
  }
  // A script that keeps its stdin as $D/in-OP and answers list with $D/list.
  CommandProvider Recorder() {
    return Script("cat > \"$D/in-$1\"\n[ \"$1\" = list ] && cat \"$D/list\"\nexit 0\n");
  }
  void Answer(const std::string& list) { std::ofstream(dir_ / "list") << list; }
  std::string Path() const { return (dir_ / "provider.sh").string(); }

  fs::path dir_;
};

TEST_F(CommandProviderTest, EachCallGetsOneJsonDocumentAndListAnswersOne) {
  CommandProvider p = Recorder();
  std::ofstream(dir_ / "ca.crt") << "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  Launch l = Named("c-1");
  l.work_dir = p.WorkDir("c-1");
  l.settings = {{"controller", "10.0.0.1:7070"}, {"cluster", "c"}, {"slots", "2"}, {"label.pool", "fast"}};
  l.ca_file = (dir_ / "ca.crt").string();
  l.join_token = "jt-secret";
  Status st = p.Create(l);
  ASSERT_TRUE(st.ok()) << st.ToString();
  const std::string work = (dir_ / "work" / "c-1").string();
  EXPECT_EQ(p.WorkDir("c-1"), work) << "unique per instance: the deployer matches workers by it";
  const auto create = nlohmann::json::parse(Read((dir_ / "in-create").string()));
  const auto settings = nlohmann::json{{"command", Path()}, {"region", "eu-1"}};
  EXPECT_EQ(create, (nlohmann::json{
                        {"cluster", "c"},
                        {"instance", "c-1"},
                        {"work_dir", work},
                        {"provider_settings", settings},
                        {"worker_settings",
                         {{"controller", "10.0.0.1:7070"}, {"cluster", "c"}, {"slots", "2"}, {"label.pool", "fast"}}},
                        {"worker_conf", "controller = 10.0.0.1:7070\ncluster = c\nslots = 2\nlabel.pool = fast\n"
                                        "work_dir = " + work + "\n"},
                        {"ca_pem", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
                        {"join_token", "jt-secret"},
                    }));

  Answer(R"({"instances": [{"id": "c-1", "alive": true}, {"id": "c-2", "alive": false}]})");
  auto seen = p.List();
  ASSERT_TRUE(seen.ok()) << seen.status().ToString();
  ASSERT_EQ(seen->size(), 2u);
  EXPECT_EQ((*seen)[0].id, "c-1");
  EXPECT_TRUE((*seen)[0].alive);
  EXPECT_EQ((*seen)[1].id, "c-2");
  EXPECT_FALSE((*seen)[1].alive);
  EXPECT_EQ(nlohmann::json::parse(Read((dir_ / "in-list").string())),
            (nlohmann::json{{"cluster", "c"}, {"provider_settings", settings}}));

  ASSERT_TRUE(p.Drain("c-1").ok());
  ASSERT_TRUE(p.Destroy("c-1").ok());
  const auto one = nlohmann::json{{"cluster", "c"}, {"instance", "c-1"}, {"work_dir", work}, {"provider_settings", settings}};
  EXPECT_EQ(nlohmann::json::parse(Read((dir_ / "in-drain").string())), one);
  EXPECT_EQ(nlohmann::json::parse(Read((dir_ / "in-destroy").string())), one);
}

TEST_F(CommandProviderTest, AnInsecureFarmSendsNoCertificateAndNoToken) {
  CommandProvider p = Recorder();
  Launch l = Named("c-1");
  l.settings = {{"insecure", "true"}};
  ASSERT_TRUE(p.Create(l).ok());
  const auto create = nlohmann::json::parse(Read((dir_ / "in-create").string()));
  EXPECT_EQ(create["ca_pem"], "");
  EXPECT_EQ(create["join_token"], "");
  EXPECT_EQ(create["work_dir"], p.WorkDir("c-1"));
  EXPECT_EQ(create["worker_conf"], "insecure = true\nwork_dir = " + p.WorkDir("c-1") + "\n");
  l.ca_file = (dir_ / "missing.crt").string();
  Status st = p.Create(l);
  EXPECT_EQ(st.code(), Code::kInternal);
  EXPECT_NE(st.message().find("cannot read the farm's CA certificate"), std::string::npos) << st.message();
}

// The command gets the controller's environment but its KILN_* settings
// (a database URL with its password): a cloud tool's credentials pass.
TEST_F(CommandProviderTest, TheCommandGetsTheEnvironmentButTheControllersSettings) {
  ::setenv("KILN_DATABASE_URL", "postgresql://kiln:secret@db/kiln", 1);
  ::setenv("CLOUD_TOKEN_FOR_TEST", "t0ken", 1);
  CommandProvider p = Script("cat >/dev/null\nenv > \"$D/env-$1\"\n[ \"$1\" = list ] && echo '{\"instances\": []}'\nexit 0\n");
  auto seen = p.List();
  ::unsetenv("KILN_DATABASE_URL");
  ::unsetenv("CLOUD_TOKEN_FOR_TEST");
  ASSERT_TRUE(seen.ok()) << seen.status().message();
  std::ifstream in(dir_ / "env-list");
  std::string env((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(env.find("CLOUD_TOKEN_FOR_TEST=t0ken\n"), std::string::npos) << env;
  EXPECT_NE(env.find("PATH="), std::string::npos) << env;
  EXPECT_EQ(env.find("secret"), std::string::npos) << env;
  EXPECT_EQ(env.find("KILN_"), std::string::npos) << env;
}

TEST_F(CommandProviderTest, AFailureIsAnErrorWithTheCommandsStderr) {
  CommandProvider p = Script(
      "cat >/dev/null\n"
      "case $1 in\n"
      "  drain|destroy) echo \"no machine c-1\" >&2; exit 3 ;;\n"
      "  *) echo 'quota exceeded for instances in eu-1' >&2; exit 1 ;;\n"
      "esac\n");
  Launch l = Named("c-1");
  Status st = p.Create(l);
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find(Path() + " create exited with status 1: quota exceeded for instances in eu-1"),
            std::string::npos)
      << st.message();
  auto seen = p.List();
  ASSERT_FALSE(seen.ok());
  EXPECT_NE(seen.status().message().find(Path() + " list exited with status 1"), std::string::npos);
  EXPECT_EQ(p.Drain("c-1").code(), Code::kNotFound) << "exit status 3: no such instance";
  EXPECT_TRUE(p.Destroy("c-1").ok()) << "no such instance: destroyed already";
  for (const std::string id : {"a b", "../x", ""}) {
    EXPECT_EQ(p.Create(Named(id)).code(), Code::kInvalidArgument) << "never passed to the command: " << id;
    EXPECT_EQ(p.Destroy(id).code(), Code::kInvalidArgument);
  }
}

TEST_F(CommandProviderTest, AnAnswerThatIsNotTheProtocolsIsAClearError) {
  CommandProvider p = Recorder();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json at all", "answered something that is not JSON (\"not json at all"},
      {"", "answered something that is not JSON"},
      {R"({"instance": []})", "answered no instances array"},
      {R"({"instances": [{"id": "c-1"}]})", "answered an instance without a string id and a boolean alive"},
      {R"({"instances": [{"id": 7, "alive": true}]})", "answered an instance without a string id and a boolean alive"},
      {R"({"instances": [{"id": "../../etc", "alive": true}]})", "answered a bad instance id: invalid instance name"},
      {R"({"instances": [{"id": "c-1", "alive": true}, {"id": "c-1", "alive": false}]})", "answered instance c-1 twice"},
  };
  for (const auto& [answer, error] : cases) {
    Answer(answer);
    auto seen = p.List();
    ASSERT_FALSE(seen.ok()) << answer;
    EXPECT_EQ(seen.status().code(), Code::kUnavailable);
    EXPECT_NE(seen.status().message().find(Path() + " list " + error), std::string::npos)
        << answer << " -> " << seen.status().message();
    EXPECT_NE(seen.status().message().find("it must print {\"instances\""), std::string::npos);
  }
  std::string many = R"({"instances": [)";
  for (size_t i = 0; i <= CommandProvider::kMaxInstances; ++i)
    many += (i ? "," : "") + std::string(R"({"id":"c-)") + std::to_string(i) + R"(","alive":true})";
  Answer(many + "]}");
  auto seen = p.List();
  ASSERT_FALSE(seen.ok());
  EXPECT_NE(seen.status().message().find("10001 instances, more than 10000"), std::string::npos)
      << seen.status().message();
}

TEST_F(CommandProviderTest, OutputBeyondTheBoundIsRefusedAndTheCommandKilled) {
  CommandProvider p = Script("cat >/dev/null\necho $$ > \"$D/pid\"\nwhile :; do echo xxxxxxxxxxxxxxxxxxxxxxxx; done\n");
  auto seen = p.List();
  ASSERT_FALSE(seen.ok());
  EXPECT_NE(seen.status().message().find(Path() + " list wrote more than 1048576 bytes to stdout and was killed"),
            std::string::npos)
      << seen.status().message();
  const int pid = std::atoi(Read((dir_ / "pid").string()).c_str());
  EXPECT_TRUE(WaitFor([&] { return Dead(pid); }, 5s));
}

TEST_F(CommandProviderTest, ACommandPastItsTimeoutIsKilledWithWhatItStarted) {
  CommandProvider p = Script(
      "cat >/dev/null\n"
      "echo $$ > \"$D/pid\"\n"
      "sleep 60 &\n"
      "echo $! > \"$D/child\"\n"
      "wait\n",
      1s);
  const auto start = std::chrono::steady_clock::now();
  Status st = p.Drain("c-1");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find(Path() + " drain did not finish within 1.0 s and was killed"), std::string::npos)
      << st.message();
  const int pid = std::atoi(Read((dir_ / "pid").string()).c_str());
  const int child = std::atoi(Read((dir_ / "child").string()).c_str());
  EXPECT_TRUE(WaitFor([&] { return Dead(pid); }, 5s)) << "the command";
  EXPECT_TRUE(WaitFor([&] { return Dead(child); }, 5s)) << "the sleep it started, in its process group";
}

TEST_F(CommandProviderTest, ACommandThatDoesNotReadItsInputStillWorks) {
  // kiln writes its input to a command that exited without reading it:
  // EPIPE, never a SIGPIPE that would end this process.
  CommandProvider p = Script("exit 0\n");
  Launch l = Named("c-1");
  l.settings.emplace_back("big", std::string(1 << 20, 'x'));
  EXPECT_TRUE(p.Create(l).ok());
}

// Settings as MakeProvider checks them.
TEST(ProviderSettings, CommandAndSystemdSettingsAreChecked) {
  Spec s;
  s.cluster = "c";
  auto make = [&](const std::string& provider, const std::string& settings) {
    s.provider = provider;
    s.provider_settings = settings;
    return MakeProvider(s, {"/usr/local/bin/kiln-worker", "/tmp/instances"});
  };
  auto missing = make("command", "{}");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("provider setting command"), std::string::npos);
  auto relative = make("command", R"({"command": "provider.sh"})");
  EXPECT_NE(relative.status().message().find("command must be an absolute path"), std::string::npos);
  auto timeout = make("command", R"({"command": "/p.sh", "timeout_s": 0})");
  EXPECT_NE(timeout.status().message().find("timeout_s must be a whole number of seconds from 1 to 3600"),
            std::string::npos);
  EXPECT_FALSE(make("command", R"({"command": "/p.sh", "timeout_s": "60"})").ok());
  EXPECT_FALSE(make("command", R"({"command": "/p.sh", "work_dir_base": "work"})").ok());
  auto good = make("command", R"({"command": "/p.sh", "timeout_s": 5, "work_dir_base": "/w/"})");
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ((*good)->WorkDir("c-1"), "/w/c-1");
  EXPECT_EQ((*make("command", R"({"command": "/p.sh"})"))->WorkDir("c-1"), "/var/lib/kiln-worker/c-1");

  auto systemd = make("systemd", "{}");
  ASSERT_TRUE(systemd.ok()) << systemd.status().ToString();
  EXPECT_EQ((*systemd)->WorkDir("c-1"), "/var/lib/kiln/instances/c-1/work");
  EXPECT_EQ((*make("systemd", R"({"root": "/srv/kiln"})"))->WorkDir("c-1"), "/srv/kiln/c-1/work");
  EXPECT_FALSE(make("systemd", R"({"root": "srv"})").ok());
  EXPECT_FALSE(make("systemd", R"({"unit": "a/b"})").ok());
  EXPECT_FALSE(make("systemd", R"({"systemctl": 1})").ok());
  EXPECT_EQ(make("ec2", "{}").status().code(), Code::kUnimplemented);
}

// deploy/provider-example.sh as an operator would use it, with a stand-in
// for kiln-worker that drains on SIGTERM like the worker.
class ProviderExampleTest : public CommandProviderTest {
 protected:
  void SetUp() override {
    CommandProviderTest::SetUp();
    worker_ = FakeWorker(dir_);
  }
  void TearDown() override {
    CommandProvider p = Example();
    if (auto seen = p.List(); seen.ok())
      for (const auto& s : *seen) (void)p.Destroy(s.id);
    CommandProviderTest::TearDown();
  }
  CommandProvider Example() {
    const std::string script = KILN_SOURCE_DIR "/deploy/provider-example.sh";
    nlohmann::json settings{{"command", script}, {"root", (dir_ / "root").string()}, {"worker_binary", worker_}};
    return CommandProvider({script, "c", settings.dump(), (dir_ / "work").string(), 60s});
  }
  std::optional<bool> Alive(CommandProvider& p, const std::string& id) {
    auto seen = p.List();
    EXPECT_TRUE(seen.ok()) << seen.status().ToString();
    if (!seen.ok()) return std::nullopt;
    for (const auto& s : *seen)
      if (s.id == id) return s.alive;
    return std::nullopt;
  }
  std::string worker_;
};

TEST_F(ProviderExampleTest, CreateListDrainAndDestroyRealProcesses) {
  CommandProvider p = Example();
  auto none = p.List();
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
  const std::string ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  std::ofstream(dir_ / "ca.crt") << ca;
  Launch l = Named("c-1");
  l.work_dir = p.WorkDir("c-1");
  l.settings = {{"cluster", "c"}, {"slots", "2"}};
  l.ca_file = (dir_ / "ca.crt").string();
  l.join_token = "jt-secret";
  Status st = p.Create(l);
  ASSERT_TRUE(st.ok()) << st.ToString();
  const std::string d = (dir_ / "root" / "c" / "c-1").string();
  EXPECT_EQ(Read(d + "/worker.conf"), "cluster = c\nslots = 2\nwork_dir = " + p.WorkDir("c-1") + "\nca_file = " + d +
                                          "/ca.crt\njoin_token_file = " + d + "/join.token\n");
  EXPECT_EQ(Read(d + "/ca.crt"), ca);
  EXPECT_EQ(Read(d + "/join.token"), "jt-secret\n");
  EXPECT_EQ(fs::status(d + "/join.token").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_TRUE(fs::is_directory(p.WorkDir("c-1")));
  EXPECT_TRUE(WaitFor([&] { return Read(d + "/worker.log").find("started --config " + d + "/worker.conf") !=
                                   std::string::npos; },
                      10s))
      << Read(d + "/worker.log");
  EXPECT_EQ(Alive(p, "c-1"), true);
  st = p.Create(l);
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("instance c-1 runs already"), std::string::npos) << st.message();

  ASSERT_TRUE(p.Drain("c-1").ok());
  EXPECT_TRUE(WaitFor([&] { return Alive(p, "c-1") == false; }, 10s)) << "the drained worker exits";
  EXPECT_NE(Read(d + "/worker.log").find("drained"), std::string::npos);
  EXPECT_EQ(p.Drain("c-1").code(), Code::kNotFound);
  ASSERT_TRUE(p.Destroy("c-1").ok());
  EXPECT_FALSE(fs::exists(d));
  EXPECT_FALSE(fs::exists(p.WorkDir("c-1")));
  EXPECT_TRUE(p.Destroy("c-1").ok()) << "gone already";

  // A worker binary that is not there fails the create, with the reason.
  const std::string real = worker_;
  fs::rename(worker_, worker_ + ".away");
  l.id = "c-3";
  st = p.Create(l);
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_NE(st.message().find("worker_binary " + real + " is not an executable file"), std::string::npos)
      << st.message();
  fs::rename(worker_ + ".away", worker_);

  l.id = "c-2";
  l.work_dir = p.WorkDir("c-2");
  ASSERT_TRUE(p.Create(l).ok());
  const int pid = std::atoi(Read((dir_ / "root" / "c" / "c-2" / "pid").string()).c_str());
  ASSERT_GT(pid, 1);
  ASSERT_TRUE(p.Destroy("c-2").ok()) << "a running one is killed";
  EXPECT_TRUE(WaitFor([&] { return Dead(pid); }, 5s));
  auto after = p.List();
  ASSERT_TRUE(after.ok());
  EXPECT_TRUE(after->empty());
}

}  // namespace
}  // namespace kiln::cluster
