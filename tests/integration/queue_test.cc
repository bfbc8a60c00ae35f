// The queue against a real PostgreSQL: claims, fencing, leases, routing.

#include "queue/catalog_store.h"
#include "queue/dispatch_store.h"
#include "queue/job_store.h"
#include "queue/open_pool.h"
#include "queue/worker_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include <pqxx/pqxx>

#include "cache/action_store.h"
#include "cache/compile_store.h"
#include "cas/digest.h"
#include "cc/deps.h"
#include "config/config.h"
#include "db/migrate.h"
#include "db/migrations_embedded.h"
#include "harness/harness.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;
using queue::JobStatus;

// Who the audit trail names for the changes these tests make.
const audit::Who kWho{"test", "local"};

// No job here has a warm workspace; the controller's default all the same.
const std::chrono::milliseconds kGrace = config::ControllerConfig{}.workspace_grace;

class QueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = test::NewDatabase();
    auto pool = queue::OpenPool(url_, 12);
    ASSERT_TRUE(pool.ok()) << pool.status().message();
    pool_ = std::move(pool).value();
    jobs_ = std::make_unique<queue::JobStore>(*pool_);
    dispatch_ = std::make_unique<queue::DispatchStore>(*pool_);
    workers_ = std::make_unique<queue::WorkerStore>(*pool_);
    catalog_ = std::make_unique<queue::CatalogStore>(*pool_);
  }

  int64_t SubmitJob(const std::string& project = "default", int priority = 0,
                    std::map<std::string, std::string> req = {{"arch", "x86_64"}}, int max_attempts = 3) {
    queue::NewJob j;
    j.project = project;
    j.priority = priority;
    j.max_attempts = max_attempts;
    j.spec.argv = {"true"};
    j.spec.requirements = std::move(req);
    auto r = jobs_->Submit(j, kWho);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? r->job.id : 0;
  }

  std::string Worker(const std::string& id, const std::string& cluster = "default",
                     std::map<std::string, std::string> labels = {}, std::chrono::milliseconds lease = 60s) {
    queue::WorkerRegistration w;
    w.id = id;
    w.hostname = "host-" + id;
    w.cluster = cluster;
    w.arch = "x86_64";
    w.os = "linux";
    w.labels = std::move(labels);
    w.slots = 4;
    w.session = "s-" + id;
    auto s = workers_->Register(w, lease);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return w.session;
  }

  queue::Update Done(const std::string& worker, const queue::Claimed& c,
                     JobStatus st = JobStatus::kSucceeded) {
    queue::Update u;
    u.worker_id = worker;
    u.job_id = c.id;
    u.attempt = c.attempt;
    u.status = st;
    u.result = queue::JobResult{0, 0, "", false, "", ""};
    return u;
  }

  // A job the action cache applies to (the controller computes the digest).
  static queue::NewJob CacheableJob(char digest) {
    queue::NewJob j;
    j.project = "default";
    j.spec.argv = {"true"};
    j.spec.image = "sha256:" + std::string(64, 'a');
    j.action_digest = std::string(64, digest);
    j.cache_scope = "project:default";
    return j;
  }

  std::string url_;
  // The stores as the controller composes them: one pool, one store a concern.
  std::shared_ptr<db::Pool> pool_;
  std::unique_ptr<queue::JobStore> jobs_;
  std::unique_ptr<queue::DispatchStore> dispatch_;
  std::unique_ptr<queue::WorkerStore> workers_;
  std::unique_ptr<queue::CatalogStore> catalog_;
};

TEST_F(QueueTest, MigrationsAreIdempotent) {
  auto again = db::Migrate(url_);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_TRUE(again->applied.empty());
  EXPECT_EQ(again->current_version, db::LatestVersion());
  // One row a migration (numbers may skip one another branch takes).
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM kiln_schema_migrations"),
            std::to_string(db::EmbeddedMigrations().size()));
}

TEST_F(QueueTest, EightClaimersNeverClaimAJobTwice) {
  constexpr int kJobs = 5000;
  ASSERT_EQ(test::Sql(url_,
                      "INSERT INTO build_jobs (project_id, spec) SELECT 1, '{\"argv\": [\"true\"]}'"
                      " FROM generate_series(1, 5000) RETURNING 1"),
            "1");
  std::vector<std::string> sessions;
  for (int i = 0; i < 8; ++i) sessions.push_back(Worker("w" + std::to_string(i)));
  std::mutex mu;
  std::vector<int64_t> all;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      std::string w = "w" + std::to_string(i);
      while (true) {
        auto c = dispatch_->Claim(w, sessions[i], 1 + i % 3 * 10, kGrace);  // 1, 11 or 21 at a time
        if (!c.ok()) {
          ++errors;
          return;
        }
        if (c->empty()) return;
        std::vector<queue::Update> ups;
        for (const auto& job : *c) ups.push_back(Done(w, job));
        auto a = dispatch_->Apply(ups, {});
        if (!a.ok()) ++errors;
        std::lock_guard g(mu);
        for (const auto& job : *c) all.push_back(job.id);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors, 0);
  std::set<int64_t> unique(all.begin(), all.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kJobs)) << "some job was claimed twice or not at all";
  EXPECT_EQ(unique.size(), static_cast<size_t>(kJobs));
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM build_jobs WHERE status = 'succeeded' AND attempt = 1"), "5000");
}

TEST_F(QueueTest, ClaimsRespectClusterMapping) {
  ASSERT_TRUE(catalog_->CreateCluster("east", kWho).ok());
  ASSERT_TRUE(catalog_->CreateProject("web", "{}", kWho).ok());
  ASSERT_TRUE(catalog_->MapProject("east", "web", false, kWho).ok());
  int64_t web = SubmitJob("web");
  int64_t def = SubmitJob("default");
  std::string se = Worker("east1", "east");
  auto c = dispatch_->Claim("east1", se, 10, kGrace);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].id, web);
  std::string sd = Worker("def1", "default");
  c = dispatch_->Claim("def1", sd, 10, kGrace);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].id, def);
}

TEST_F(QueueTest, ClaimsByPriorityThenAge) {
  int64_t low_old = SubmitJob("default", 0);
  int64_t high = SubmitJob("default", 5);
  int64_t low_new = SubmitJob("default", 0);
  int64_t highest = SubmitJob("default", 9);
  std::string s = Worker("w");
  std::vector<int64_t> order;
  for (int i = 0; i < 4; ++i) {
    auto c = dispatch_->Claim("w", s, 1, kGrace);
    ASSERT_TRUE(c.ok());
    ASSERT_EQ(c->size(), 1u);
    order.push_back((*c)[0].id);
  }
  EXPECT_EQ(order, (std::vector<int64_t>{highest, high, low_old, low_new}));
}

TEST_F(QueueTest, ExpiredLeaseRequeuesKeepingPlaceThenMarksLost) {
  int64_t id = SubmitJob("default", 0, {{"arch", "x86_64"}}, 2);
  std::string queued_at = test::Sql(url_, "SELECT queue_start_time FROM build_jobs WHERE id = " + std::to_string(id));
  for (int attempt = 1; attempt <= 2; ++attempt) {
    std::string w = "short" + std::to_string(attempt);
    std::string s = Worker(w, "default", {}, 100ms);
    auto c = dispatch_->Claim(w, s, 1, kGrace);
    ASSERT_TRUE(c.ok());
    ASSERT_EQ(c->size(), 1u);
    EXPECT_EQ((*c)[0].attempt, attempt);
    ASSERT_TRUE(test::WaitFor(
        [&] {
          auto r = dispatch_->Reap();
          return r.ok() && !r->job_ids.empty();
        },
        5s));
    auto j = jobs_->Get(id);
    ASSERT_TRUE(j.ok());
    if (attempt == 1) {
      EXPECT_EQ(j->status, JobStatus::kQueued);
      EXPECT_TRUE(j->worker_id.empty());
      EXPECT_EQ(test::Sql(url_, "SELECT queue_start_time FROM build_jobs WHERE id = " + std::to_string(id)), queued_at);
    } else {
      EXPECT_EQ(j->status, JobStatus::kLost);
      ASSERT_TRUE(j->result.has_value());
      EXPECT_NE(j->result->error.find("attempt 2 of 2"), std::string::npos) << j->result->error;
    }
  }
}

// The health checker's side of dispatch: an unhealthy worker claims nothing;
// an infrastructure failure with attempts left requeues the job for another
// worker, and on its last attempt fails it as infrastructure.
TEST_F(QueueTest, AnUnhealthyWorkerClaimsNothingAndAnInfrastructureFailureGoesElsewhere) {
  int64_t id = SubmitJob("default", 0, {{"arch", "x86_64"}}, 2);
  std::string s1 = Worker("w1");
  ASSERT_TRUE(workers_->Heartbeat("w1", s1, 60s, false, {"{}", "unhealthy", "disk full", false}).ok());
  EXPECT_EQ(test::Sql(url_, "SELECT health || ' ' || health_reason FROM workers WHERE id = 'w1'"), "unhealthy disk full");
  auto none = dispatch_->Claim("w1", s1, 1, kGrace);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  ASSERT_TRUE(workers_->Heartbeat("w1", s1, 60s, false, {"{\"load1\": 1}", "healthy", "", false}).ok());
  EXPECT_EQ(test::Sql(url_, "SELECT health || ' ' || health_report::text FROM workers WHERE id = 'w1'"),
            "healthy {\"load1\": 1}");
  auto c1 = dispatch_->Claim("w1", s1, 1, kGrace);
  ASSERT_TRUE(c1.ok() && c1->size() == 1);

  auto infra = [&](const std::string& worker, const queue::Claimed& c) {
    auto u = Done(worker, c, JobStatus::kFailed);
    u.result->exit_code = -1;
    u.result->error = "infrastructure: cannot prepare the input tree on worker " + worker + ": disk full";
    u.result->infrastructure = true;
    auto out = dispatch_->Apply({u}, {});
    EXPECT_TRUE(out.ok() && out->size() == 1 && (*out)[0].applied);
    return out.ok() && !out->empty() ? (*out)[0].status : JobStatus::kLost;
  };
  EXPECT_EQ(infra("w1", (*c1)[0]), JobStatus::kQueued);
  EXPECT_EQ(jobs_->Get(id)->status, JobStatus::kQueued);
  // Not the same worker again (within the grace), another one.
  auto again = dispatch_->Claim("w1", s1, 1, kGrace);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  std::string s2 = Worker("w2");
  auto c2 = dispatch_->Claim("w2", s2, 1, kGrace);
  ASSERT_TRUE(c2.ok() && c2->size() == 1);
  EXPECT_EQ((*c2)[0].attempt, 2);
  // Its last attempt: failed, as infrastructure.
  EXPECT_EQ(infra("w2", (*c2)[0]), JobStatus::kFailed);
  auto j = jobs_->Get(id);
  ASSERT_TRUE(j.ok() && j->result.has_value());
  EXPECT_EQ(j->status, JobStatus::kFailed);
  EXPECT_TRUE(j->result->infrastructure);
  EXPECT_EQ(j->result->error, "infrastructure: cannot prepare the input tree on worker w2: disk full");
}

// A claim says how long the job waited since it was last put in line (the
// dispatch latency) and since its submit (its whole wait): the same on the
// first claim, apart after a requeue.
TEST_F(QueueTest, AClaimCountsTheWaitSinceTheLastRequeueAndSinceTheSubmit) {
  int64_t id = SubmitJob();
  test::Sql(url_, "UPDATE build_jobs SET submitted_at = now() - interval '1 hour' WHERE id = " + std::to_string(id));
  std::string s1 = Worker("w1");
  auto c1 = dispatch_->Claim("w1", s1, 1, kGrace);
  ASSERT_TRUE(c1.ok() && c1->size() == 1);
  EXPECT_GE((*c1)[0].since_submit_s, 3600);
  EXPECT_GE((*c1)[0].since_queued_s, 3600) << "never requeued: it waited since its submit";
  ASSERT_TRUE(dispatch_->DropWorker("w1", s1, "test").ok());
  std::string s2 = Worker("w2");
  auto c2 = dispatch_->Claim("w2", s2, 1, kGrace);
  ASSERT_TRUE(c2.ok() && c2->size() == 1);
  EXPECT_GE((*c2)[0].since_submit_s, 3600);
  EXPECT_LT((*c2)[0].since_queued_s, 600) << "requeued a moment ago";
}

TEST_F(QueueTest, StaleAttemptChangesNothing) {
  int64_t id = SubmitJob();
  std::string s1 = Worker("w1");
  auto c1 = dispatch_->Claim("w1", s1, 1, kGrace);
  ASSERT_TRUE(c1.ok() && c1->size() == 1);
  auto dropped = dispatch_->DropWorker("w1", s1, "test");
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(dropped->requeued, 1);
  std::string s2 = Worker("w2");
  auto c2 = dispatch_->Claim("w2", s2, 1, kGrace);
  ASSERT_TRUE(c2.ok() && c2->size() == 1);
  EXPECT_EQ((*c2)[0].attempt, 2);
  // The zombie reports success for attempt 1, and logs.
  auto out = dispatch_->Apply({Done("w1", (*c1)[0])}, {{"w1", id, 1, 0, "zombie output"}});
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->size(), 1u);
  EXPECT_FALSE((*out)[0].applied);
  auto j = jobs_->Get(id);
  EXPECT_EQ(j->status, JobStatus::kSetup);
  EXPECT_EQ(j->worker_id, "w2");
  EXPECT_EQ(j->attempt, 2);
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM job_logs"), "0");
  // The rightful holder's report is applied.
  out = dispatch_->Apply({Done("w2", (*c2)[0])}, {{"w2", id, 2, 0, "real output"}});
  ASSERT_TRUE(out.ok());
  EXPECT_TRUE((*out)[0].applied);
  EXPECT_EQ(jobs_->Get(id)->status, JobStatus::kSucceeded);
  auto log = jobs_->ReadLog(id, 0, 0, 1 << 20);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->data, "real output");
}

TEST_F(QueueTest, TwoIdenticalSuccessesInOneReportLeaveOneCacheEntry) {
  // Both run (--no-cache, say) and their successes reach the database in the
  // same batch: both are applied, one entry is written.
  queue::NewJob j = CacheableJob('d');
  j.no_cache = true;
  auto a = jobs_->Submit(j, kWho), b = jobs_->Submit(j, kWho);
  ASSERT_TRUE(a.ok() && b.ok());
  std::string s = Worker("w");
  auto c = dispatch_->Claim("w", s, 2, kGrace);
  ASSERT_TRUE(c.ok() && c->size() == 2);
  auto out = dispatch_->Apply({Done("w", (*c)[0]), Done("w", (*c)[1])}, {});
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_TRUE((*out)[0].applied && (*out)[1].applied);
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM action_cache"), "1");
  // And the next identical submit is served from it.
  j.no_cache = false;
  auto hit = jobs_->Submit(j, kWho);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->job.status, JobStatus::kSucceeded);
  EXPECT_NE(hit->job.result->cached_from, 0);
}

// Finding 2 of the security probe, where a worker states a tree root: a
// success whose output root names a stored node with another size writes no
// action cache entry (a hit would hand out a root GetTree refuses).
TEST_F(QueueTest, ASuccessWhoseOutputRootHasTheWrongSizeWritesNoCacheEntry) {
  const std::string empty = cas::DigestOf(std::string_view("kiln-tree-1\n")).hash;  // the empty directory, 12 bytes
  test::Sql(url_, "INSERT INTO cas_trees (digest, size, entries) VALUES ('" + empty + "', 12, ''::hstore)");
  auto a = jobs_->Submit(CacheableJob('a'), kWho);
  auto b = jobs_->Submit(CacheableJob('b'), kWho);
  ASSERT_TRUE(a.ok() && b.ok());
  std::string s = Worker("w");
  auto c = dispatch_->Claim("w", s, 2, kGrace);
  ASSERT_TRUE(c.ok() && c->size() == 2);
  queue::Update wrong = Done("w", (*c)[0]), right = Done("w", (*c)[1]);
  wrong.result->output_root = empty + "/13";
  right.result->output_root = empty + "/12";
  auto out = dispatch_->Apply({wrong, right}, {});
  ASSERT_TRUE(out.ok()) << out.status().message();
  EXPECT_TRUE((*out)[0].applied && (*out)[1].applied);
  EXPECT_EQ(test::Sql(url_, "SELECT string_agg(job_id::text, ',') FROM action_cache"), std::to_string((*c)[1].id))
      << "only the success whose root states the node's true size is cached";
}

TEST_F(QueueTest, ActionCacheEntriesUnusedForTheirMaxAgeExpireAndOnlyThose) {
  cache::ActionCacheStore action(*pool_);
  for (char d : {'e', 'f'}) {
    auto j = jobs_->Submit(CacheableJob(d), kWho);
    ASSERT_TRUE(j.ok()) << j.status().message();
    std::string s = Worker("w");
    auto c = dispatch_->Claim("w", s, 1, kGrace);
    ASSERT_TRUE(c.ok() && c->size() == 1);
    ASSERT_TRUE(dispatch_->Apply({Done("w", (*c)[0])}, {}).ok());
  }
  ASSERT_EQ(test::Sql(url_, "SELECT count(*) FROM action_cache"), "2");
  auto none = action.Expire(std::chrono::hours(1));
  ASSERT_TRUE(none.ok()) << none.status().message();
  EXPECT_EQ(*none, 0);
  test::Sql(url_, "UPDATE action_cache SET last_used = now() - interval '2 hours' WHERE digest = '" +
                      std::string(64, 'e') + "'");
  auto one = action.Expire(std::chrono::hours(1));
  ASSERT_TRUE(one.ok()) << one.status().message();
  EXPECT_EQ(*one, 1);
  EXPECT_EQ(test::Sql(url_, "SELECT string_agg(digest, ',') FROM action_cache"), std::string(64, 'f'));
  // The expired action runs again; the one still used is served.
  auto again = jobs_->Submit(CacheableJob('e'), kWho);
  auto served = jobs_->Submit(CacheableJob('f'), kWho);
  ASSERT_TRUE(again.ok() && served.ok());
  EXPECT_EQ(again->job.status, JobStatus::kQueued);
  EXPECT_EQ(served->job.status, JobStatus::kSucceeded);
}

// A store of a.c's object under direct key 1...1 and result key 3...3 (its
// manifest is the test's).
cc::CompileEntry UnitStore() {
  cc::CompileEntry st;
  st.key = std::string(64, '1');
  st.result.key = std::string(64, '3');
  st.result.object = {std::string(64, '4'), 100};
  st.parts.source = "a.c";
  st.parts.output = "a.o";
  return st;
}

// The compile cache's tables under concurrent writers: eight running jobs
// store the same translation unit at once.
TEST_F(QueueTest, ConcurrentStoresOfOneCompileLeaveOneResultAndOneManifest) {
  std::string s = Worker("w");
  std::vector<queue::Claimed> jobs;
  for (int i = 0; i < 8; ++i) {
    queue::NewJob j = CacheableJob('f');
    j.no_cache = true;
    ASSERT_TRUE(jobs_->Submit(j, kWho).ok());
  }
  auto c = dispatch_->Claim("w", s, 8, kGrace);
  ASSERT_TRUE(c.ok() && c->size() == 8);
  cache::CompileCacheStore store(url_, 8);
  cc::CompileEntry st = UnitStore();
  st.deps = {{"/src/a.c", "f:" + std::string(64, '2') + "/10"}, {"/usr/include/stdio.h", "i"}};
  st.result.stderr = "warning: ";
  st.result.stderr += '\0';
  st.result.stderr += " and \xff bytes survive";
  std::atomic<int> fresh{0}, failed{0};
  std::vector<std::thread> ts;
  for (const auto& job : *c) {
    ts.emplace_back([&, job] {
      auto r = store.Store({"w", job.id, job.attempt}, st);
      if (!r.ok()) ++failed;
      else if (*r) ++fresh;
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(fresh.load(), 1) << "the first writer wins, the others find it";
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM compile_results"), "1");
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM compile_manifests"), "1");
  auto found = store.Lookup({"w", (*c)[0].id, (*c)[0].attempt}, st.key, "a.c", "a.o");
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_EQ(found->manifests.size(), 1u);
  EXPECT_EQ(cc::UnpackDeps(found->manifests[0].deps_packed), st.deps);
  EXPECT_EQ(test::Sql(url_, "SELECT deps -> '/src/a.c' FROM compile_manifests"), st.deps["/src/a.c"]) << "and as hstore";
  EXPECT_EQ(found->manifests[0].result.stderr, st.result.stderr) << "diagnostics are bytes, stored exactly";
  // A job that does not run (any more) can neither read nor write.
  auto stale = store.Lookup({"w", (*c)[0].id, (*c)[0].attempt + 1}, st.key, "a.c", "a.o");
  EXPECT_EQ(stale.status().code(), Code::kFailedPrecondition);
  cc::CompileEntry zombie = st;
  zombie.key = std::string(64, '5');
  EXPECT_EQ(store.Store({"w", (*c)[0].id, (*c)[0].attempt + 1}, zombie).status().code(), Code::kFailedPrecondition);
  // Nor can another worker, for a job it does not run (compile cache poisoning).
  EXPECT_EQ(store.Store({"intruder", (*c)[0].id, (*c)[0].attempt}, zombie).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(store.Lookup({"intruder", (*c)[0].id, (*c)[0].attempt}, st.key, "a.c", "a.o").status().code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM compile_manifests"), "1");
}

// A PostgreSQL unit's manifest (150 headers, 20 KB) is compressed with lz4
// (sql/007), and reads back entry for entry.
TEST_F(QueueTest, ALargeManifestIsStoredCompressedWithLz4) {
  std::string s = Worker("w");
  ASSERT_TRUE(jobs_->Submit(CacheableJob('f'), kWho).ok());
  auto c = dispatch_->Claim("w", s, 1, kGrace);
  ASSERT_TRUE(c.ok() && c->size() == 1);
  cache::CompileCacheStore store(url_, 1);
  cc::CompileEntry st = UnitStore();
  for (int i = 0; i < 150; ++i)
    st.deps["/kiln/work/src/include/utils/header_" + std::to_string(i) + ".h"] =
        "f:" + cas::DigestOf(std::to_string(i)).Key();
  ASSERT_TRUE(store.Store({"w", (*c)[0].id, (*c)[0].attempt}, st).ok());
  EXPECT_EQ(test::Sql(url_, "SELECT pg_column_compression(deps) || ' ' || pg_column_compression(deps_packed)"
                            " FROM compile_manifests"),
            "lz4 lz4");
  auto found = store.Lookup({"w", (*c)[0].id, (*c)[0].attempt}, st.key, "a.c", "a.o");
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_EQ(found->manifests.size(), 1u);
  EXPECT_EQ(cc::UnpackDeps(found->manifests[0].deps_packed), st.deps);
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM compile_manifests, each(deps)"), "150");
}

// The table's conversion of a compile record: every field of a result and
// of the parts (the nearest earlier compile) reads back as stored.
TEST_F(QueueTest, ACompileEntryReadsBackFieldForField) {
  std::string s = Worker("w");
  ASSERT_TRUE(jobs_->Submit(CacheableJob('f'), kWho).ok());
  auto c = dispatch_->Claim("w", s, 1, kGrace);
  ASSERT_TRUE(c.ok() && c->size() == 1);
  const int64_t job = (*c)[0].id;
  const int attempt = (*c)[0].attempt;
  cache::CompileCacheStore store(url_, 1);
  cc::CompileEntry st = UnitStore();
  st.parts.image = "sha256:" + std::string(64, 'a');
  st.parts.compiler = std::string(64, 'c');
  st.parts.cwd = "/src/sub";
  st.parts.args = {"-O2", "-c", "a.c"};
  st.parts.env = {{"LANG", "C.UTF-8"}};
  st.parts.source_digest = std::string(64, '2') + "/10";
  st.parts.compiler_path = "/usr/bin/gcc";
  st.deps = {{"/src/sub/a.c", "f:" + std::string(64, '2') + "/10"}};
  st.result.depfile = std::string("a.o: a.c\0\xff", 10);
  st.result.stdout = std::string("out\0\xff", 5);
  st.result.stderr = std::string("err\0\xff", 5);
  st.result.compile_ms = 567;
  ASSERT_TRUE(store.Store({"w", job, attempt}, st).ok());
  auto found = store.Lookup({"w", job, attempt}, st.key, "a.c", "a.o");
  ASSERT_TRUE(found.ok()) << found.status().message();
  ASSERT_EQ(found->manifests.size(), 1u);
  EXPECT_GT(found->manifests[0].id, 0);
  EXPECT_EQ(found->manifests[0].deps_packed, cc::PackDeps(st.deps));
  EXPECT_EQ(found->manifests[0].result, st.result);
  auto result = store.LookupResult({"w", job, attempt}, st.result.key);
  ASSERT_TRUE(result.ok() && result->has_value());
  EXPECT_EQ(**result, st.result);
  auto other = store.Lookup({"w", job, attempt}, std::string(64, '9'), "a.c", "a.o");
  ASSERT_TRUE(other.ok()) << other.status().message();
  ASSERT_EQ(other->previous.size(), 1u);
  EXPECT_EQ(other->previous[0], st.parts);
}

// "Which cached translation units include this header?" is answered by the
// GIN index on the manifests' hstore, whatever the table's size.
TEST_F(QueueTest, HeaderImpactUsesTheGinIndex) {
  test::Sql(url_,
            "INSERT INTO compile_results (scope, key, object_hash, object_size)"
            " SELECT 'project:default', lpad(to_hex(i), 64, '0'), repeat('a', 64), 1 FROM generate_series(1, 20000) i;"
            "INSERT INTO compile_manifests (scope, key, deps_digest, deps, deps_packed, result_key, source, output, parts)"
            " SELECT 'project:default', lpad(to_hex(i), 64, '0'), 'd', hstore('/src/h' || (i % 1000) || '.h', 'f:x'), '',"
            "  lpad(to_hex(i), 64, '0'), 's' || i || '.c', 's' || i || '.o', '{}' FROM generate_series(1, 20000) i;"
            "ANALYZE compile_manifests");
  cache::CompileCacheStore store(url_, 1);
  auto units = store.Impact("project:default", "/src/h7.h", 1000);
  ASSERT_TRUE(units.ok()) << units.status().message();
  EXPECT_EQ(units->size(), 20u);
  // The statement the store runs, prepared as the store prepares it, after
  // more than the five executions after which PostgreSQL may switch to a
  // generic plan, and with the generic plan forced: every plan it may get
  // starts from the GIN index (not a scan of the whole scope).
  pqxx::connection c(url_);
  pqxx::nontransaction tx(c);
  tx.exec0(std::string("PREPARE impact(text, text, int) AS ") + cache::ImpactSql());
  for (const char* mode : {"auto", "force_generic_plan"}) {
    tx.exec0(std::string("SET plan_cache_mode = ") + mode);
    for (int i = 0; i < 6; ++i)
      tx.exec("EXECUTE impact('project:default', '/src/h" + std::to_string(i) + ".h', 1000)");
    std::string plan;
    for (const auto& row : tx.exec("EXPLAIN EXECUTE impact('project:default', '/src/h7.h', 1000)"))
      plan += row[0].as<std::string>() + "\n";
    EXPECT_NE(plan.find("compile_manifests_deps"), std::string::npos) << mode << "\n" << plan;
  }
}

TEST_F(QueueTest, AnIdenticalJobWaitsOnlyForALeaderThatRunsNoLater) {
  queue::NewJob j = CacheableJob('e');
  auto leader = jobs_->Submit(j, kWho);
  ASSERT_TRUE(leader.ok());
  EXPECT_EQ(leader->job.waits_for, 0);
  auto same = jobs_->Submit(j, kWho);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(same->job.waits_for, leader->job.id);
  // More urgent than the queued leader: it does not wait behind it.
  j.priority = 10;
  auto urgent = jobs_->Submit(j, kWho);
  ASSERT_TRUE(urgent.ok());
  EXPECT_EQ(urgent->job.waits_for, 0);
  // The leader's claim takes it first; the waiter is skipped while it runs.
  std::string s = Worker("w");
  auto c = dispatch_->Claim("w", s, 3, kGrace);
  ASSERT_TRUE(c.ok());
  std::set<int64_t> claimed;
  for (const auto& cl : *c) claimed.insert(cl.id);
  EXPECT_EQ(claimed, (std::set<int64_t>{leader->job.id, urgent->job.id}));
}

TEST_F(QueueTest, ReadLogStopsAtAGapUnlessTheJobEnded) {
  int64_t id = SubmitJob();
  std::string s = Worker("w");
  auto c = dispatch_->Claim("w", s, 1, kGrace);
  ASSERT_TRUE(c.ok() && c->size() == 1);
  // Bytes 5..10 never arrive.
  ASSERT_TRUE(dispatch_->Apply({}, {{"w", id, 1, 0, "01234"}, {"w", id, 1, 10, "abcde"}}).ok());
  EXPECT_EQ(jobs_->Get(id)->log_size, 15);
  auto head = jobs_->ReadLog(id, 0, 0, 1 << 20);
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(head->data, "01234");
  auto waiting = jobs_->ReadLog(id, 0, 5, 1 << 20);
  EXPECT_TRUE(waiting->data.empty());
  auto skipped = jobs_->ReadLog(id, 0, 5, 1 << 20, /*skip_gaps=*/true);
  EXPECT_EQ(skipped->offset, 10);
  EXPECT_EQ(skipped->data, "abcde");
  auto middle = jobs_->ReadLog(id, 0, 12, 2);
  EXPECT_EQ(middle->data, "cd");
}

TEST_F(QueueTest, DropOfAnOldSessionDoesNotRequeue) {
  SubmitJob();
  std::string old_session = Worker("w1");
  std::string new_session = "s2-w1";
  queue::WorkerRegistration w{"w1", "h", "default", "x86_64", "linux", {}, 4, "", "", new_session, false, ""};
  ASSERT_TRUE(workers_->Register(w, 60s).ok());
  auto c = dispatch_->Claim("w1", new_session, 1, kGrace);
  ASSERT_TRUE(c.ok() && c->size() == 1);
  auto dropped = dispatch_->DropWorker("w1", old_session, "old stream closed late");
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(dropped->requeued, 0);
  EXPECT_EQ(jobs_->Get((*c)[0].id)->status, JobStatus::kSetup);
}

TEST_F(QueueTest, SubmitIsIdempotentOnRequestId) {
  queue::NewJob j;
  j.project = "default";
  j.request_id = "ci-build-42";
  j.spec.argv = {"make", "all"};
  auto a = jobs_->Submit(j, kWho);
  auto b = jobs_->Submit(j, kWho);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->job.id, b->job.id);
  EXPECT_FALSE(a->existing);
  EXPECT_TRUE(b->existing);
  j.spec.argv = {"make", "other"};
  auto c = jobs_->Submit(j, kWho);
  EXPECT_EQ(c.status().code(), Code::kAlreadyExists);
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM build_jobs"), "1");
}

// Finding 5 of the security probe: request ids were unique across the
// farm, so another project could squat a predictable CI id, and re-using
// another project's id revealed its job number. Now unique per project.
TEST_F(QueueTest, RequestIdIsUniquePerProjectAndRevealsNothingOfAnother) {
  ASSERT_TRUE(catalog_->CreateProject("other", "{}", kWho).ok());
  auto submit = [&](const std::string& project, std::vector<std::string> argv) {
    queue::NewJob j;
    j.project = project;
    j.request_id = "ci-build-42";
    j.spec.argv = std::move(argv);
    return jobs_->Submit(j, kWho);
  };
  auto a = submit("default", {"make", "all"});
  ASSERT_TRUE(a.ok()) << a.status().message();
  // Another project's same id is its own job, whatever its command.
  auto b = submit("other", {"make", "evil"});
  ASSERT_TRUE(b.ok()) << "another project's id is no business of this one: " << b.status().message();
  EXPECT_NE(b->job.id, a->job.id);
  EXPECT_FALSE(b->existing);
  EXPECT_EQ(b->job.project, "other");
  // Within a project the id stays idempotent.
  auto a2 = submit("default", {"make", "all"});
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(a2->job.id, a->job.id);
  EXPECT_TRUE(a2->existing);
  auto b2 = submit("other", {"make", "evil"});
  ASSERT_TRUE(b2.ok());
  EXPECT_EQ(b2->job.id, b->job.id);
  EXPECT_TRUE(b2->existing);
  // A different command under a taken id names only the project's own job.
  auto clash = submit("other", {"make", "all"});
  EXPECT_EQ(clash.status().code(), Code::kAlreadyExists);
  EXPECT_NE(clash.status().message().find("job " + std::to_string(b->job.id) + " of project other"),
            std::string::npos)
      << clash.status().message();
  EXPECT_EQ(clash.status().message().find("job " + std::to_string(a->job.id) + " "), std::string::npos)
      << clash.status().message();
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM build_jobs"), "2");
  EXPECT_EQ(test::Sql(url_, "SELECT count(*) FROM pg_indexes WHERE indexname = 'build_jobs_request_id'"), "0")
      << "the farm-wide unique index is gone (sql/008)";
}

TEST_F(QueueTest, ClaimOnlyHandsJobsToWorkersThatSatisfyThem) {
  int64_t arm = SubmitJob("default", 0, {{"arch", "aarch64"}});
  int64_t gpu = SubmitJob("default", 0, {{"arch", "x86_64"}, {"gpu", "1"}});
  std::string s = Worker("plain");
  auto c = dispatch_->Claim("plain", s, 10, kGrace);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->empty());
  auto why = jobs_->Unsatisfiable(arm);
  ASSERT_TRUE(why.ok());
  EXPECT_NE(why->find("aarch64"), std::string::npos) << *why;
  std::string sg = Worker("gpu-box", "default", {{"gpu", "1"}});
  EXPECT_EQ(*jobs_->Unsatisfiable(gpu), "");
  c = dispatch_->Claim("gpu-box", sg, 10, kGrace);
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].id, gpu);
}

TEST_F(QueueTest, CancelQueuedIsImmediateAndRunningIsRequested) {
  int64_t queued = SubmitJob();
  auto j = jobs_->Cancel(queued, "not needed", kWho);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->status, JobStatus::kCancelled);
  int64_t running = SubmitJob();
  std::string s = Worker("w");
  auto c = dispatch_->Claim("w", s, 1, kGrace);
  ASSERT_TRUE(c.ok() && c->size() == 1 && (*c)[0].id == running);
  j = jobs_->Cancel(running, "", kWho);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->status, JobStatus::kSetup);
  EXPECT_TRUE(j->cancel_requested);
  auto out = dispatch_->Apply({Done("w", (*c)[0], JobStatus::kCancelled)}, {});
  ASSERT_TRUE(out.ok() && (*out)[0].applied);
  EXPECT_EQ(jobs_->Get(running)->status, JobStatus::kCancelled);
  EXPECT_EQ(jobs_->Cancel(running, "", kWho).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(jobs_->Cancel(999999, "", kWho).status().code(), Code::kNotFound);
}

TEST_F(QueueTest, DequeueIsAnIndexScanWhateverTheHistory) {
  test::Sql(url_,
            "INSERT INTO build_jobs (project_id, spec, status) SELECT 1, '{}', 'succeeded'"
            " FROM generate_series(1, 20000)");
  for (int i = 0; i < 20; ++i) SubmitJob();
  test::Sql(url_, "ANALYZE build_jobs");
  std::string s = Worker("w");
  // The plan the library runs: the generic plan of the exact claim statement.
  pqxx::connection c(url_);
  pqxx::nontransaction tx(c);
  tx.exec0("SET plan_cache_mode = force_generic_plan");
  tx.exec0(std::string("PREPARE claim(text, text, bigint, float8) AS ") + queue::ClaimSql());
  std::string plan;
  for (const auto& row : tx.exec("EXPLAIN EXECUTE claim('w', '" + s + "', 10, 10)")) plan += row[0].as<std::string>() + "\n";
  EXPECT_NE(plan.find("build_jobs_queued"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("Seq Scan on build_jobs"), std::string::npos) << plan;
}

TEST_F(QueueTest, ProjectUpdatedAtIsKeptByTrigger) {
  ASSERT_TRUE(catalog_->CreateProject("p1", "{}", kWho).ok());
  std::string before = test::Sql(url_, "SELECT updated_at FROM projects WHERE name = 'p1'");
  auto p = catalog_->SetProjectConfig("p1", R"({"default_priority": 3})", kWho);
  ASSERT_TRUE(p.ok());
  // Even an UPDATE that tries to set updated_at itself gets the trigger's value.
  test::Sql(url_, "UPDATE projects SET updated_at = '2000-01-01' WHERE name = 'p1'");
  std::string after = test::Sql(url_, "SELECT updated_at > '" + before + "' FROM projects WHERE name = 'p1'");
  EXPECT_EQ(after, "t");
  EXPECT_EQ(catalog_->CreateProject("p1", "{}", kWho).status().code(), Code::kAlreadyExists);
  EXPECT_EQ(catalog_->CreateProject("bad/name", "{}", kWho).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace kiln
