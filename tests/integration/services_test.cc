// Each controller service built from only the parts it declares (stores on a
// throwaway PostgreSQL, signals, the registry), served in-process over real
// gRPC, and checked through what its clients see.

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>

#include "auth/trust_store.h"
#include "cache/compile_store.h"
#include "config/config.h"
#include "controller/admin_service.h"
#include "cas/image_store.h"
#include "cas/store.h"
#include "cas/tree_store.h"
#include "controller/cas.h"
#include "controller/compile_service.h"
#include "controller/enroll.h"
#include "controller/guard.h"
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
    guard_ = std::make_unique<Guard>(*trust_, /*tls=*/false);
    enroller_ = Enroller::Disabled(*trust_, "no CA in these tests");
    auto token = trust_->CreateToken({auth::Role::kAdmin, {}, "services test", "test", 0});
    ASSERT_TRUE(token.ok()) << token.status().message();
    g_token = *token;
  }

  test::TempDir dir_;
  std::string url_;
  std::shared_ptr<db::Pool> pool_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<auth::TrustStore> trust_;
  std::unique_ptr<Guard> guard_;
  std::unique_ptr<Enroller> enroller_;
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
  Served s(MakeJobService({*guard_, jobs, projects, trees, **blobs, images, 1000, compiles, dispatch_wake, remote_wake,
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
  Served s(MakeAdminService({*guard_, *trust_, [](const std::string&) { return false; }, catalog, workers, config_wake, dispatch_wake}));
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

TEST_F(ServicesTest, WorkerServiceRegistersAStreamAndHandsItsReportsToTheApplier) {
  queue::WorkerStore workers(*pool_);
  queue::DispatchStore dispatch(*pool_);
  cache::CompileCacheStore compiles(url_, 1);
  auto blobs = cas::OpenDirStore(dir_.path() + "/cas", 600);
  ASSERT_TRUE(blobs.ok()) << blobs.status().message();
  Registry registry;
  ReportQueue reports;
  Signal dispatch_wake;
  Served s(MakeWorkerService({*guard_, *enroller_, workers, dispatch, compiles, **blobs, registry, reports, dispatch_wake, stopping_,
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
  Served blobs(MakeCasService({*guard_, **store, trees, /*max_blob_bytes=*/4}));
  Served images(MakeImageService({*guard_, image_rows, **store}));

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
  ASSERT_TRUE(catalog.CreateProject("other", "{}").ok());
  ProjectCache projects(catalog);
  ASSERT_TRUE(projects.Refresh(true).ok());
  cache::CompileCacheStore compiles(url_, 1);
  Signal dispatch_wake, remote_wake, job_events;
  Served s(MakeJobService({*guard_, jobs, projects, trees, **blobs, images, 1000, compiles, dispatch_wake, remote_wake,
                           job_events, stopping_}));
  auto stub = v1::JobService::NewStub(s.channel());
  auto reader = trust_->CreateToken({auth::Role::kRead, {"other"}, "", "test", 0});
  auto submitter = trust_->CreateToken({auth::Role::kSubmit, {"other"}, "", "test", 0});
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
  ASSERT_TRUE(trust_->RevokeToken(id->id).ok());
  guard_->Forget("token " + id->id);  // what NOTIFY kiln_revoke does on every controller
  st = stub->GetJob(As(*reader).get(), get, &job);
  EXPECT_EQ(st.error_code(), grpc::UNAUTHENTICATED) << st.error_message();
  EXPECT_NE(st.error_message().find("revoked"), std::string::npos) << st.error_message();
  auto brief = trust_->CreateToken({auth::Role::kRead, {"other"}, "", "test", /*ttl_ms=*/300});
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
                             config_wake, dispatch_wake}));
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

}  // namespace
}  // namespace kiln::controller
