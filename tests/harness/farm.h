#pragma once
// A farm fixture for tests: a fresh database, controllers and workers as real
// processes with fast test timings, gRPC stubs, and helpers to submit and wait.
// On failure, the tail of every daemon's log is printed.
//
// Secure, as a farm is by default: the controllers serve TLS with a CA of
// the test's own (dir/tls), every worker enrols with a join token of its
// own, and stubs and the kiln CLI (KILN_CA, KILN_TOKEN_FILE in the
// environment) use an admin token (dir/admin.token).

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "api/channel.h"
#include "common/util.h"
#include "harness/harness.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln {

using namespace std::chrono_literals;

class Farm : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = test::NewDatabase();
    tls_ = dir_.path() + "/tls";
    // SetUp runs again in tests that change extra_conf_: the farm keeps its CA.
    if (!std::filesystem::exists(tls_ + "/ca.key")) {
      auto certs = test::RunCommand({test::BinPath("kiln-controller"), "certs", "init", "--dir", tls_}, 30s);
      ASSERT_EQ(certs.exit_code, 0) << certs.err;
    }
    ::setenv("KILN_CA", (tls_ + "/ca.crt").c_str(), 1);
    ::unsetenv("KILN_TOKEN_FILE");  // set once the admin token exists (the first controller's start)
    ::unsetenv("KILN_TOKEN");
    conf_ = dir_.path() + "/controller.conf";
    // The lease must outlast a controller restart plus the worker's reconnect.
    std::ofstream(conf_) << "heartbeat_interval = 200ms\nlease = 3s\nreap_interval = 100ms\n"
                            "config_poll_interval = 200ms\ndispatch_poll_interval = 1s\n"
                            // No autoscaler unless a test turns it on (extra_conf_): a cluster a
                            // test manages must not get workers it did not ask for.
                            "autoscale_interval = 0\n"
                         << "cas_dir = " << dir_.path() << "/cas\n"
                         << "tls_dir = " << tls_ << "\n"
                         << extra_conf_;
  }

  // Settings appended to the controllers' config file (set before SetUp).
  std::string extra_conf_;

  void TearDown() override {
    if (HasFailure()) {
      for (size_t i = 0; i < logs_.size(); ++i) {
        std::ifstream in(logs_[i]);
        std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        if (all.size() > 6000) all = all.substr(all.size() - 6000);
        std::cerr << "---- " << logs_[i] << " (tail) ----\n" << all << "\n";
      }
    }
  }

  // Starts a controller listening on `listen` and waits until it serves
  // (its address file names the address it bound); returns its index.
  //
  // The default, port 0, has the kernel pick a free port at bind time, so
  // tests running in parallel never clash. A test that restarts a controller
  // on the same address, for workers and clients to reconnect to, uses
  // UnixAddress and RestartController instead: a TCP port is nobody's between
  // the old controller's exit and the new one's bind, and it is one of the
  // ephemeral ports the kernel hands to any other process's port-0 bind or
  // outgoing connect meanwhile (what bound it once proves nothing about the
  // next bind); a socket path in the test's own directory can be bound by no
  // one else. The controller, the worker and the CLI all take `unix:` targets
  // (gRPC's own), and the restart is the same code path for the worker.
  // `extra`: more arguments (e.g. --set KEY=VALUE) for this controller only.
  int StartController(const std::string& listen = "127.0.0.1:0", const std::vector<std::string>& extra = {}) {
    std::string n = std::to_string(controllers_.size());
    std::string addr_file = dir_.path() + "/controller" + n + ".addr";
    std::remove(addr_file.c_str());
    std::string log = dir_.path() + "/controller" + n + ".log";
    logs_.push_back(log);
    std::vector<std::string> argv{test::BinPath("kiln-controller"), "--config", conf_, "--database-url", url_,
                                  "--listen", listen, "--address-file", addr_file};
    argv.insert(argv.end(), extra.begin(), extra.end());
    controllers_.push_back(std::make_unique<test::Process>(argv, log));
    std::string addr;
    EXPECT_TRUE(test::WaitFor(
        [&] {
          std::ifstream in(addr_file);
          return static_cast<bool>(std::getline(in, addr)) && !addr.empty();
        },
        20s))
        << "controller did not start";
    addresses_.push_back(addr);
    if (admin_token_.empty()) {
      admin_token_ = NewToken("admin", "", dir_.path() + "/admin.token");
      ::setenv("KILN_TOKEN_FILE", (dir_.path() + "/admin.token").c_str(), 1);
    }
    return static_cast<int>(controllers_.size()) - 1;
  }

  // A new API token of `role` for `project` (none for admin), made on the
  // controller's host as an operator would; written to `file` if given.
  std::string NewToken(const std::string& role, const std::string& project, const std::string& file = "",
                       const std::string& expires = "") {
    std::vector<std::string> argv{test::BinPath("kiln-controller"), "tokens", "create", "--database-url", url_,
                                  "--role", role};
    if (!project.empty()) argv.insert(argv.end(), {"--project", project});
    if (!expires.empty()) argv.insert(argv.end(), {"--expires", expires});
    auto r = test::RunCommand(argv, 30s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string token = r.out.substr(0, r.out.find('\n'));
    if (!file.empty()) test::WriteFile(file, token + "\n");
    return token;
  }

  // A single-use join token for one new worker, in a file; returns its path.
  std::string NewJoinToken(const std::string& name) {
    std::string file = dir_.path() + "/" + name + ".join";
    auto r = test::RunCommand({test::BinPath("kiln-controller"), "join-token", "--database-url", url_, "--out", file},
                              30s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return file;
  }

  // A channel to controller i as a client holding `token` (default: admin).
  std::shared_ptr<grpc::Channel> Channel(int controller = 0, const std::string& token = "") {
    api::ChannelOptions o;
    o.address = addresses_[controller];
    o.ca_pem = test::ReadFile(tls_ + "/ca.crt");
    o.token = token.empty() ? admin_token_ : token;
    return api::MakeChannel(o, grpc::ChannelArguments());
  }

  // A Unix socket address in the test's directory, for StartController.
  std::string UnixAddress(const std::string& name) { return "unix:" + dir_.path() + "/" + name + ".sock"; }

  // Starts a new controller on stopped controller i's address (a UnixAddress;
  // see StartController for why not a TCP port); returns its index. Stubs
  // made before may still hold the old connection (a synchronous client
  // reads the old server's goodbye only in its next call, which then fails):
  // take new ones from the returned index, as each kiln command connects anew.
  int RestartController(int i) {
    EXPECT_EQ(addresses_[i].rfind("unix:", 0), 0u)
        << addresses_[i] << ": a TCP port can be taken while no controller holds it; start it on a UnixAddress";
    EXPECT_FALSE(controllers_[i]->Running()) << "controller " << i << " still runs";
    return StartController(addresses_[i]);
  }

  // Starts a worker in work_dir (default: a new w<N> directory; give an
  // earlier worker's to restart it) and waits until it registered.
  test::Process& StartWorker(int controller, int slots, std::vector<std::string> extra = {},
                             const std::string& work_dir = "") {
    std::string n = std::to_string(workers_.size());
    std::string log = dir_.path() + "/worker" + n + ".log";
    logs_.push_back(log);
    // A new worker enrols with a join token of its own; a restarted one
    // (an earlier work_dir) is enrolled already and ignores it.
    std::vector<std::string> argv{test::BinPath("kiln-worker"), "--controller", addresses_[controller],
                                  "--slots",  std::to_string(slots), "--work-dir",
                                  work_dir.empty() ? dir_.path() + "/w" + n : work_dir,
                                  "--set", "ca_file=" + tls_ + "/ca.crt",
                                  "--set", "join_token_file=" + NewJoinToken("worker" + n),
                                  // Tests run plain jobs (no image); a test's own --set comes later and wins.
                                  "--set", "allow_plain_jobs=true"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    // Registered: a connected session that was not there before (a restarted
    // worker's row may still say connected from a controller that stopped
    // before it noticed the worker was gone; its session changes anyway).
    const std::string sessions =
        "SELECT coalesce(string_agg(id || '/' || coalesce(session, ''), ','), '') FROM workers WHERE state = 'connected'";
    std::set<std::string> before;
    for (const auto& s : SplitList(test::Sql(url_, sessions), ',')) before.insert(s);
    workers_.push_back(std::make_unique<test::Process>(argv, log));
    EXPECT_TRUE(test::WaitFor(
        [&] {
          for (const auto& s : SplitList(test::Sql(url_, sessions), ','))
            if (!before.count(s)) return true;
          return false;
        },
        20s))
        << "worker did not register";
    return *workers_.back();
  }

  std::unique_ptr<v1::JobService::Stub> Jobs(int controller = 0) {
    return v1::JobService::NewStub(Channel(controller));
  }
  std::unique_ptr<v1::AdminService::Stub> Admin(int controller = 0) {
    return v1::AdminService::NewStub(Channel(controller));
  }

  int64_t Submit(v1::JobService::Stub& stub, std::vector<std::string> argv, int64_t timeout_s = 0,
                 std::map<std::string, std::string> req = {}) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::SubmitRequest r;
    for (auto& a : argv) r.mutable_spec()->add_argv(a);
    r.mutable_spec()->set_timeout_s(timeout_s);
    for (auto& [k, v] : req) (*r.mutable_spec()->mutable_requirements())[k] = v;
    v1::SubmitResponse resp;
    auto s = stub.Submit(&ctx, r, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.job().id();
  }

  v1::Job Get(v1::JobService::Stub& stub, int64_t id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::GetJobRequest r;
    r.set_job_id(id);
    v1::Job j;
    auto s = stub.GetJob(&ctx, r, &j);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return j;
  }

  // Whether the log of daemon `log` (logs_, in start order) says `text`
  // after byte `from`, waiting up to `within`.
  bool Logged(size_t log, const std::string& text, std::chrono::milliseconds within = 20s, size_t from = 0) {
    return test::WaitFor(
        [&] {
          std::string all = test::ReadFile(logs_[log]);
          return all.size() > from && all.find(text, from) != std::string::npos;
        },
        within);
  }

  int Count(const std::string& where) { return std::stoi(test::Sql(url_, "SELECT count(*) FROM build_jobs WHERE " + where)); }

  bool AllEnded(std::chrono::milliseconds timeout) {
    return test::WaitFor([&] { return Count("status IN ('queued', 'setup', 'running')") == 0; }, timeout);
  }

  std::string Log(v1::JobService::Stub& stub, int64_t id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::WatchJobRequest r;
    r.set_job_id(id);
    auto reader = stub.WatchJob(&ctx, r);
    v1::JobEvent ev;
    std::string out;
    while (reader->Read(&ev)) {
      if (ev.has_log()) out += ev.log().data();
    }
    reader->Finish();
    return out;
  }

  test::TempDir dir_;
  std::string url_, conf_, tls_, admin_token_;
  std::vector<std::string> addresses_, logs_;
  std::vector<std::unique_ptr<test::Process>> controllers_, workers_;
};

}  // namespace kiln
