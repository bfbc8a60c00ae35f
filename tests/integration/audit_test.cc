// The audit trail end to end: a real TLS farm, the kiln CLI and, where no
// command exists, the gRPC API. Every state-changing call leaves exactly one
// row naming its caller and address; a refused call, or one that changes
// nothing, leaves none; kiln audit filters by project and time, and a read
// token sees only its project's rows; old rows go by audit_retention.

#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "api/channel.h"
#include "auth/x509.h"
#include "harness/container_farm.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln {
namespace {

using nlohmann::json;

// What every method of the API is to the audit trail: the action of the
// row it leaves, or why it leaves none. A method added to kiln.proto fails
// EveryMethodOfTheApiIsClassified until it is listed here.
const std::map<std::string, std::string>& Classes() {
  static const std::map<std::string, std::string> m = {
      {"kiln.v1.JobService/Submit", "job.submit"},
      {"kiln.v1.JobService/CancelJob", "job.cancel"},
      {"kiln.v1.JobService/GetJob", "read"},
      {"kiln.v1.JobService/WatchJob", "read"},
      {"kiln.v1.JobService/ListJobs", "read"},
      {"kiln.v1.JobService/ExplainJob", "read"},
      {"kiln.v1.AdminService/ListWorkers", "read"},
      {"kiln.v1.AdminService/ListProjects", "read"},
      {"kiln.v1.AdminService/CreateProject", "project.create"},
      {"kiln.v1.AdminService/GetProject", "read"},
      {"kiln.v1.AdminService/SetProjectConfig", "project.config"},
      {"kiln.v1.AdminService/ListClusters", "read"},
      {"kiln.v1.AdminService/CreateCluster", "cluster.create"},
      {"kiln.v1.AdminService/MapProject", "cluster.map / cluster.unmap"},
      {"kiln.v1.AdminService/GetCluster", "read"},
      {"kiln.v1.AdminService/SetClusterState", "cluster.set"},
      {"kiln.v1.AdminService/PlanClusters", "read"},
      {"kiln.v1.AdminService/ApplyClusters", "cluster.apply (when a step was done)"},
      {"kiln.v1.AdminService/ClusterHistory", "read"},
      {"kiln.v1.AdminService/ListWorkspaces", "read"},
      {"kiln.v1.AdminService/RemoveWorkspace", "workspace.remove"},
      {"kiln.v1.AdminService/SetCacheScope", "cache_scope.set"},
      {"kiln.v1.AdminService/ListCacheScopes", "read"},
      {"kiln.v1.AdminService/RemoveCacheScope", "cache_scope.remove"},
      {"kiln.v1.AdminService/CreateToken", "token.create"},
      {"kiln.v1.AdminService/ListTokens", "read"},
      {"kiln.v1.AdminService/RevokeToken", "token.revoke"},
      {"kiln.v1.AdminService/CreateJoinToken", "join_token.create"},
      {"kiln.v1.AdminService/RevokeWorker", "worker.revoke"},
      {"kiln.v1.AdminService/WhoAmI", "read"},
      {"kiln.v1.AdminService/ListAudit", "read"},
      {"kiln.v1.AdminService/GetStats", "read"},
      {"kiln.v1.ImageService/RegisterImage", "image.register"},
      {"kiln.v1.ImageService/GetImage", "read"},
      {"kiln.v1.ImageService/ListImages", "read"},
      {"kiln.v1.ImageService/RemoveImage", "image.remove"},
      {"kiln.v1.EnrollService/Enroll", "worker.enrol"},
      {"kiln.v1.WorkerService/RenewCertificate", "worker.renew"},
      // Content, not configuration: what is uploaded is named by its digest
      // and joins the uploader's scope.
      {"kiln.v1.CasService/FindMissing", "read"},
      {"kiln.v1.CasService/BatchUpload", "content"},
      {"kiln.v1.CasService/BatchRead", "read"},
      {"kiln.v1.CasService/Write", "content"},
      {"kiln.v1.CasService/QueryWrite", "read"},
      {"kiln.v1.CasService/Read", "read"},
      {"kiln.v1.CasService/UploadTrees", "content"},
      {"kiln.v1.CasService/GetTree", "read"},
      // A worker's progress: its session, heartbeats, its jobs' reports and
      // logs, the workspaces it holds, its jobs' compile cache.
      {"kiln.v1.WorkerService/Connect", "progress"},
      {"kiln.v1.WorkerService/LookupCompile", "read"},
      {"kiln.v1.WorkerService/LookupCompileResult", "read"},
      {"kiln.v1.WorkerService/StoreCompile", "content"},
      {"kiln.v1.WorkerService/RecordCompiles", "progress"},
      // A job's remote action: its inputs are content already, its run is the job's progress.
      {"kiln.v1.WorkerService/ExecuteAction", "progress"},
      {"kiln.v1.CacheService/CompileStats", "read"},
      {"kiln.v1.CacheService/CompileImpact", "read"},
  };
  return m;
}

class Audit : public ContainerFarm {
 protected:
  // kiln with the token in `token_file` (default: the admin's).
  test::CommandResult As(const std::string& token_file, std::vector<std::string> args,
                         std::map<std::string, std::string> env = {}) {
    std::vector<std::string> argv{test::BinPath("kiln"), "--controller", addresses_[0]};
    argv.insert(argv.end(), args.begin(), args.end());
    env["KILN_TOKEN_FILE"] = token_file;
    env["XDG_CACHE_HOME"] = dir_.path() + "/xdg";
    return test::RunCommand(argv, 60s, env, dir_.path());
  }
  // A token made with kiln tokens create (an audited call), in a file.
  std::string TokenFile(const std::string& name, std::vector<std::string> args) {
    std::vector<std::string> argv{"tokens", "create"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = Kiln(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string file = dir_.path() + "/" + name + ".token";
    test::WriteFile(file, r.out);
    return file;
  }
  static std::string IdOf(const std::string& token_file) { return test::ReadFile(token_file).substr(5, 12); }
  // The id of a join token (..._<12 hex id>_<secret>).
  static std::string JoinId(const std::string& t) { return t.substr(t.rfind('_') - 12, 12); }
  // kiln audit --json (admin), oldest first.
  json Rows(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"audit", "--json", "--limit", "10000"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = Kiln(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    json rows = json::parse(r.out, nullptr, false);
    EXPECT_TRUE(rows.is_array()) << r.out;
    if (!rows.is_array()) return json::array();
    std::reverse(rows.begin(), rows.end());
    return rows;
  }
  std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }
  bool Ended(const std::string& job) {
    const std::string st = test::Sql(url_, "SELECT status FROM build_jobs WHERE id = " + job);
    return st != "queued" && st != "setup" && st != "running";
  }
};

// The same with a short audit_retention, pruned by a collector pass every 200 ms.
class AuditKept : public Audit {
 protected:
  AuditKept() { extra_conf_ = "audit_retention = 1d\ncas_gc_interval = 200ms\n"; }
};

TEST(AuditClasses, EveryMethodOfTheApiIsClassified) {
  std::set<std::string> seen;
  for (const char* service : {"kiln.v1.JobService", "kiln.v1.AdminService", "kiln.v1.CasService",
                              "kiln.v1.ImageService", "kiln.v1.CacheService", "kiln.v1.WorkerService",
                              "kiln.v1.EnrollService"}) {
    const auto* s = google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
    ASSERT_NE(s, nullptr) << service;
    for (int i = 0; i < s->method_count(); ++i) {
      std::string m = std::string(service) + "/" + s->method(i)->name();
      seen.insert(m);
      EXPECT_EQ(Classes().count(m), 1u) << m << " is not classified: does it change state (then the store it "
                                                 "calls must write an audit row) or not?";
    }
  }
  for (const auto& [m, what] : Classes()) EXPECT_EQ(seen.count(m), 1u) << m << " is not in kiln.proto";
}

TEST_F(Audit, EveryStateChangingCallLeavesExactlyOneRowNamingItsCaller) {
  StartController();   // the admin token: kiln-controller tokens create, on the host
  StartWorker(0, 1);   // a join token made on the host, then enrolment with it
  const std::string admin = "token " + admin_token_.substr(5, 12);
  const std::string worker_id =
      auth::InspectCert(test::ReadFile(dir_.path() + "/w0/tls/worker.crt")).value().common_name;
  const std::string join_id = JoinId(test::ReadFile(dir_.path() + "/worker0.join"));
  // What each call should leave, in order: action, actor, project, target.
  struct Want {
    std::string action, actor, project, target;
  };
  std::vector<Want> want;
  const passwd* pw = getpwuid(geteuid());
  ASSERT_NE(pw, nullptr);
  const std::string local = "local " + std::string(pw->pw_name);
  want.push_back({"token.create", local, "", "token " + admin_token_.substr(5, 12)});
  want.push_back({"join_token.create", local, "", "join token " + join_id});
  want.push_back({"worker.enrol", "join token " + join_id, "", "worker " + worker_id});

  auto ok = [&](const test::CommandResult& r) {
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return FirstLine(r.out);
  };
  // The admin, through the CLI.
  ok(Kiln({"projects", "create", "web"}));
  want.push_back({"project.create", admin, "web", "project web"});
  ok(Kiln({"projects", "config", "set", "web", R"({"timeout_s": 60})"}));
  want.push_back({"project.config", admin, "web", "project web"});
  ok(Kiln({"clusters", "create", "east"}));
  want.push_back({"cluster.create", admin, "", "cluster east"});
  ok(Kiln({"clusters", "map", "east", "web"}));
  want.push_back({"cluster.map", admin, "web", "cluster east"});
  ok(Kiln({"clusters", "map", "default", "web"}));
  want.push_back({"cluster.map", admin, "web", "cluster default"});
  ok(Kiln({"cache", "scopes", "set", "team", "--project", "web", "--project", "default"}));
  want.push_back({"cache_scope.set", admin, "", "cache scope team"});
  ok(Kiln({"cache", "scopes", "rm", "team"}));
  want.push_back({"cache_scope.remove", admin, "", "cache scope team"});
  const std::string submitter = TokenFile("submit", {"--role", "submit", "--project", "web"});
  want.push_back({"token.create", admin, "", "token " + IdOf(submitter)});
  const std::string reader = TokenFile("read", {"--role", "read", "--project", "web"});
  want.push_back({"token.create", admin, "", "token " + IdOf(reader)});
  const std::string doomed = TokenFile("doomed", {"--role", "read", "--project", "web"});
  want.push_back({"token.create", admin, "", "token " + IdOf(doomed)});
  ok(Kiln({"tokens", "revoke", IdOf(doomed)}));
  want.push_back({"token.revoke", admin, "", "token " + IdOf(doomed)});
  const std::string join2 = ok(Kiln({"workers", "join-token"}));
  want.push_back({"join_token.create", admin, "", "join token " + JoinId(join2)});
  test::WriteFile(dir_.path() + "/root/hello", "hello\n");
  ASSERT_EQ(test::RunCommand({"/bin/tar", "-C", dir_.path() + "/root", "-cf", dir_.path() + "/root.tar", "."}, 30s).exit_code,
            0);
  const std::string image = ok(Kiln({"image", "import", dir_.path() + "/root.tar", "--name", "tiny"}));
  want.push_back({"image.register", admin, "", "image " + image});
  ok(Kiln({"image", "rm", image}));
  want.push_back({"image.remove", admin, "", "image " + image});
  const std::string admins_job = ok(Kiln({"submit", "--detach", "--no-input", "--", "true"}));
  want.push_back({"job.submit", admin, "default", "job " + admins_job});

  // A submit token of project web, through the CLI: a job whose variable
  // holds a secret, and a secret env; a job cancelled while it waits, a
  // warm workspace removed.
  const std::string secret = "hunter2-not-for-the-audit-trail";
  const std::map<std::string, std::string> deploy_key{{"DEPLOY_KEY", "sealed-hunter3-value"}};
  const std::vector<std::string> secret_job{"submit", "--project", "web", "--detach", "--no-input", "--request-id",
                                            "r-1", "--env", "API_KEY=" + secret, "--secret-env", "DEPLOY_KEY",
                                            "--", "echo", "built"};
  const std::string job = ok(As(submitter, secret_job, deploy_key));
  want.push_back({"job.submit", "token " + IdOf(submitter), "web", "job " + job});
  ASSERT_TRUE(test::WaitFor([&] { return Ended(job); }, 30s));
  const std::string waiting =
      ok(As(submitter, {"submit", "--project", "web", "--cluster", "east", "--detach", "--no-input", "--", "true"}));
  want.push_back({"job.submit", "token " + IdOf(submitter), "web", "job " + waiting});
  ok(As(submitter, {"cancel", waiting}));
  want.push_back({"job.cancel", "token " + IdOf(submitter), "web", "job " + waiting});
  auto warm = As(submitter, {"submit", "--project", "web", "--no-input", "--workspace", "persistent",
                             "--workspace-name", "main", "--", "true"});
  ASSERT_EQ(warm.exit_code, 0) << warm.err;
  const std::string warm_job = test::Sql(url_, "SELECT max(id) FROM build_jobs");
  want.push_back({"job.submit", "token " + IdOf(submitter), "web", "job " + warm_job});
  ASSERT_TRUE(test::WaitFor(
      [&] { return As(submitter, {"workspace", "list", "--project", "web"}).out.find("main") != std::string::npos; },
      20s));
  ok(As(submitter, {"workspace", "rm", "main", "--project", "web"}));
  want.push_back({"workspace.remove", "token " + IdOf(submitter), "web", "workspace main"});

  // The worker renews its certificate (no CLI: the worker's own call).
  {
    api::ChannelOptions o;
    o.address = addresses_[0];
    o.ca_pem = test::ReadFile(tls_ + "/ca.crt");
    o.key_pem = test::ReadFile(dir_.path() + "/w0/tls/worker.key");
    o.cert_pem = test::ReadFile(dir_.path() + "/w0/tls/worker.crt");
    auto csr = auth::NewKeyAndCsr(worker_id);
    ASSERT_TRUE(csr.ok());
    v1::RenewRequest req;
    req.set_csr_pem(csr->csr_pem);
    v1::EnrollResponse renewed;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 20s);
    auto st = v1::WorkerService::NewStub(api::MakeChannel(o, grpc::ChannelArguments()))
                  ->RenewCertificate(&ctx, req, &renewed);
    ASSERT_TRUE(st.ok()) << st.error_message();
    want.push_back({"worker.renew", "worker " + worker_id, "", "worker " + worker_id});
  }
  ok(Kiln({"clusters", "unmap", "east", "web"}));
  want.push_back({"cluster.unmap", admin, "web", "cluster east"});
  ok(Kiln({"clusters", "set", "east", "--min", "1", "--max", "3", "--provider", "process"}));
  want.push_back({"cluster.set", admin, "", "cluster east"});
  ok(Kiln({"workers", "revoke", worker_id}));
  want.push_back({"worker.revoke", admin, "", "worker " + worker_id});
  EXPECT_EQ(workers_[0]->Wait(20s), 3) << "the revoked worker stops";

  // Refused calls change nothing and leave no row; nor do calls that change nothing.
  EXPECT_EQ(As(reader, {"submit", "--project", "web", "--no-input", "--", "true"}).exit_code, 6);
  EXPECT_EQ(As(submitter, {"cancel", job}).exit_code, 5) << "an ended job: nothing to cancel";
  EXPECT_EQ(As(submitter, {"cancel", admins_job}).exit_code, 6) << "another project's job";
  EXPECT_EQ(As(submitter, secret_job, deploy_key).exit_code, 0) << "the same request again: the same job, nothing new";
  EXPECT_EQ(Kiln({"clusters", "map", "default", "web"}).exit_code, 0) << "mapped already: nothing changes";
  EXPECT_EQ(Kiln({"projects", "config", "set", "web", R"({"timeout_s": 60})"}).exit_code, 0) << "the same again";
  EXPECT_EQ(Kiln({"tokens", "revoke", IdOf(doomed)}).exit_code, 0) << "revoked already";
  EXPECT_EQ(Kiln({"projects", "create", "web"}).exit_code, 5) << "exists";
  EXPECT_EQ(Kiln({"clusters", "set", "east", "--min", "1", "--max", "3"}).exit_code, 0) << "the same again";
  EXPECT_EQ(Kiln({"clusters", "set", "east", "--min", "4"}).exit_code, 5) << "above --max 3";
  EXPECT_EQ(As(reader, {"clusters", "set", "east", "--max", "5"}).exit_code, 6) << "an admin's call";
  EXPECT_EQ(Kiln({"image", "rm", image}).exit_code, 4) << "gone";
  {
    // An invalid configuration, past the CLI's own check: through the API.
    v1::SetProjectConfigRequest set;
    set.set_name("web");
    set.set_config_json(R"({"bogus": 1})");
    v1::Project p;
    grpc::ClientContext ctx;
    EXPECT_EQ(Admin()->SetProjectConfig(&ctx, set, &p).error_code(), grpc::INVALID_ARGUMENT);
  }

  json rows = Rows();
  ASSERT_EQ(rows.size(), want.size()) << rows.dump(1);
  for (size_t i = 0; i < want.size(); ++i) {
    const json& r = rows[i];
    SCOPED_TRACE("row " + std::to_string(i) + ": " + r.dump());
    EXPECT_EQ(r["action"], want[i].action);
    EXPECT_EQ(r["actor"], want[i].actor);
    EXPECT_EQ(r["project"], want[i].project);
    EXPECT_EQ(r["target"], want[i].target);
    // The CLI, the worker and enrolment come from loopback; the host's commands are "local".
    if (want[i].actor.rfind("local ", 0) == 0) EXPECT_EQ(r["address"], "local");
    else EXPECT_EQ(r["address"].get<std::string>().rfind("ipv4:127.0.0.1:", 0), 0u);
    EXPECT_TRUE(json::parse(r["change_json"].get<std::string>()).is_object());
  }
  // What changed: the configuration before and after; a token's role and
  // projects; the submit's command and environment NAMES, never a value.
  auto change = [&](const std::string& action, const std::string& target) {
    for (const auto& r : rows)
      if (r["action"] == action && r["target"] == target) return json::parse(r["change_json"].get<std::string>());
    return json();
  };
  json cfg = change("project.config", "project web");
  EXPECT_EQ(cfg["old"], json::object());
  EXPECT_EQ(cfg["new"]["timeout_s"], 60);
  json tok = change("token.create", "token " + IdOf(submitter));
  EXPECT_EQ(tok["role"], "submit");
  EXPECT_EQ(tok["projects"], json::array({"web"}));
  json sub = change("job.submit", "job " + job);
  EXPECT_EQ(sub["env"], json::array({"API_KEY"}));
  EXPECT_EQ(sub["secret_env"], json::array({"DEPLOY_KEY"}));
  EXPECT_EQ(sub["argv"], json::array({"echo", "built"}));
  EXPECT_EQ(sub["request_id"], "r-1");
  EXPECT_EQ(change("job.cancel", "job " + waiting)["status"], "queued");
  auto all = Kiln({"audit", "--json", "--limit", "10000"});
  EXPECT_EQ(all.out.find(secret), std::string::npos) << "an environment value is not in the audit trail";
  EXPECT_EQ(all.out.find(admin_token_.substr(18)), std::string::npos) << "nor a token's secret";
  EXPECT_EQ(all.out.find("hunter3"), std::string::npos) << "nor a secret env's value";
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM audit_log WHERE change::text LIKE '%hunter%'"), "0");
  for (const auto& file : {submitter, reader, doomed}) {
    const std::string secret_part = Trim(test::ReadFile(file)).substr(18);
    EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM audit_log WHERE change::text LIKE '%" + secret_part + "%'"), "0");
  }

  // For people: one line per change, the configuration's change spelled out.
  auto human = Kiln({"audit", "--project", "web", "--limit", "50"});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_NE(human.out.find("TIME"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("project.config"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("timeout_s: (none) -> 60"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("env=[API_KEY]"), std::string::npos) << human.out;
  EXPECT_EQ(human.out.find(secret), std::string::npos);
}

TEST_F(AuditKept, ItIsFilteredByProjectAndTimeAReadTokenSeesOnlyItsProjectAndOldRowsGo) {
  StartController();
  ASSERT_EQ(Kiln({"projects", "create", "a"}).exit_code, 0);
  ASSERT_EQ(Kiln({"projects", "create", "b"}).exit_code, 0);
  for (const char* p : {"a", "b"}) {
    ASSERT_EQ(Kiln({"submit", "--project", p, "--detach", "--no-input", "--", "true"}).exit_code, 0);
  }
  const std::string reader = dir_.path() + "/read-a.token";
  NewToken("read", "a", reader);

  // A read token of project a: a's rows, and nothing else.
  auto mine = As(reader, {"audit", "--project", "a", "--json"});
  ASSERT_EQ(mine.exit_code, 0) << mine.err;
  json rows = json::parse(mine.out);
  ASSERT_EQ(rows.size(), 2u) << rows.dump(1);
  for (const auto& r : rows) EXPECT_EQ(r["project"], "a") << r.dump();
  EXPECT_EQ(rows[0]["action"], "job.submit") << "newest first";
  EXPECT_EQ(rows[1]["action"], "project.create");
  auto theirs = As(reader, {"audit", "--project", "b"});
  EXPECT_EQ(theirs.exit_code, 6) << theirs.out;
  EXPECT_NE(theirs.err.find("needs a read (or stronger) token for project b"), std::string::npos) << theirs.err;
  auto everything = As(reader, {"audit"});
  EXPECT_EQ(everything.exit_code, 6) << everything.out;
  EXPECT_NE(everything.err.find("needs an admin token"), std::string::npos) << everything.err;
  EXPECT_NE(everything.err.find("kiln audit --project a"), std::string::npos) << everything.err;
  // An admin reads any project's, and the whole trail.
  json b_rows = Rows({"--project", "b"});
  ASSERT_EQ(b_rows.size(), 2u) << b_rows.dump(1);
  for (const auto& r : b_rows) EXPECT_EQ(r["project"], "b") << r.dump();
  json all = Rows();
  EXPECT_EQ(all.size(), 6u) << "two bootstrap tokens and four changes:\n" << all.dump(1);

  // --limit takes the newest; the API pages on with before_id.
  auto one = Kiln({"audit", "--limit", "1"});
  ASSERT_EQ(one.exit_code, 0) << one.err;
  EXPECT_EQ(std::count(one.out.begin(), one.out.end(), '\n'), 2) << "a header and one row:\n" << one.out;
  EXPECT_NE(one.out.find("token.create"), std::string::npos) << one.out;
  std::vector<int64_t> paged;
  v1::ListAuditRequest req;
  req.set_limit(4);
  for (int page = 0; page < 3; ++page) {
    v1::ListAuditResponse resp;
    grpc::ClientContext ctx;
    ASSERT_TRUE(Admin()->ListAudit(&ctx, req, &resp).ok());
    for (const auto& e : resp.entries()) paged.push_back(e.id());
    if (resp.entries_size() == 0) break;
    req.set_before_id(resp.entries(resp.entries_size() - 1).id());
  }
  std::vector<int64_t> newest_first;
  for (auto it = all.rbegin(); it != all.rend(); ++it) newest_first.push_back(std::stoll((*it)["id"].get<std::string>()));
  EXPECT_EQ(paged, newest_first) << "pages of 4: every row once, newest first";

  // --since: project a's rows made two hours ago are left out of the last hour.
  test::Sql(url_, "UPDATE audit_log SET at = now() - interval '2 hours' WHERE project = 'a'");
  json recent = Rows({"--since", "1h"});
  EXPECT_EQ(recent.size(), 4u) << recent.dump(1);
  for (const auto& r : recent) EXPECT_NE(r["project"], "a") << r.dump();
  EXPECT_EQ(Rows({"--since", "3h"}).size(), 6u);
  EXPECT_EQ(Kiln({"audit", "--since", "soon"}).exit_code, 2);

  // audit_retention = 1d: a row older than that goes with the next pass, the rest stay.
  test::Sql(url_, "UPDATE audit_log SET at = now() - interval '2 days' WHERE project = 'b' AND action = 'project.create'");
  EXPECT_TRUE(test::WaitFor([&] { return test::Sql(url_, "SELECT count(*) FROM audit_log") == "5"; }, 20s));
  json kept = Rows();
  ASSERT_EQ(kept.size(), 5u);
  for (const auto& r : kept) EXPECT_FALSE(r["project"] == "b" && r["action"] == "project.create") << r.dump();
}

}  // namespace
}  // namespace kiln
