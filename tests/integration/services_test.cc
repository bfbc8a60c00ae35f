// Each controller service built from only the parts it declares (stores on a
// throwaway PostgreSQL, signals, the registry), served in-process over real
// gRPC, and checked through what its clients see.

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <functional>

#include "audit/audit_store.h"
#include "auth/trust_store.h"
#include "api/convert.h"
#include "cache/compile_store.h"
#include "config/config.h"
#include "controller/actions.h"
#include "controller/admin_service.h"
#include "cas/image_store.h"
#include "cas/store.h"
#include "cas/tree_store.h"
#include "controller/cas.h"
#include "controller/compile_service.h"
#include "controller/enroll.h"
#include "controller/guard.h"
#include "controller/scopes.h"
#include "cas/scope_store.h"
#include "controller/job_service.h"
#include "controller/project_cache.h"
#include "controller/reports.h"
#include "controller/sessions.h"
#include "controller/signal.h"
#include "controller/worker_service.h"
#include "harness/harness.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "queue/catalog_store.h"
#include "queue/dispatch_store.h"
#include "queue/job_store.h"
#include "queue/open_pool.h"
#include "queue/stats_store.h"
#include "queue/worker_store.h"

namespace kiln::controller {
namespace {

using namespace std::chrono_literals;

// One service behind an in-process gRPC server.
class Served {
 public:
  explicit Served(std::unique_ptr<grpc::Service> service) : service_(std::move(service)) {
    grpc::ServerBuilder b;
    b.RegisterService(service_.get());
    server_ = b.BuildAndStart();
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
  }
  ~Served() { server_->Shutdown(std::chrono::system_clock::now() + 1s); }
  std::shared_ptr<grpc::Channel> channel() { return channel_; }

 private:
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

// The API token every call of these tests carries (an admin's, made by the fixture).
std::string g_token;

// Who the audit trail names for what these tests change through the stores.
const audit::Who kWho{"test", "local"};

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto c = std::make_unique<grpc::ClientContext>();
  if (!g_token.empty()) c->AddMetadata("authorization", "Bearer " + g_token);
  c->set_deadline(std::chrono::system_clock::now() + 20s);
  return c;
}

class ServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = test::NewDatabase();
    auto pool = queue::OpenPool(url_, 4);
    ASSERT_TRUE(pool.ok()) << pool.status().message();
    pool_ = std::move(pool).value();
    // Services served in-process without TLS: the guard checks tokens, and
    // takes a worker's word for its name.
    trust_ = std::make_unique<auth::TrustStore>(*pool_);
    audit_ = std::make_unique<audit::AuditStore>(*pool_);
    stats_ = std::make_unique<queue::StatsStore>(*pool_);
    guard_ = std::make_unique<Guard>(*trust_, /*tls=*/false);
    enroller_ = Enroller::Disabled(*trust_, "no CA in these tests");
    fx_catalog_ = std::make_unique<queue::CatalogStore>(*pool_);
    fx_projects_ = std::make_unique<ProjectCache>(*fx_catalog_);
    fx_trees_ = std::make_unique<cas::TreeStore>(url_, 1, 600);
    scope_store_ = std::make_unique<cas::ScopeStore>(*pool_);
    scopes_ = std::make_unique<ContentScopes>(*scope_store_, *fx_projects_, *fx_trees_);
    auto token = trust_->CreateToken({auth::Role::kAdmin, {}, "services test", "test", 0}, kWho);
    ASSERT_TRUE(token.ok()) << token.status().message();
    g_token = *token;
  }

  test::TempDir dir_;
  std::string url_;
  std::shared_ptr<db::Pool> pool_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<auth::TrustStore> trust_;
  std::unique_ptr<audit::AuditStore> audit_;
  std::unique_ptr<queue::StatsStore> stats_;
  std::unique_ptr<Guard> guard_;
  std::unique_ptr<Enroller> enroller_;
  std::unique_ptr<queue::CatalogStore> fx_catalog_;
  std::unique_ptr<ProjectCache> fx_projects_;
  std::unique_ptr<cas::TreeStore> fx_trees_;
  std::unique_ptr<cas::ScopeStore> scope_store_;
  std::unique_ptr<ContentScopes> scopes_;
};

TEST_F(ServicesTest, JobServiceQueuesWakesAndCancelsFromItsOwnParts) {
  auto blobs = cas::OpenDirStore(dir_.path() + "/cas", 600);
  ASSERT_TRUE(blobs.ok()) << blobs.status().message();
  cas::TreeStore trees(url_, 1, 600);
  cas::ImageStore images(url_, 1);
  queue::JobStore jobs(*pool_);
  queue::CatalogStore catalog(*pool_);
  ProjectCache projects(catalog);
  cache::CompileCacheStore compiles(url_, 1);
  Signal dispatch_wake, remote_wake, job_events;
  Served s(MakeJobService({*guard_, *scopes_, jobs, projects, trees, **blobs, images, 1000, compiles, nullptr, dispatch_wake, remote_wake,
                           job_events, stopping_}));
  auto stub = v1::JobService::NewStub(s.channel());

  uint64_t d0 = dispatch_wake.generation(), r0 = remote_wake.generation();
  v1::SubmitRequest req;
  req.mutable_spec()->add_argv("true");
  v1::SubmitResponse resp;
  auto st = stub->Submit(Ctx().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.job().project(), "default");
  EXPECT_EQ(resp.job().status(), v1::QUEUED);
  EXPECT_GT(dispatch_wake.generation(), d0) << "a queued job wakes this controller's dispatcher";
  EXPECT_GT(remote_wake.generation(), r0) << "... and the other controllers'";

  v1::Job got;
  v1::GetJobRequest get;
  get.set_job_id(resp.job().id());
  ASSERT_TRUE(stub->GetJob(Ctx().get(), get, &got).ok());
  EXPECT_EQ(got.id(), resp.job().id());
  EXPECT_EQ(got.unsatisfiable(),
            "no connected worker belongs to a cluster that serves project \"default\" (see kiln clusters and kiln workers)")
      << "no worker is connected: the job says why it waits";

  uint64_t e0 = job_events.generation();
  v1::CancelJobRequest cancel;
  cancel.set_job_id(resp.job().id());
  v1::Job cancelled;
  ASSERT_TRUE(stub->CancelJob(Ctx().get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.status(), v1::CANCELLED);
  EXPECT_GT(job_events.generation(), e0) << "watchers of the job are woken";

  req.set_project("nosuch");
  st = stub->Submit(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::NOT_FOUND) << st.error_message();

  // An input tree is checked against the tree store it was given.
  req.set_project("default");
  auto* root = req.mutable_spec()->mutable_input_root();
  root->set_hash(std::string(64, 'c'));
  root->set_size(10);
  st = stub->Submit(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::FAILED_PRECONDITION) << st.error_message();
  EXPECT_NE(st.error_message().find("upload it first"), std::string::npos) << st.error_message();

  // The input paths the CLI left out as downloaded outputs stay with the job
  // (kiln why and status show them); one that is not a relative path is refused.
  req.mutable_spec()->clear_input_root();
  req.mutable_spec()->add_excluded_outputs("dist/app");
  st = stub->Submit(Ctx().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  get.set_job_id(resp.job().id());
  ASSERT_TRUE(stub->GetJob(Ctx().get(), get, &got).ok());
  ASSERT_EQ(got.spec().excluded_outputs_size(), 1);
  EXPECT_EQ(got.spec().excluded_outputs(0), "dist/app");
  req.mutable_spec()->add_excluded_outputs("../etc/passwd");
  st = stub->Submit(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("excluded output"), std::string::npos) << st.error_message();
}

TEST_F(ServicesTest, AdminServiceChangesTheCatalogAndWakesWhoMustKnow) {
  queue::CatalogStore catalog(*pool_);
  queue::WorkerStore workers(*pool_);
  Signal config_wake, dispatch_wake;
  Served s(MakeAdminService({*guard_, *trust_, [](const std::string&) { return false; }, catalog, workers, config_wake, dispatch_wake, *audit_, *stats_}));
  auto stub = v1::AdminService::NewStub(s.channel());

  v1::CreateProjectRequest create;
  create.set_name("web");
  v1::Project p;
  ASSERT_TRUE(stub->CreateProject(Ctx().get(), create, &p).ok());
  EXPECT_EQ(p.name(), "web");

  uint64_t c0 = config_wake.generation();
  v1::SetProjectConfigRequest set;
  set.set_name("web");
  set.set_config_json(R"({"default_priority": 5})");
  ASSERT_TRUE(stub->SetProjectConfig(Ctx().get(), set, &p).ok());
  EXPECT_GT(config_wake.generation(), c0) << "the project cache reloads";
  auto row = catalog.GetProject("web");
  ASSERT_TRUE(row.ok());
  EXPECT_NE(row->config_json.find("\"default_priority\": 5"), std::string::npos) << row->config_json;

  uint64_t d0 = dispatch_wake.generation();
  v1::MapProjectRequest map;
  map.set_cluster("default");
  map.set_project("web");
  v1::Cluster c;
  ASSERT_TRUE(stub->MapProject(Ctx().get(), map, &c).ok());
  EXPECT_GT(dispatch_wake.generation(), d0) << "queued jobs of the project may now be claimable";
  EXPECT_EQ(std::vector<std::string>(c.projects().begin(), c.projects().end()),
            (std::vector<std::string>{"default", "web"}));

  set.set_config_json(R"({"default_priority": "high"})");
  EXPECT_EQ(stub->SetProjectConfig(Ctx().get(), set, &p).error_code(), grpc::INVALID_ARGUMENT);
}

// Finding 1 of the security probe: libpqxx hands text to PostgreSQL as a C
// string, so GetProject("a\0junk") answered project "a", and a name with a
// NUL and a newline forged a line of the controller's log. Every name a
// client sends is refused now, saying which field and what is allowed.
TEST_F(ServicesTest, AdminServiceRejectsNulInProjectName) {
  queue::CatalogStore catalog(*pool_);
  queue::WorkerStore workers(*pool_);
  Signal config_wake, dispatch_wake;
  Served s(MakeAdminService({*guard_, *trust_, [](const std::string&) { return false; }, catalog, workers, config_wake, dispatch_wake, *audit_, *stats_}));
  auto stub = v1::AdminService::NewStub(s.channel());
  v1::CreateProjectRequest create;
  create.set_name("a");
  v1::Project p;
  ASSERT_TRUE(stub->CreateProject(Ctx().get(), create, &p).ok());

  const std::string nul("a\0junk", 6);
  v1::GetProjectRequest get;
  get.set_name(nul);
  auto st = stub->GetProject(Ctx().get(), get, &p);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << "answered project " << p.name();
  EXPECT_NE(st.error_message().find("invalid project name \"a\\x00junk\": use 1-63 letters, digits"),
            std::string::npos)
      << st.error_message();

  // The forged log line: refused before anything is changed or logged.
  v1::SetProjectConfigRequest set;
  set.set_name(std::string("a\0", 2) + "\n2030-01-01 00:00:00.000 kiln-controller[1] info: forged");
  set.set_config_json(R"({"default_priority": 7})");
  uint64_t c0 = config_wake.generation();
  st = stub->SetProjectConfig(Ctx().get(), set, &p);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  EXPECT_EQ(st.error_message().find('\n'), std::string::npos) << "the name is quoted escaped: " << st.error_message();
  EXPECT_EQ(config_wake.generation(), c0);
  EXPECT_EQ(catalog.GetProject("a")->config_json, "{}") << "project a was not changed";

  v1::CreateClusterRequest cluster;
  cluster.set_name(std::string("c\0", 2));
  v1::Cluster c;
  st = stub->CreateCluster(Ctx().get(), cluster, &c);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_NE(st.error_message().find("invalid cluster name"), std::string::npos) << st.error_message();
  v1::MapProjectRequest map;
  map.set_cluster("default");
  map.set_project(nul);
  st = stub->MapProject(Ctx().get(), map, &c);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << "mapped project a instead";
  v1::RemoveWorkspaceRequest rm;
  rm.set_project(nul);
  rm.set_name("main");
  v1::RemoveWorkspaceResponse removed;
  EXPECT_EQ(stub->RemoveWorkspace(Ctx().get(), rm, &removed).error_code(), grpc::INVALID_ARGUMENT);
}

TEST_F(ServicesTest, JobServiceRejectsControlCharactersInNamesIdsLabelsAndReasons) {
  auto blobs = cas::OpenDirStore(dir_.path() + "/cas", 600);
  ASSERT_TRUE(blobs.ok()) << blobs.status().message();
  cas::TreeStore trees(url_, 1, 600);
  cas::ImageStore images(url_, 1);
  queue::JobStore jobs(*pool_);
  queue::CatalogStore catalog(*pool_);
  ProjectCache projects(catalog);
  cache::CompileCacheStore compiles(url_, 1);
  Signal dispatch_wake, remote_wake, job_events;
  Served s(MakeJobService({*guard_, *scopes_, jobs, projects, trees, **blobs, images, 1000, compiles, nullptr, dispatch_wake, remote_wake,
                           job_events, stopping_}));
  auto stub = v1::JobService::NewStub(s.channel());

  // Each request is refused with INVALID_ARGUMENT naming its field.
  auto refused = [&](const v1::SubmitRequest& req, const std::string& field) {
    v1::SubmitResponse resp;
    auto st = stub->Submit(Ctx().get(), req, &resp);
    EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << field << ": " << st.error_message();
    EXPECT_NE(st.error_message().find(field), std::string::npos) << st.error_message();
  };
  v1::SubmitRequest base;
  base.mutable_spec()->add_argv("true");
  v1::SubmitRequest r = base;
  r.set_project(std::string("default\0x", 9));
  refused(r, "project name");
  r = base;
  r.set_cluster(std::string("default\0x", 9));
  refused(r, "cluster name");
  r = base;
  r.set_request_id("ci-42\nforged");
  refused(r, "request_id");
  r = base;
  r.set_request_id(std::string("ci-42\0other", 11));
  refused(r, "request_id");
  r = base;
  (*r.mutable_spec()->mutable_requirements())["gpu"] = "1\n";
  refused(r, "requirement gpu");
  r = base;
  (*r.mutable_spec()->mutable_env())["A\tB"] = "x";
  refused(r, "environment variable name");
  r = base;
  r.mutable_spec()->set_image(std::string("sha256:") + std::string(64, 'a') + "\n");
  refused(r, "bad image");
  r = base;
  r.mutable_spec()->set_working_dir(std::string("sub\0dir", 7));
  refused(r, "working_dir");
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM build_jobs"), "0") << "nothing was queued";

  // A newline in an env value is a value like any other.
  r = base;
  (*r.mutable_spec()->mutable_env())["SCRIPT"] = "echo a\necho b";
  v1::SubmitResponse ok;
  auto st = stub->Submit(Ctx().get(), r, &ok);
  ASSERT_TRUE(st.ok()) << st.error_message();

  v1::CancelJobRequest cancel;
  cancel.set_job_id(ok.job().id());
  cancel.set_reason("done\n2030-01-01 00:00:00.000 kiln-worker[1] info: forged");
  v1::Job j;
  st = stub->CancelJob(Ctx().get(), cancel, &j);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("reason"), std::string::npos) << st.error_message();

  v1::ListJobsRequest list;
  list.set_project(std::string("default\0x", 9));
  v1::ListJobsResponse listed;
  st = stub->ListJobs(Ctx().get(), list, &listed);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << "listed " << listed.jobs_size() << " jobs of project default";
}

TEST_F(ServicesTest, WorkerServiceRejectsControlCharactersInARegistration) {
  queue::WorkerStore workers(*pool_);
  queue::DispatchStore dispatch(*pool_);
  cache::CompileCacheStore compiles(url_, 1);
  auto blobs = cas::OpenDirStore(dir_.path() + "/cas", 600);
  ASSERT_TRUE(blobs.ok()) << blobs.status().message();
  Registry registry;
  ActionBroker actions;
  ReportQueue reports;
  Signal dispatch_wake;
  Served s(MakeWorkerService({*guard_, *enroller_, *scopes_, workers, dispatch, compiles, **blobs, registry, actions, reports, dispatch_wake, stopping_,
                              "ctl-test", 30s, 3s}));
  auto stub = v1::WorkerService::NewStub(s.channel());
  auto refused = [&](const std::function<void(v1::WorkerRegister*)>& spoil, const std::string& field) {
    v1::WorkerMessage reg;
    auto* r = reg.mutable_register_();
    r->set_worker_id("w1");
    r->set_hostname("h1");
    r->set_arch("x86_64");
    r->set_cluster("default");
    r->set_slots(2);
    spoil(r);
    auto ctx = Ctx();
    auto stream = stub->Connect(ctx.get());
    stream->Write(reg);
    stream->WritesDone();
    v1::ControllerMessage m;
    while (stream->Read(&m)) {
    }
    auto st = stream->Finish();
    EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << field << ": " << st.error_message();
    EXPECT_NE(st.error_message().find(field), std::string::npos) << st.error_message();
  };
  refused([](v1::WorkerRegister* r) { r->set_hostname("h1\n2030-01-01 kiln-controller[1] info: forged"); }, "hostname");
  refused([](v1::WorkerRegister* r) { r->set_worker_id(std::string("w1\0x", 4)); }, "worker_id");
  refused([](v1::WorkerRegister* r) { r->set_cluster(std::string("default\0x", 9)); }, "cluster name");
  refused([](v1::WorkerRegister* r) { (*r->mutable_labels())["pool"] = "a\rb"; }, "label pool");
  refused([](v1::WorkerRegister* r) { (*r->mutable_labels())["po\x1bol"] = "a"; }, "label name");
  auto listed = workers.List(true);
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty()) << "no worker was registered";
}

// Finding 4 of the security probe: a 3.4 MB env in a project's
// configuration was accepted (every controller holds every project's in
// memory, and reloads them all on each change).
TEST_F(ServicesTest, AdminServiceRejectsAProjectConfigOver64KiB) {
  queue::CatalogStore catalog(*pool_);
  queue::WorkerStore workers(*pool_);
  Signal config_wake, dispatch_wake;
  Served s(MakeAdminService({*guard_, *trust_, [](const std::string&) { return false; }, catalog, workers, config_wake, dispatch_wake, *audit_, *stats_}));
  auto stub = v1::AdminService::NewStub(s.channel());
  auto config_of = [](size_t bytes) {  // {"env":{"A":"xxx..."}}, `bytes` long
    return R"({"env":{"A":")" + std::string(bytes - 16, 'x') + R"("}})";
  };
  ASSERT_EQ(config_of(100).size(), 100u);

  v1::CreateProjectRequest create;
  create.set_name("big");
  create.set_config_json(config_of(3'400'000));
  v1::Project p;
  auto st = stub->CreateProject(Ctx().get(), create, &p);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "project configuration too large: 3400000 bytes, at most 65536");
  EXPECT_EQ(catalog.GetProject("big").status().code(), Code::kNotFound) << "no project was created";

  create.set_config_json(config_of(65536));
  st = stub->CreateProject(Ctx().get(), create, &p);
  ASSERT_TRUE(st.ok()) << "64 KiB is allowed: " << st.error_message();

  v1::SetProjectConfigRequest set;
  set.set_name("big");
  set.set_config_json(config_of(65537));
  uint64_t c0 = config_wake.generation();
  st = stub->SetProjectConfig(Ctx().get(), set, &p);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message(), "project configuration too large: 65537 bytes, at most 65536");
  EXPECT_EQ(config_wake.generation(), c0) << "nothing changed";
}

TEST_F(ServicesTest, WorkerServiceRegistersAStreamAndHandsItsReportsToTheApplier) {
  queue::WorkerStore workers(*pool_);
  queue::DispatchStore dispatch(*pool_);
  cache::CompileCacheStore compiles(url_, 1);
  auto blobs = cas::OpenDirStore(dir_.path() + "/cas", 600);
  ASSERT_TRUE(blobs.ok()) << blobs.status().message();
  Registry registry;
  ActionBroker actions;
  ReportQueue reports;
  Signal dispatch_wake;
  Served s(MakeWorkerService({*guard_, *enroller_, *scopes_, workers, dispatch, compiles, **blobs, registry, actions, reports, dispatch_wake, stopping_,
                              "ctl-test", 30s, 3s}));
  auto stub = v1::WorkerService::NewStub(s.channel());

  auto ctx = Ctx();
  auto stream = stub->Connect(ctx.get());
  v1::WorkerMessage reg;
  auto* r = reg.mutable_register_();
  r->set_worker_id("w1");
  r->set_hostname("h1");
  r->set_arch("x86_64");
  r->set_cluster("default");
  r->set_slots(2);
  ASSERT_TRUE(stream->Write(reg));
  v1::ControllerMessage hello;
  ASSERT_TRUE(stream->Read(&hello));
  ASSERT_TRUE(hello.has_registered());
  EXPECT_EQ(hello.registered().controller_id(), "ctl-test");
  EXPECT_EQ(hello.registered().heartbeat_interval_ms(), 3000);
  EXPECT_EQ(hello.registered().lease_ms(), 30000);
  ASSERT_TRUE(test::WaitFor([&] { return registry.Find("w1") != nullptr; }, 10s));
  auto listed = workers.List(false);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id, "w1");
  EXPECT_EQ((*listed)[0].state, "connected");

  v1::WorkerMessage up;
  up.mutable_update()->set_job_id(7);
  up.mutable_update()->set_attempt(1);
  up.mutable_update()->set_status(v1::RUNNING);
  ASSERT_TRUE(stream->Write(up));
  std::deque<Event> batch;
  Event drop;
  const std::atomic<bool> no{false};
  ASSERT_TRUE(test::WaitFor(
      [&] { return reports.Take(batch, drop, 10, 10ms, no) == ReportQueue::Took::kBatch; }, 10s));
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].update.job_id, 7);
  EXPECT_EQ(batch[0].update.worker_id, "w1") << "a report is the stream's worker's, whatever it claims";

  stream->WritesDone();
  v1::ControllerMessage rest;
  while (stream->Read(&rest)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
  batch.clear();
  ASSERT_TRUE(test::WaitFor(
      [&] { return reports.Take(batch, drop, 10, 10ms, no) == ReportQueue::Took::kDrop; }, 10s));
  EXPECT_EQ(drop.session->worker_id, "w1") << "the worker went away: its jobs are to be requeued";
  EXPECT_EQ(registry.Find("w1"), nullptr);
}

// Finding 1, on a worker's reports: a result is stored as JSON, which
// PostgreSQL refuses with a NUL, failing the applier's whole batch (other
// workers' reports with it). Such a report is ignored at the stream.
TEST_F(ServicesTest, WorkerServiceIgnoresAResultWithANulByte) {
  queue::WorkerStore workers(*pool_);
  queue::DispatchStore dispatch(*pool_);
  cache::CompileCacheStore compiles(url_, 1);
  auto blobs = cas::OpenDirStore(dir_.path() + "/cas", 600);
  ASSERT_TRUE(blobs.ok()) << blobs.status().message();
  Registry registry;
  ActionBroker actions;
  ReportQueue reports;
  Signal dispatch_wake;
  Served s(MakeWorkerService({*guard_, *enroller_, *scopes_, workers, dispatch, compiles, **blobs, registry, actions, reports, dispatch_wake, stopping_,
                              "ctl-test", 30s, 3s}));
  auto stub = v1::WorkerService::NewStub(s.channel());
  auto ctx = Ctx();
  auto stream = stub->Connect(ctx.get());
  v1::WorkerMessage reg;
  auto* r = reg.mutable_register_();
  r->set_worker_id("w1");
  r->set_arch("x86_64");
  r->set_cluster("default");
  r->set_slots(2);
  ASSERT_TRUE(stream->Write(reg));
  v1::ControllerMessage hello;
  ASSERT_TRUE(stream->Read(&hello));
  auto update = [](int64_t job, const std::string& error, const std::string& root_hash) {
    v1::WorkerMessage m;
    auto* u = m.mutable_update();
    u->set_job_id(job);
    u->set_attempt(1);
    u->set_status(v1::FAILED);
    u->mutable_result()->set_exit_code(1);
    u->mutable_result()->set_error(error);
    if (!root_hash.empty()) {
      u->mutable_result()->mutable_output_root()->set_hash(root_hash);
      u->mutable_result()->mutable_output_root()->set_size(12);
    }
    return m;
  };
  ASSERT_TRUE(stream->Write(update(7, std::string("bad\0", 4), "")));
  ASSERT_TRUE(stream->Write(update(8, "ok", std::string(63, 'a') + std::string("\0", 1))));
  ASSERT_TRUE(stream->Write(update(9, "exit 1\nsee the log", std::string(64, 'a'))));
  std::deque<Event> batch;
  Event drop;
  const std::atomic<bool> no{false};
  ASSERT_TRUE(test::WaitFor(
      [&] { return reports.Take(batch, drop, 10, 10ms, no) == ReportQueue::Took::kBatch; }, 10s));
  ASSERT_EQ(batch.size(), 1u);
  EXPECT_EQ(batch[0].update.job_id, 9) << "only the valid report reaches the applier";
  stream->WritesDone();
  v1::ControllerMessage rest;
  while (stream->Read(&rest)) {
  }
  stream->Finish();
}

TEST_F(ServicesTest, CacheServiceAnswersForAProjectsScope) {
  queue::CatalogStore catalog(*pool_);
  ProjectCache projects(catalog);
  cache::CompileCacheStore compiles(url_, 1);
  Served s(MakeCacheService({*guard_, compiles, projects}));
  auto stub = v1::CacheService::NewStub(s.channel());

  v1::CompileStatsRequest req;
  v1::CompileStatsResponse resp;
  auto st = stub->CompileStats(Ctx().get(), req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.project(), "default");
  EXPECT_EQ(resp.scope(), "project:default");
  EXPECT_EQ(resp.jobs(), 0);

  req.set_project("nosuch");
  EXPECT_EQ(stub->CompileStats(Ctx().get(), req, &resp).error_code(), grpc::NOT_FOUND);
}

TEST_F(ServicesTest, CasAndImageServicesNeedOnlyTheirStores) {
  auto store = cas::OpenDirStore(dir_.path() + "/cas", 600);
  ASSERT_TRUE(store.ok()) << store.status().message();
  cas::TreeStore trees(url_, 1, 600);
  cas::ImageStore image_rows(url_, 1);
  Served blobs(MakeCasService({*guard_, *scopes_, **store, trees, /*max_blob_bytes=*/4}));
  Served images(MakeImageService({*guard_, *scopes_, image_rows, **store}));

  v1::FindMissingRequest fm;
  auto* d = fm.add_blobs();
  d->set_hash(std::string(64, 'a'));
  d->set_size(3);
  v1::FindMissingResponse missing;
  ASSERT_TRUE(v1::CasService::NewStub(blobs.channel())->FindMissing(Ctx().get(), fm, &missing).ok());
  EXPECT_EQ(missing.blobs_size(), 1);

  // The cap it was given: four bytes pass, five are refused.
  v1::BatchUploadRequest up;
  for (std::string data : {"four", "five!"}) {
    auto* b = up.add_blobs();
    cas::Digest dg = cas::DigestOf(data);
    b->mutable_digest()->set_hash(dg.hash);
    b->mutable_digest()->set_size(dg.size);
    b->set_data(data);
  }
  v1::BatchUploadResponse stored;
  ASSERT_TRUE(v1::CasService::NewStub(blobs.channel())->BatchUpload(Ctx().get(), up, &stored).ok());
  ASSERT_EQ(stored.statuses_size(), 2);
  EXPECT_EQ(stored.statuses(0).code(), 0) << stored.statuses(0).message();
  EXPECT_EQ(stored.statuses(1).code(), grpc::INVALID_ARGUMENT) << stored.statuses(1).message();
  EXPECT_NE(stored.statuses(1).message().find("larger than the limit of 4 bytes"), std::string::npos)
      << stored.statuses(1).message();

  v1::ListImagesResponse list;
  ASSERT_TRUE(v1::ImageService::NewStub(images.channel())->ListImages(Ctx().get(), v1::Empty(), &list).ok());
  EXPECT_EQ(list.images_size(), 0);
}

// Finding 2 of the security probe: the input root of a submit (and the
// root of GetTree) was looked up by hash alone, so a root whose stated size
// was wrong was accepted; so was a directory entry with a wrong size.
TEST_F(ServicesTest, JobServiceRejectsAnInputRootWithTheWrongSize) {
  auto blobs = cas::OpenDirStore(dir_.path() + "/cas", 600);
  ASSERT_TRUE(blobs.ok()) << blobs.status().message();
  cas::TreeStore trees(url_, 1, 600);
  cas::ImageStore images(url_, 1);
  queue::JobStore jobs(*pool_);
  queue::CatalogStore catalog(*pool_);
  ProjectCache projects(catalog);
  cache::CompileCacheStore compiles(url_, 1);
  Signal dispatch_wake, remote_wake, job_events;
  Served s(MakeJobService({*guard_, *scopes_, jobs, projects, trees, **blobs, images, 1000, compiles, nullptr, dispatch_wake, remote_wake,
                           job_events, stopping_}));
  Served cas(MakeCasService({*guard_, *scopes_, **blobs, trees, 1 << 20}));
  auto stub = v1::JobService::NewStub(s.channel());

  const cas::Directory empty;
  const cas::Digest sub = cas::DigestOf(empty);
  const cas::Directory top{{cas::Entry{"sub", cas::Kind::kDir, sub, false, ""}}};
  const cas::Digest root = cas::DigestOf(top);
  const cas::Directory lying{{cas::Entry{"sub", cas::Kind::kDir, cas::Digest{sub.hash, 99}, false, ""}}};
  const cas::Digest lying_root = cas::DigestOf(lying);
  ASSERT_TRUE(trees.Insert({{sub, empty}, {root, top}, {lying_root, lying}}).ok());

  v1::SubmitRequest req;
  req.mutable_spec()->add_argv("true");
  *req.mutable_spec()->mutable_input_root() = api::ToProto(cas::Digest{root.hash, root.size + 7});
  v1::SubmitResponse resp;
  auto st = stub->Submit(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << "queued job " << resp.job().id();
  EXPECT_NE(st.error_message().find("input tree: tree root sha256:" + root.hash + " is given with size " +
                                    std::to_string(root.size + 7) + ", but that directory node is " +
                                    std::to_string(root.size) + " bytes"),
            std::string::npos)
      << st.error_message();

  *req.mutable_spec()->mutable_input_root() = api::ToProto(lying_root);
  st = stub->Submit(Ctx().get(), req, &resp);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << "queued job " << resp.job().id();
  EXPECT_NE(st.error_message().find("names node sha256:" + sub.hash + " with size 99, but that node is 12 bytes"),
            std::string::npos)
      << st.error_message();
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM build_jobs"), "0");

  *req.mutable_spec()->mutable_input_root() = api::ToProto(root);
  st = stub->Submit(Ctx().get(), req, &resp);
  EXPECT_TRUE(st.ok()) << "the true size is accepted: " << st.error_message();

  // GetTree takes a root from a client too.
  auto cas_stub = v1::CasService::NewStub(cas.channel());
  v1::GetTreeRequest get;
  *get.mutable_root() = api::ToProto(cas::Digest{root.hash, root.size - 1});
  v1::GetTreeResponse nodes;
  st = cas_stub->GetTree(Ctx().get(), get, &nodes);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << "answered " << nodes.nodes_size() << " nodes";
  EXPECT_NE(st.error_message().find("sha256:" + root.hash), std::string::npos) << st.error_message();
  *get.mutable_root() = api::ToProto(root);
  ASSERT_TRUE(cas_stub->GetTree(Ctx().get(), get, &nodes).ok());
  EXPECT_EQ(nodes.nodes_size(), 2);
}

// Finding 3 of the security probe: UploadTrees sorted the entries it was
// sent, so a node out of the canonical order (docs/api.md: sorted bytewise by
// name, each name once) was stored under the digest of its sorted form.
TEST_F(ServicesTest, CasServiceUploadTreesRejectsEntriesOutOfOrder) {
  auto store = cas::OpenDirStore(dir_.path() + "/cas", 600);
  ASSERT_TRUE(store.ok()) << store.status().message();
  cas::TreeStore trees(url_, 1, 600);
  Served served(MakeCasService({*guard_, *scopes_, **store, trees, 1 << 20}));
  auto stub = v1::CasService::NewStub(served.channel());
  cas::Directory dir;
  for (const char* name : {"b.c", "a.c"})
    dir.entries.push_back({name, cas::Kind::kFile, cas::DigestOf(std::string_view(name)), false, ""});
  cas::Directory sorted = dir;
  ASSERT_TRUE(cas::Normalize(&sorted, "").ok());
  const cas::Digest claimed = cas::DigestOf(sorted);  // what a sorting server would compute

  v1::UploadTreesRequest up;
  auto* n = up.add_nodes();
  *n->mutable_digest() = api::ToProto(claimed);
  api::ToProto(dir, n->mutable_directory());  // b.c before a.c, as sent
  v1::UploadTreesResponse resp;
  auto st = stub->UploadTrees(Ctx().get(), up, &resp);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << "stored " << resp.stored() << " nodes";
  EXPECT_NE(st.error_message().find(claimed.ToString()), std::string::npos) << st.error_message();
  EXPECT_NE(st.error_message().find("entry 'a.c' is out of order"), std::string::npos) << st.error_message();
  auto missing = trees.FindMissing({claimed});
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->size(), 1u) << "nothing was stored";

  // The same node in the canonical order is stored.
  n->clear_directory();
  api::ToProto(sorted, n->mutable_directory());
  st = stub->UploadTrees(Ctx().get(), up, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.stored(), 1);
}

// Finding 1 for images: a label and a reference are quoted, never cut.
TEST_F(ServicesTest, ImageServiceRejectsControlCharactersInImageNames) {
  auto store = cas::OpenDirStore(dir_.path() + "/cas", 600);
  ASSERT_TRUE(store.ok()) << store.status().message();
  cas::ImageStore image_rows(url_, 1);
  Served images(MakeImageService({*guard_, *scopes_, image_rows, **store}));
  auto stub = v1::ImageService::NewStub(images.channel());
  v1::RegisterImageRequest reg;
  reg.mutable_manifest()->set_hash(std::string(64, 'a'));
  reg.mutable_manifest()->set_size(100);
  reg.set_name(std::string("toolchain\0\nforged", 17));
  v1::Image img;
  auto st = stub->RegisterImage(Ctx().get(), reg, &img);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("image name \"toolchain\\x00\\x0aforged\" contains a NUL byte"),
            std::string::npos)
      << st.error_message();
  v1::GetImageRequest get;
  get.set_digest(std::string("sha256:") + std::string(64, 'a') + std::string("\0", 1));
  st = stub->GetImage(Ctx().get(), get, &img);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("\\x00"), std::string::npos) << st.error_message();
}

}  // namespace
}  // namespace kiln::controller

namespace kiln::controller {
namespace {

std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + 20s);
  if (!token.empty()) c->AddMetadata("authorization", "Bearer " + token);
  return c;
}

TEST_F(ServicesTest, JobServiceAuthorisesEveryCallByTokenAndProject) {
  auto blobs = cas::OpenDirStore(dir_.path() + "/cas", 600);
  ASSERT_TRUE(blobs.ok()) << blobs.status().message();
  cas::TreeStore trees(url_, 1, 600);
  cas::ImageStore images(url_, 1);
  queue::JobStore jobs(*pool_);
  queue::CatalogStore catalog(*pool_);
  ASSERT_TRUE(catalog.CreateProject("other", "{}", kWho).ok());
  ProjectCache projects(catalog);
  ASSERT_TRUE(projects.Refresh(true).ok());
  cache::CompileCacheStore compiles(url_, 1);
  Signal dispatch_wake, remote_wake, job_events;
  Served s(MakeJobService({*guard_, *scopes_, jobs, projects, trees, **blobs, images, 1000, compiles, nullptr, dispatch_wake, remote_wake,
                           job_events, stopping_}));
  auto stub = v1::JobService::NewStub(s.channel());
  auto reader = trust_->CreateToken({auth::Role::kRead, {"other"}, "", "test", 0}, kWho);
  auto submitter = trust_->CreateToken({auth::Role::kSubmit, {"other"}, "", "test", 0}, kWho);
  ASSERT_TRUE(reader.ok() && submitter.ok());

  v1::SubmitRequest req;
  req.mutable_spec()->add_argv("true");
  v1::SubmitResponse mine, theirs;
  // No token at all: refused before anything is looked at.
  auto st = stub->Submit(As("").get(), req, &theirs);
  EXPECT_EQ(st.error_code(), grpc::UNAUTHENTICATED) << st.error_message();
  EXPECT_NE(st.error_message().find("KILN_TOKEN"), std::string::npos) << st.error_message();
  ASSERT_TRUE(stub->Submit(As(g_token).get(), req, &theirs).ok()) << "an admin submits to default";
  // A read token may not submit, even to its own project; a submit token may, only there.
  req.set_project("other");
  st = stub->Submit(As(*reader).get(), req, &mine);
  EXPECT_EQ(st.error_code(), grpc::PERMISSION_DENIED) << st.error_message();
  EXPECT_NE(st.error_message().find("needs a submit (or stronger) token for project other"), std::string::npos)
      << st.error_message();
  ASSERT_TRUE(stub->Submit(As(*submitter).get(), req, &mine).ok());
  req.set_project("default");
  EXPECT_EQ(stub->Submit(As(*submitter).get(), req, &theirs).error_code(), grpc::PERMISSION_DENIED);

  // Reading: its own project's job, not another's; the list holds only its own.
  v1::GetJobRequest get;
  v1::Job job;
  get.set_job_id(mine.job().id());
  EXPECT_TRUE(stub->GetJob(As(*reader).get(), get, &job).ok());
  get.set_job_id(theirs.job().id());
  st = stub->GetJob(As(*reader).get(), get, &job);
  EXPECT_EQ(st.error_code(), grpc::PERMISSION_DENIED) << st.error_message();
  v1::WatchJobRequest watch;
  watch.set_job_id(theirs.job().id());
  auto watch_ctx = As(*reader);  // a stream's context outlives the stream
  auto w = stub->WatchJob(watch_ctx.get(), watch);
  v1::JobEvent ev;
  EXPECT_FALSE(w->Read(&ev)) << "no state or log of another project's job";
  EXPECT_EQ(w->Finish().error_code(), grpc::PERMISSION_DENIED);
  v1::ExplainJobRequest why;
  why.set_job_id(theirs.job().id());
  v1::Explanation ex;
  EXPECT_EQ(stub->ExplainJob(As(*reader).get(), why, &ex).error_code(), grpc::PERMISSION_DENIED);
  v1::ListJobsRequest list;
  v1::ListJobsResponse listed;
  ASSERT_TRUE(stub->ListJobs(As(*reader).get(), list, &listed).ok());
  ASSERT_EQ(listed.jobs_size(), 1);
  EXPECT_EQ(listed.jobs(0).id(), mine.job().id());
  list.set_project("default");
  EXPECT_EQ(stub->ListJobs(As(*reader).get(), list, &listed).error_code(), grpc::PERMISSION_DENIED);
  // Cancelling needs submit, in the job's project.
  v1::CancelJobRequest cancel;
  cancel.set_job_id(mine.job().id());
  EXPECT_EQ(stub->CancelJob(As(*reader).get(), cancel, &job).error_code(), grpc::PERMISSION_DENIED);
  cancel.set_job_id(theirs.job().id());
  EXPECT_EQ(stub->CancelJob(As(*submitter).get(), cancel, &job).error_code(), grpc::PERMISSION_DENIED);
  EXPECT_EQ(test::Sql(url_, "SELECT status FROM build_jobs WHERE id = " + std::to_string(theirs.job().id())), "queued")
      << "a refused cancel changes nothing";

  // A wrong secret, a revoked and an expired token are refused.
  std::string forged = reader->substr(0, reader->size() - 4) + "0000";
  if (forged == *reader) forged = reader->substr(0, reader->size() - 4) + "1111";
  get.set_job_id(mine.job().id());
  st = stub->GetJob(As(forged).get(), get, &job);
  EXPECT_EQ(st.error_code(), grpc::UNAUTHENTICATED) << st.error_message();
  auto id = auth::ParseToken(auth::TokenKind::kApi, *reader);
  ASSERT_TRUE(trust_->RevokeToken(id->id, kWho).ok());
  guard_->Forget("token " + id->id);  // what NOTIFY kiln_revoke does on every controller
  st = stub->GetJob(As(*reader).get(), get, &job);
  EXPECT_EQ(st.error_code(), grpc::UNAUTHENTICATED) << st.error_message();
  EXPECT_NE(st.error_message().find("revoked"), std::string::npos) << st.error_message();
  auto brief = trust_->CreateToken({auth::Role::kRead, {"other"}, "", "test", /*ttl_ms=*/300}, kWho);
  ASSERT_TRUE(brief.ok());
  EXPECT_TRUE(test::WaitFor(
      [&] { return stub->GetJob(As(*brief).get(), get, &job).error_code() == grpc::UNAUTHENTICATED; }, 10s))
      << "a token past its expiry is refused";
  st = stub->GetJob(As(*brief).get(), get, &job);
  EXPECT_NE(st.error_message().find("expired"), std::string::npos) << st.error_message();
}

TEST_F(ServicesTest, AdminCallsNeedAnAdminTokenAndTokensAreShownOnce) {
  queue::CatalogStore catalog(*pool_);
  queue::WorkerStore workers(*pool_);
  Signal config_wake, dispatch_wake;
  Served s(MakeAdminService({*guard_, *trust_, [](const std::string&) { return false; }, catalog, workers,
                             config_wake, dispatch_wake, *audit_, *stats_}));
  auto stub = v1::AdminService::NewStub(s.channel());
  v1::CreateProjectRequest create;
  create.set_name("web");
  v1::Project p;
  ASSERT_TRUE(stub->CreateProject(As(g_token).get(), create, &p).ok());

  v1::CreateTokenRequest req;
  req.set_role("submit");
  req.add_projects("web");
  v1::CreateTokenResponse made;
  ASSERT_TRUE(stub->CreateToken(As(g_token).get(), req, &made).ok());
  EXPECT_EQ(made.secret().rfind("kiln_" + made.token().id() + "_", 0), 0u) << made.secret();
  EXPECT_EQ(made.token().created_by().rfind("token ", 0), 0u) << "the creator is recorded";
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM api_tokens WHERE position('" + made.secret().substr(18) +
                                "' IN encode(secret_sha256, 'hex')) > 0"),
            "0")
      << "the secret is not stored";
  v1::ListTokensResponse listed;
  ASSERT_TRUE(stub->ListTokens(As(g_token).get(), v1::Empty(), &listed).ok());
  EXPECT_EQ(listed.tokens_size(), 2);
  for (const auto& t : listed.tokens()) EXPECT_EQ(t.DebugString().find(made.secret()), std::string::npos);

  // A submit token manages nothing: projects, clusters, tokens and workers are an admin's.
  const std::string submit = made.secret();
  v1::Project q;
  create.set_name("mine");
  EXPECT_EQ(stub->CreateProject(As(submit).get(), create, &q).error_code(), grpc::PERMISSION_DENIED);
  v1::SetProjectConfigRequest set;
  set.set_name("web");
  set.set_config_json("{}");
  EXPECT_EQ(stub->SetProjectConfig(As(submit).get(), set, &q).error_code(), grpc::PERMISSION_DENIED);
  v1::CreateTokenResponse escalated;
  req.set_role("admin");
  req.clear_projects();
  auto st = stub->CreateToken(As(submit).get(), req, &escalated);
  EXPECT_EQ(st.error_code(), grpc::PERMISSION_DENIED) << st.error_message();
  EXPECT_NE(st.error_message().find("needs an admin token"), std::string::npos) << st.error_message();
  v1::CreateJoinTokenResponse join;
  EXPECT_EQ(stub->CreateJoinToken(As(submit).get(), v1::CreateJoinTokenRequest(), &join).error_code(),
            grpc::PERMISSION_DENIED);
  // It sees its own project only.
  v1::ListProjectsResponse projects;
  ASSERT_TRUE(stub->ListProjects(As(submit).get(), v1::Empty(), &projects).ok());
  ASSERT_EQ(projects.projects_size(), 1);
  EXPECT_EQ(projects.projects(0).name(), "web");
  v1::GetProjectRequest get;
  get.set_name("default");
  EXPECT_EQ(stub->GetProject(As(submit).get(), get, &q).error_code(), grpc::PERMISSION_DENIED);
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM projects"), "2") << "refused calls changed nothing";

  v1::RevokeTokenRequest revoke;
  revoke.set_id(made.token().id());
  v1::ApiToken revoked;
  ASSERT_TRUE(stub->RevokeToken(As(g_token).get(), revoke, &revoked).ok());
  EXPECT_GT(revoked.revoked_at_ms(), 0);
  EXPECT_EQ(stub->ListProjects(As(submit).get(), v1::Empty(), &projects).error_code(), grpc::UNAUTHENTICATED)
      << "revoked at once on this controller";
}

// "Results are only as trusted as their producer": a project's configuration
// naming a cache_scope shared it with every project naming the same. Now a
// shared scope exists only when an admin creates it listing its projects,
// and only those are served from it.
TEST_F(ServicesTest, ACacheScopeIsSharedOnlyByTheProjectsAnAdminListed) {
  queue::CatalogStore catalog(*pool_);
  queue::WorkerStore workers(*pool_);
  queue::JobStore jobs(*pool_);
  ProjectCache projects(catalog);
  cache::CompileCacheStore compiles(url_, 1);
  Signal config_wake, dispatch_wake;
  Served admin(MakeAdminService({*guard_, *trust_, [](const std::string&) { return false; }, catalog, workers,
                                 config_wake, dispatch_wake, *audit_, *stats_}));
  Served cache(MakeCacheService({*guard_, compiles, projects}));
  auto stub = v1::AdminService::NewStub(admin.channel());
  auto cache_stub = v1::CacheService::NewStub(cache.channel());
  for (const char* name : {"web", "api"}) {
    v1::CreateProjectRequest create;
    create.set_name(name);
    v1::Project p;
    ASSERT_TRUE(stub->CreateProject(As(g_token).get(), create, &p).ok());
  }
  ASSERT_TRUE(projects.Refresh(true).ok());
  auto scope_of = [&](const std::string& project) {
    v1::CompileStatsRequest req;
    req.set_project(project);
    v1::CompileStatsResponse resp;
    auto st = cache_stub->CompileStats(As(g_token).get(), req, &resp);
    return st.ok() ? resp.scope() : "error: " + st.error_message();
  };
  auto configure = [&](const std::string& project, const std::string& json) {
    v1::SetProjectConfigRequest set;
    set.set_name(project);
    set.set_config_json(json);
    v1::Project p;
    return stub->SetProjectConfig(As(g_token).get(), set, &p);
  };
  auto set_scope = [&](const std::string& token, std::vector<std::string> members, v1::CacheScope* out) {
    v1::SetCacheScopeRequest req;
    req.set_name("team");
    for (const auto& m : members) req.add_projects(m);
    return stub->SetCacheScope(As(token).get(), req, out);
  };
  const std::string kTeam = R"({"cache_scope": "team"})";

  // Naming a scope nobody created is refused, saying how to create it; at
  // creation too (no scope can list a project that does not exist yet).
  auto st = configure("web", kTeam);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("cache scope team does not exist: an admin creates it with kiln cache scopes set "
                                    "team --project web --project OTHER"),
            std::string::npos)
      << st.error_message();
  v1::CreateProjectRequest create;
  create.set_name("newcomer");
  create.set_config_json(kTeam);
  v1::Project p;
  st = stub->CreateProject(As(g_token).get(), create, &p);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("create the project without cache_scope"), std::string::npos)
      << st.error_message();
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM projects WHERE name = 'newcomer'"), "0");

  // Only an admin manages scopes.
  auto submitter = trust_->CreateToken({auth::Role::kSubmit, {"web"}, "", "test", 0}, kWho);
  ASSERT_TRUE(submitter.ok());
  v1::CacheScope scope;
  st = set_scope(*submitter, {"web", "api"}, &scope);
  EXPECT_EQ(st.error_code(), grpc::PERMISSION_DENIED) << st.error_message();
  EXPECT_NE(st.error_message().find("needs an admin token"), std::string::npos) << st.error_message();
  v1::ListCacheScopesResponse listed;
  EXPECT_EQ(stub->ListCacheScopes(As(*submitter).get(), v1::Empty(), &listed).error_code(), grpc::PERMISSION_DENIED);
  v1::RemoveCacheScopeRequest rm;
  rm.set_name("team");
  EXPECT_EQ(stub->RemoveCacheScope(As(*submitter).get(), rm, &scope).error_code(), grpc::PERMISSION_DENIED);
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM cache_scopes"), "0") << "refused calls changed nothing";

  // A scope needs projects, and projects that exist.
  EXPECT_EQ(set_scope(g_token, {}, &scope).error_code(), grpc::INVALID_ARGUMENT);
  st = set_scope(g_token, {"web", "nosuch"}, &scope);
  EXPECT_EQ(st.error_code(), grpc::NOT_FOUND) << st.error_message();
  EXPECT_NE(st.error_message().find("project \"nosuch\" does not exist"), std::string::npos) << st.error_message();

  // A scope of web alone: api may not name it.
  ASSERT_TRUE(set_scope(g_token, {"web"}, &scope).ok());
  EXPECT_EQ(scope.created_by().rfind("token ", 0), 0u) << "the creator is recorded: " << scope.created_by();
  ASSERT_TRUE(configure("web", kTeam).ok());
  st = configure("api", kTeam);
  EXPECT_EQ(st.error_code(), grpc::INVALID_ARGUMENT) << st.error_message();
  EXPECT_NE(st.error_message().find("cache scope team does not list project api: only the projects it lists share "
                                    "its entries; an admin adds it with kiln cache scopes set team --project web "
                                    "--project api"),
            std::string::npos)
      << st.error_message();

  // Listing both, both may name it, and both jobs use it.
  uint64_t c0 = config_wake.generation();
  ASSERT_TRUE(set_scope(g_token, {"web", "api", "web"}, &scope).ok());
  EXPECT_GT(config_wake.generation(), c0) << "the project cache reloads";
  EXPECT_EQ(std::vector<std::string>(scope.projects().begin(), scope.projects().end()),
            (std::vector<std::string>{"api", "web"}));
  ASSERT_TRUE(configure("api", kTeam).ok());
  ASSERT_TRUE(projects.Refresh(/*force=*/false).ok()) << "the poll sees the change";
  EXPECT_EQ(scope_of("web"), "shared:team");
  EXPECT_EQ(scope_of("api"), "shared:team");
  ASSERT_TRUE(stub->ListCacheScopes(As(g_token).get(), v1::Empty(), &listed).ok());
  ASSERT_EQ(listed.scopes_size(), 1);
  EXPECT_EQ(listed.scopes(0).name(), "team");
  EXPECT_EQ(listed.scopes(0).projects_size(), 2);

  // A job of api in flight in the scope...
  queue::NewJob job;
  job.project = "api";
  job.spec.argv = {"true"};
  job.spec.image = "sha256:" + std::string(64, 'a');
  job.action_digest = std::string(64, 'b');
  job.cache_scope = "shared:team";
  auto queued = jobs.Submit(job, kWho);
  ASSERT_TRUE(queued.ok()) << queued.status().message();
  const std::string queued_scope =
      "SELECT cache_scope FROM build_jobs WHERE id = " + std::to_string(queued->job.id);

  // Removed from the scope, api uses its own again (its configuration still
  // names the scope), from the next job on: the poll sees the change of
  // members, without a change of any project row. Its job in flight leaves
  // the scope too.
  ASSERT_TRUE(set_scope(g_token, {"web"}, &scope).ok());
  EXPECT_EQ(test::Sql(url_, queued_scope), "project:api") << "its job in flight is not served from the scope either";
  ASSERT_TRUE(projects.Refresh(/*force=*/false).ok());
  EXPECT_EQ(scope_of("api"), "project:api");
  EXPECT_EQ(scope_of("web"), "shared:team");
  v1::GetProjectRequest get;
  get.set_name("api");
  ASSERT_TRUE(stub->GetProject(As(g_token).get(), get, &p).ok());
  EXPECT_EQ(p.cache_scope(), "project:api");
  EXPECT_NE(p.config_json().find("team"), std::string::npos) << p.config_json();

  // Removing the scope: web's jobs use web's own.
  rm.set_name("team");
  ASSERT_TRUE(stub->RemoveCacheScope(As(g_token).get(), rm, &scope).ok());
  ASSERT_TRUE(projects.Refresh(/*force=*/false).ok());
  EXPECT_EQ(scope_of("web"), "project:web");
  EXPECT_EQ(stub->RemoveCacheScope(As(g_token).get(), rm, &scope).error_code(), grpc::NOT_FOUND);
  ASSERT_TRUE(stub->ListCacheScopes(As(g_token).get(), v1::Empty(), &listed).ok());
  EXPECT_EQ(listed.scopes_size(), 0);
}

}  // namespace
}  // namespace kiln::controller

namespace kiln::controller {
namespace {

// A worker of cluster default with one slot, to register.
queue::WorkerRegistration Worker(const std::string& id) {
  queue::WorkerRegistration r;
  r.id = id;
  r.hostname = "h";
  r.cluster = "default";
  r.arch = "x86_64";
  r.os = "linux";
  r.slots = 1;
  r.session = "s";
  return r;
}

// A worker's report names an output tree: only a job it runs at that
// attempt gets it, and only with what the worker itself uploaded or the job
// already had (no laundering another scope's digests into a project).
TEST_F(ServicesTest, OutputsJoinAJobsScopeOnlyFromTheWorkerThatRunsIt) {
  queue::WorkerStore workers(*pool_);
  queue::JobStore jobs(*pool_);
  ASSERT_TRUE(fx_catalog_->CreateProject("b", "{}", kWho).ok());
  for (const char* w : {"w1", "w2"}) ASSERT_TRUE(workers.Register(Worker(w), 30s).ok());
  queue::NewJob nj;
  nj.project = "b";
  nj.spec.argv = {"true"};
  auto job = jobs.Submit(nj, kWho);
  ASSERT_TRUE(job.ok()) << job.status().message();
  const std::string id = std::to_string(job->job.id);
  test::Sql(url_, "UPDATE build_jobs SET status = 'running', worker_id = 'w1', attempt = 1 WHERE id = " + id);

  // A tree whose file is project default's secret, and one of w1's own.
  const std::string secret = std::string(64, 'a'), own = std::string(64, 'b');
  ASSERT_TRUE(scope_store_->Add({"project:default"}, {secret}).ok());
  ASSERT_TRUE(scope_store_->Add({"worker:w1"}, {own}).ok());
  cas::Directory dir;
  dir.entries.push_back({"mine", cas::Kind::kFile, cas::Digest{own, 3}, false, ""});
  dir.entries.push_back({"stolen", cas::Kind::kFile, cas::Digest{secret, 3}, false, ""});
  const cas::Digest root = cas::DigestOf(dir);
  ASSERT_TRUE(fx_trees_->Insert({{root, dir}}).ok());
  ASSERT_TRUE(scope_store_->Add({"worker:w1", "worker:w2"}, {root.hash}).ok());

  Caller w1, w2;
  w1.kind = w2.kind = Caller::Kind::kWorker;
  w1.worker_id = "w1";
  w2.worker_id = "w2";
  EXPECT_EQ(scopes_->RecordOutputs(w2, job->job.id, 1, root.Key()).code(), Code::kFailedPrecondition)
      << "w2 does not run the job";
  EXPECT_EQ(scopes_->RecordOutputs(w1, job->job.id, 2, root.Key()).code(), Code::kFailedPrecondition)
      << "not at that attempt";
  auto none = scope_store_->Members({"project:b"}, {root.hash, own, secret});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  ASSERT_TRUE(scopes_->RecordOutputs(w1, job->job.id, 1, root.Key()).ok());
  auto in_b = scope_store_->Members({"project:b"}, {root.hash, own, secret});
  ASSERT_TRUE(in_b.ok());
  EXPECT_EQ(*in_b, (std::unordered_set<std::string>{root.hash, own}))
      << "the worker's own upload joins project b; project default's digest does not";
}

// Memberships a controller remembers answer as PostgreSQL does: per scope,
// and gone with the content (a second controller, which remembers nothing,
// is the reference).
TEST_F(ServicesTest, RememberedMembershipsAnswerLikeTheDatabase) {
  cas::ScopeStore other(*pool_);
  const std::string a = std::string(64, 'a'), b = std::string(64, 'b'), c = std::string(64, 'c');
  ASSERT_TRUE(scope_store_->Add({"project:x"}, {a, b}).ok());
  ASSERT_TRUE(other.Add({"project:y"}, {c}).ok());
  for (int round = 0; round < 2; ++round) {  // the second round is answered from memory
    for (auto* store : {scope_store_.get(), &other}) {
      auto x = store->Members({"project:x"}, {a, b, c});
      ASSERT_TRUE(x.ok()) << x.status().message();
      EXPECT_EQ(*x, (std::unordered_set<std::string>{a, b})) << "round " << round;
      auto y = store->Members({"project:y"}, {a, b, c});
      ASSERT_TRUE(y.ok());
      EXPECT_EQ(*y, (std::unordered_set<std::string>{c})) << "round " << round;
      auto both = store->Members({"project:y", "project:x"}, {a, c});
      ASSERT_TRUE(both.ok());
      EXPECT_EQ(both->size(), 2u) << "round " << round;
      // NotMembers is the other half of the same answer.
      auto not_x = store->NotMembers({"project:x"}, {a, b, c});
      ASSERT_TRUE(not_x.ok()) << not_x.status().message();
      EXPECT_EQ(*not_x, (std::unordered_set<std::string>{c})) << "round " << round;
    }
  }
  // A tree found wholly in a scope is remembered for that scope only, and
  // forgotten with any removal.
  const std::string root = std::string(64, 'd') + "/10";
  EXPECT_FALSE(scope_store_->TreeKnown({"project:x"}, root));
  scope_store_->RememberTree({"project:x"}, root);
  EXPECT_TRUE(scope_store_->TreeKnown({"project:x"}, root));
  EXPECT_FALSE(scope_store_->TreeKnown({"project:y"}, root));
  EXPECT_FALSE(other.TreeKnown({"project:x"}, root)) << "another controller has not looked";
  // Adding what is remembered in one scope to another still adds it there.
  ASSERT_TRUE(scope_store_->Add({"project:y"}, {a}).ok());
  auto y = other.Members({"project:y"}, {a});
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(y->size(), 1u);
  // Removed content is forgotten by the controller that removed it.
  ASSERT_TRUE(scope_store_->Forget({a}).ok());
  EXPECT_FALSE(scope_store_->TreeKnown({"project:x"}, root));
  auto not_x = scope_store_->NotMembers({"project:x"}, {a, b});
  ASSERT_TRUE(not_x.ok());
  EXPECT_EQ(*not_x, (std::unordered_set<std::string>{a}));
  auto x = scope_store_->Members({"project:x"}, {a, b});
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(*x, (std::unordered_set<std::string>{b}));
  auto fresh = cas::ScopeStore(*pool_).Members({"project:x", "project:y"}, {a, b});
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(*fresh, (std::unordered_set<std::string>{b}));
}

// A worker sees what it was assigned: the input trees of the jobs it holds,
// the compile objects of their scopes, its own uploads and the images; not
// the rest of those jobs' projects, and nothing of a job once it has ended.
TEST_F(ServicesTest, AWorkerSeesOnlyWhatItWasAssigned) {
  queue::WorkerStore workers(*pool_);
  queue::JobStore jobs(*pool_);
  ASSERT_TRUE(workers.Register(Worker("w1"), 30s).ok());
  const std::string input = std::string(64, '1'), other = std::string(64, '2'), object = std::string(64, '3'),
                    foreign_object = std::string(64, '4'), own = std::string(64, '5'), image = std::string(64, '6');
  cas::Directory dir;
  dir.entries.push_back({"in.c", cas::Kind::kFile, cas::Digest{input, 3}, false, ""});
  const cas::Digest root = cas::DigestOf(dir);
  ASSERT_TRUE(fx_trees_->Insert({{root, dir}}).ok());
  ASSERT_TRUE(scope_store_->Add({"project:default"}, {input, other, root.hash}).ok());
  ASSERT_TRUE(scope_store_->Add({"worker:w1"}, {own}).ok());
  ASSERT_TRUE(scope_store_->Add({"images"}, {image}).ok());
  for (auto [scope, obj] : {std::pair{"project:default", object}, std::pair{"project:other", foreign_object}})
    test::Sql(url_, std::string("INSERT INTO compile_results (scope, key, object_hash, object_size) VALUES ('") + scope +
                        "', '" + std::string(64, 'f') + "', '" + obj + "', 3)");
  queue::NewJob nj;
  nj.project = "default";
  nj.spec.argv = {"true"};
  nj.spec.input_root = root.Key();
  auto job = jobs.Submit(nj, kWho);
  ASSERT_TRUE(job.ok()) << job.status().message();
  const std::string id = std::to_string(job->job.id);

  Caller w1;
  w1.kind = Caller::Kind::kWorker;
  w1.worker_id = "w1";
  const std::vector<std::string> all{root.hash, input, other, object, foreign_object, own, image};
  auto idle = scopes_->Seen(w1, all);
  ASSERT_TRUE(idle.ok()) << idle.status().message();
  EXPECT_EQ(*idle, (std::unordered_set<std::string>{own, image})) << "no job: its uploads and the images";

  test::Sql(url_, "UPDATE build_jobs SET status = 'running', worker_id = 'w1', attempt = 1 WHERE id = " + id);
  auto running = scopes_->Seen(w1, all);
  ASSERT_TRUE(running.ok()) << running.status().message();
  EXPECT_EQ(*running, (std::unordered_set<std::string>{root.hash, input, object, own, image}))
      << "its job's tree and its scope's compile objects; not the project's other content or another scope's object";

  test::Sql(url_, "UPDATE build_jobs SET status = 'succeeded', finished_at = now() WHERE id = " + id);
  auto ended = scopes_->Seen(w1, all);
  ASSERT_TRUE(ended.ok()) << ended.status().message();
  EXPECT_EQ(*ended, (std::unordered_set<std::string>{own, image})) << "nothing of a job that has ended";
}

}  // namespace
}  // namespace kiln::controller
