// Log quotas against a real PostgreSQL (queue::LogStore): what a pruning
// pass counts and removes, in which order, what a job whose log went says,
// and that concurrent passes (several controllers) remove no more than asked.

#include "queue/log_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <tuple>

#include "audit/entry.h"
#include "config/config.h"
#include "db/pool.h"
#include "harness/harness.h"
#include "queue/dispatch_store.h"
#include "queue/job_store.h"
#include "queue/open_pool.h"
#include "queue/worker_store.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;
using queue::JobStatus;
const audit::Who kWho{"test", "local"};

const std::chrono::milliseconds kGrace = config::ControllerConfig{}.workspace_grace;

class LogStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    url_ = test::NewDatabase();
    auto pool = queue::OpenPool(url_, 8);
    ASSERT_TRUE(pool.ok()) << pool.status().message();
    pool_ = std::move(pool).value();
    jobs_ = std::make_unique<queue::JobStore>(*pool_);
    dispatch_ = std::make_unique<queue::DispatchStore>(*pool_);
    workers_ = std::make_unique<queue::WorkerStore>(*pool_);
    logs_ = std::make_unique<queue::LogStore>(*pool_);
    test::Sql(url_, "INSERT INTO projects (name) VALUES ('web'), ('api')");
    test::Sql(url_, "INSERT INTO cluster_projects SELECT c.id, p.id FROM clusters c, projects p"
                    " WHERE p.name IN ('web', 'api')");
    queue::WorkerRegistration w{"w", "h", "default", "x86_64", "linux", {}, 64, "", "", "s-w", false, ""};
    ASSERT_TRUE(workers_->Register(w, 600s).ok());
  }

  // Submits a job of `project`, claims it and writes `bytes` of log at attempt 1.
  queue::Claimed Running(const std::string& project, size_t bytes, const queue::NewJob* as = nullptr) {
    queue::NewJob j;
    if (as) j = *as;
    j.project = project;
    if (j.spec.argv.empty()) j.spec.argv = {"true"};
    j.spec.requirements = {{"arch", "x86_64"}};
    auto sub = jobs_->Submit(j, kWho);
    EXPECT_TRUE(sub.ok()) << sub.status().message();
    auto c = dispatch_->Claim("w", "s-w", 1, kGrace);
    EXPECT_TRUE(c.ok() && c->size() == 1 && (*c)[0].id == sub->job.id);
    queue::Claimed cl = (*c)[0];
    Log(cl, 0, std::string(bytes, 'x'));
    return cl;
  }

  void Log(const queue::Claimed& c, int64_t offset, const std::string& data) {
    auto r = dispatch_->Apply({}, {{"w", c.id, c.attempt, offset, data}});
    ASSERT_TRUE(r.ok()) << r.status().message();
  }

  // A job of `project` that wrote `bytes` of log and ended `ago` (SQL interval) ago.
  int64_t Ended(const std::string& project, size_t bytes, const std::string& ago,
                const queue::NewJob* as = nullptr) {
    queue::Claimed c = Running(project, bytes, as);
    queue::Update u;
    u.worker_id = "w";
    u.job_id = c.id;
    u.attempt = c.attempt;
    u.status = JobStatus::kSucceeded;
    u.result = queue::JobResult{0, 0, "", false, "", ""};
    auto r = dispatch_->Apply({u}, {});
    EXPECT_TRUE(r.ok() && (*r)[0].applied);
    test::Sql(url_, "UPDATE build_jobs SET finished_at = now() - interval '" + ago + "' WHERE id = " +
                        std::to_string(c.id));
    return c.id;
  }

  std::string Stored(int64_t id) {
    auto s = jobs_->ReadLog(id, 0, 0, 1 << 20, /*skip_gaps=*/true);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? s->data : "";
  }
  int64_t Chunks(int64_t id) {
    return std::stoll(test::Sql(url_, "SELECT count(*) FROM job_logs WHERE job_id = " + std::to_string(id)));
  }

  queue::LogPruneOutcome Prune(const queue::LogPrunePlan& plan) {
    std::atomic<bool> stop{false};
    auto out = logs_->Prune(plan, stop);
    EXPECT_TRUE(out.ok()) << out.status().message();
    return out.ok() ? *out : queue::LogPruneOutcome{};
  }

  static queue::ProjectLogQuota Rule(const std::string& project, int64_t retention_ms, int64_t max_bytes) {
    return {project, retention_ms, "retention of " + project, max_bytes, "cap of " + project};
  }

  std::string url_;
  std::shared_ptr<db::Pool> pool_;
  std::unique_ptr<queue::JobStore> jobs_;
  std::unique_ptr<queue::DispatchStore> dispatch_;
  std::unique_ptr<queue::WorkerStore> workers_;
  std::unique_ptr<queue::LogStore> logs_;
};

TEST_F(LogStoreTest, RetentionTakesTheOldestEndedLogsAndNeverARunningJobs) {
  int64_t oldest = Ended("web", 100, "3 hours");
  int64_t old = Ended("web", 100, "2 hours");
  int64_t recent = Ended("web", 100, "1 hour");
  int64_t newest = Ended("web", 100, "1 second");
  queue::Claimed running = Running("web", 100);
  // Started long ago: a running job is never its retention's, whatever its age.
  test::Sql(url_, "UPDATE build_jobs SET started_at = now() - interval '1 day', submitted_at = now() - interval '1 day'"
                  " WHERE id = " + std::to_string(running.id));
  int64_t other = Ended("api", 100, "3 hours");  // another project's rule keeps it

  queue::LogPrunePlan plan;
  plan.projects = {Rule("web", 90 * 60'000, 0), Rule("api", 0, 0)};
  auto out = Prune(plan);
  EXPECT_EQ(out.counted, 5);  // the ended jobs, once each
  EXPECT_EQ(out.retention.jobs, 2);
  EXPECT_EQ(out.retention.bytes, 200);
  EXPECT_FALSE(out.busy);

  for (int64_t id : {oldest, old}) {
    auto j = jobs_->Get(id);
    ASSERT_TRUE(j.ok());
    ASSERT_TRUE(j->log_removed.has_value()) << "job " << id;
    EXPECT_EQ(j->log_removed->job_id, id);
    EXPECT_EQ(j->log_removed->reason, "retention");
    EXPECT_EQ(j->log_removed->detail, "retention of web");
    EXPECT_EQ(j->log_removed->bytes, 100);
    EXPECT_GT(j->log_removed->removed_ms, 0);
    EXPECT_EQ(Chunks(id), 0) << "every chunk of the job goes";
    EXPECT_EQ(Stored(id), "");
  }
  for (int64_t id : {recent, newest, other, running.id}) {
    EXPECT_FALSE(jobs_->Get(id)->log_removed.has_value()) << "job " << id;
    EXPECT_EQ(Stored(id), std::string(100, 'x')) << "job " << id;
  }
  // The running job keeps writing, and a second pass changes nothing.
  Log(running, 100, std::string(50, 'y'));
  EXPECT_EQ(jobs_->Get(running.id)->log_size, 150);
  out = Prune(plan);
  EXPECT_EQ(out.counted, 0);
  EXPECT_EQ(out.retention.jobs, 0);
  EXPECT_EQ(Stored(running.id), std::string(100, 'x') + std::string(50, 'y'));
}

TEST_F(LogStoreTest, CapsTakeTheOldestEndedLogsUntilUnderAndCountEveryAttempt) {
  // A job whose first attempt was lost with its worker: both attempts' logs count.
  queue::Claimed first = Running("web", 300);
  ASSERT_TRUE(dispatch_->DropWorker("w", "s-w", "test").ok());
  queue::WorkerRegistration w{"w", "h", "default", "x86_64", "linux", {}, 64, "", "", "s-w2", false, ""};
  ASSERT_TRUE(workers_->Register(w, 600s).ok());
  auto again = dispatch_->Claim("w", "s-w2", 1, kGrace);
  ASSERT_TRUE(again.ok() && again->size() == 1 && (*again)[0].attempt == 2);
  ASSERT_TRUE(dispatch_->Apply({}, {{"w", first.id, 2, 0, std::string(200, 'z')}}).ok());
  queue::Update u;
  u.worker_id = "w";
  u.job_id = first.id;
  u.attempt = 2;
  u.status = JobStatus::kFailed;
  u.result = queue::JobResult{1, 0, "", false, "", ""};
  ASSERT_TRUE(dispatch_->Apply({u}, {}).ok());
  test::Sql(url_, "UPDATE build_jobs SET finished_at = now() - interval '5 hours' WHERE id = " + std::to_string(first.id));
  // Re-register as the session the helpers use.
  queue::WorkerRegistration back{"w", "h", "default", "x86_64", "linux", {}, 64, "", "", "s-w", false, ""};
  ASSERT_TRUE(workers_->Register(back, 600s).ok());

  int64_t a = Ended("web", 100, "4 hours");
  int64_t b = Ended("web", 100, "3 hours");
  int64_t c = Ended("web", 100, "2 hours");
  int64_t d = Ended("web", 100, "1 hour");
  queue::Claimed running = Running("web", 5000);  // over the cap alone, but not ended
  int64_t api_old = Ended("api", 400, "10 hours");
  int64_t api_new = Ended("api", 400, "1 minute");

  queue::LogPrunePlan plan;
  plan.projects = {Rule("web", 0, 250), Rule("api", 0, 0)};
  plan.batch_jobs = 1;  // one job per transaction: the loop must carry on
  auto out = Prune(plan);
  EXPECT_EQ(test::Sql(url_, "SELECT log_bytes FROM build_jobs WHERE id = " + std::to_string(first.id)), "500");
  // web held 500 + 4 x 100 = 900: the oldest go until at most 250 are left.
  EXPECT_EQ(out.project_cap.jobs, 3);
  EXPECT_EQ(out.project_cap.bytes, 700);
  for (int64_t id : {first.id, a, b}) {
    auto j = jobs_->Get(id);
    ASSERT_TRUE(j->log_removed.has_value()) << "job " << id;
    EXPECT_EQ(j->log_removed->reason, "project_log_max_bytes");
    EXPECT_EQ(j->log_removed->detail, "cap of web");
    EXPECT_EQ(Chunks(id), 0);
  }
  EXPECT_EQ(jobs_->Get(first.id)->log_removed->bytes, 500);
  for (int64_t id : {c, d, running.id, api_old, api_new}) EXPECT_FALSE(jobs_->Get(id)->log_removed.has_value()) << id;

  // The farm's cap: web's c and d (200) and api's two (800) = 1000 over 500:
  // the oldest across projects go, api's old one, then web's c.
  plan.total_max_bytes = 500;
  plan.total_why = "the farm over its cap";
  out = Prune(plan);
  EXPECT_EQ(out.project_cap.jobs, 0);
  EXPECT_EQ(out.total_cap.jobs, 2);
  EXPECT_EQ(out.total_cap.bytes, 500);
  for (int64_t id : {api_old, c}) {
    auto j = jobs_->Get(id);
    ASSERT_TRUE(j->log_removed.has_value()) << "job " << id;
    EXPECT_EQ(j->log_removed->reason, "log_max_bytes");
    EXPECT_EQ(j->log_removed->detail, "the farm over its cap");
  }
  for (int64_t id : {d, running.id, api_new}) EXPECT_FALSE(jobs_->Get(id)->log_removed.has_value()) << id;
  EXPECT_EQ(Stored(running.id), std::string(5000, 'x'));
}

TEST_F(LogStoreTest, AJobServedFromTheCacheSaysItsProducersLogWentAndHoldsNoBytesItself) {
  queue::NewJob cacheable;
  cacheable.spec.argv = {"make"};
  cacheable.spec.image = "sha256:" + std::string(64, 'a');
  cacheable.action_digest = std::string(64, 'c');
  cacheable.cache_scope = "project:web";
  int64_t producer = Ended("web", 100, "2 days", &cacheable);
  cacheable.project = "web";
  auto hit = jobs_->Submit(cacheable, kWho);
  ASSERT_TRUE(hit.ok()) << hit.status().message();
  ASSERT_EQ(hit->job.status, JobStatus::kSucceeded);
  ASSERT_EQ(hit->job.result->cached_from, producer);
  EXPECT_FALSE(hit->job.log_removed.has_value());
  EXPECT_EQ(Stored(hit->job.id), std::string(100, 'x'));  // the producer's log is its log

  queue::LogPrunePlan plan;
  plan.projects = {Rule("web", 86'400'000, 0)};
  auto out = Prune(plan);
  EXPECT_EQ(out.retention.jobs, 1);
  EXPECT_EQ(test::Sql(url_, "SELECT log_bytes FROM build_jobs WHERE id = " + std::to_string(hit->job.id)), "0");
  auto j = jobs_->Get(hit->job.id);
  ASSERT_TRUE(j.ok());
  ASSERT_TRUE(j->log_removed.has_value());
  EXPECT_EQ(j->log_removed->job_id, producer);
  EXPECT_EQ(j->log_removed->detail, "retention of web");
  EXPECT_EQ(Stored(hit->job.id), "");
  // A later hit of the same entry says so from the start.
  auto later = jobs_->Submit(cacheable, kWho);
  ASSERT_TRUE(later.ok());
  ASSERT_TRUE(later->job.log_removed.has_value());
  EXPECT_EQ(later->job.log_removed->job_id, producer);
}

TEST_F(LogStoreTest, ConcurrentPassesRemoveNoMoreThanTheCapAsks) {
  std::vector<int64_t> ids;
  for (int i = 0; i < 20; ++i) ids.push_back(Ended("web", 100, std::to_string(100 - i) + " minutes"));
  queue::LogPrunePlan plan;
  plan.projects = {Rule("web", 0, 1000)};
  plan.batch_jobs = 1;
  std::atomic<bool> stop{false};
  std::atomic<int64_t> removed{0};
  std::vector<std::thread> passes;
  for (int t = 0; t < 4; ++t) {
    passes.emplace_back([&] {
      auto out = logs_->Prune(plan, stop);
      EXPECT_TRUE(out.ok()) << out.status().message();
      if (out.ok()) removed += out->project_cap.jobs;
    });
  }
  for (auto& t : passes) t.join();
  // A pass that found the lock held left the rest to the holder: one more
  // pass finishes whatever that left.
  auto last = Prune(plan);
  removed += last.project_cap.jobs;
  EXPECT_EQ(removed.load(), 10);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(jobs_->Get(ids[static_cast<size_t>(i)])->log_removed.has_value(), i < 10) << "job " << i;
  }
}

// A pass reads what is kept (and what is not counted yet), never the history:
// with 40,000 ended jobs whose logs are empty or gone, every statement of
// it is an index scan of the partial indexes, in the generic plan the pool
// runs.
TEST_F(LogStoreTest, APassReadsOnlyWhatIsKeptWhateverTheHistory) {
  test::Sql(url_, "INSERT INTO build_jobs (project_id, spec, status, finished_at, log_bytes)"
                  " SELECT 1, '{}', 'succeeded', now() - interval '1 day', 0 FROM generate_series(1, 20000)");
  test::Sql(url_, "INSERT INTO build_jobs (project_id, spec, status, finished_at, log_bytes, log_removed_at)"
                  " SELECT 1, '{}', 'failed', now() - interval '2 days', 100, now() FROM generate_series(1, 20000)");
  for (int i = 0; i < 5; ++i) Ended("web", 100, std::to_string(i + 1) + " hours");
  Prune({});  // counts them
  test::Sql(url_, "ANALYZE build_jobs");
  pqxx::connection c(url_);
  pqxx::nontransaction tx(c);
  tx.exec0("SET plan_cache_mode = force_generic_plan");
  auto plan_of = [&](const std::string& name, const std::string& types, const std::string& args) {
    tx.exec0("PREPARE " + name + types + " AS " + queue::LogPruneSql(name));
    std::string plan;
    for (const auto& row : tx.exec("EXPLAIN EXECUTE " + name + args)) plan += row[0].as<std::string>() + "\n";
    return plan;
  };
  const std::string rules = R"('[{"name": "web", "ms": 60000, "max_bytes": 100, "why": "x"}]')";
  for (const auto& [name, index, plan] :
       {std::tuple{"log_count", "build_jobs_log_uncounted", plan_of("log_count", "(int)", "(1000)")},
        std::tuple{"log_past_retention", "build_jobs_log_kept",
                   plan_of("log_past_retention", "(jsonb, int)", "(" + rules + ", 500)")},
        std::tuple{"log_over_project_cap", "build_jobs_log_kept",
                   plan_of("log_over_project_cap", "(jsonb, int)", "(" + rules + ", 500)")},
        std::tuple{"log_over_total_cap", "build_jobs_log_kept_age",
                   plan_of("log_over_total_cap", "(bigint, int, text)", "(100, 500, 'x')")}}) {
    EXPECT_NE(plan.find(index), std::string::npos) << name << ":\n" << plan;
    EXPECT_EQ(plan.find("Seq Scan on build_jobs"), std::string::npos) << name << ":\n" << plan;
  }
}

// Another controller's pass holds the lock: this one removes nothing, says
// it stopped for that, and the next pass does the work.
TEST_F(LogStoreTest, APassLeavesTheWorkToAnotherControllerHoldingTheLock) {
  int64_t id = Ended("web", 100, "2 hours");
  queue::LogPrunePlan plan;
  plan.projects = {Rule("web", 60'000, 0)};
  {
    pqxx::connection other(url_);
    pqxx::work holder(other);
    holder.exec("SELECT pg_advisory_xact_lock(" + std::to_string(0x6b696c6e6c6f6773) + ")");  // "kilnlogs"
    auto out = Prune(plan);
    EXPECT_TRUE(out.busy);
    EXPECT_EQ(out.counted, 1) << "counting needs no lock";
    EXPECT_EQ(out.retention.jobs, 0);
    EXPECT_FALSE(jobs_->Get(id)->log_removed.has_value());
  }  // rolled back: the lock is free
  auto out = Prune(plan);
  EXPECT_FALSE(out.busy);
  EXPECT_EQ(out.retention.jobs, 1);
  EXPECT_TRUE(jobs_->Get(id)->log_removed.has_value());
}

}  // namespace
}  // namespace kiln
