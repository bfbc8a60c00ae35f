// The run of one job: what it sends while it runs, its final report, and
// what it leaves behind. Plain processes only (containers are covered by
// the sandbox and compile cache integration tests).

#include <gtest/gtest.h>
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <mutex>
#include <vector>

#include "cas/client.h"
#include "harness/harness.h"
#include "worker/checkout.h"
#include "worker/job_run.h"

namespace kiln::worker {
namespace {

namespace fs = std::filesystem;

// A worker's side of a run, recording what the run sends and reports.
struct Rig {
  test::TempDir tmp;
  config::WorkerConfig cfg;
  std::unique_ptr<cas::CasClient> cas;  // never reached: no test fetches or uploads
  std::unique_ptr<Checkouts> checkouts;
  JobEnv env;
  std::mutex mu;
  std::vector<v1::WorkerMessage> sent;
  std::vector<v1::JobUpdate> finished;
  size_t sent_before_finish = 0;

  Rig() {
    cfg.work_dir = tmp.path();
    cfg.allow_plain_jobs = true;
    cas = std::make_unique<cas::CasClient>(grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()),
                                           std::chrono::seconds(1));
    env.cfg = &cfg;
    env.worker_id = "w1";
    env.cas = cas.get();
    checkouts = std::make_unique<Checkouts>(tmp.path() + "/disks", 100000, 100000);
    env.checkouts = checkouts.get();
    env.no_sandbox_why = "sandbox = none in its configuration";
    env.send = [this](const v1::WorkerMessage& m) {
      std::lock_guard g(mu);
      sent.push_back(m);
    };
    env.finish = [this](const v1::JobUpdate& u) {
      std::lock_guard g(mu);
      finished.push_back(u);
      sent_before_finish = sent.size();
    };
  }

  Assignment Job(std::vector<std::string> argv) {
    Assignment a;
    a.job_id = 7;
    a.attempt = 2;
    a.project = "p";
    a.spec.argv = std::move(argv);
    return a;
  }

  v1::JobUpdate Run(const Assignment& a, std::shared_ptr<JobState> js = nullptr) {
    if (!js) js = std::make_shared<JobState>();
    RunAssignment(env, a, js);
    EXPECT_EQ(finished.size(), 1u) << "one final report";
    return finished.empty() ? v1::JobUpdate() : finished.back();
  }

  std::string Log() const {
    std::string out;
    int64_t offset = 0;
    for (const auto& m : sent) {
      if (!m.has_log()) continue;
      EXPECT_EQ(m.log().job_id(), 7);
      EXPECT_EQ(m.log().attempt(), 2);
      EXPECT_EQ(m.log().offset(), offset) << "chunks in order, without gaps";
      offset += static_cast<int64_t>(m.log().data().size());
      out += m.log().data();
    }
    return out;
  }

  std::string JobDir() const { return tmp.path() + "/jobs/7-2"; }
};

TEST(JobRun, RunsAPlainJobAndReportsItsEnd) {
  Rig r;
  v1::JobUpdate u = r.Run(r.Job({"/bin/sh", "-c", "echo hi; pwd >marker; exit 3"}));
  EXPECT_EQ(u.job_id(), 7);
  EXPECT_EQ(u.attempt(), 2);
  EXPECT_EQ(u.status(), v1::FAILED);
  EXPECT_EQ(u.result().exit_code(), 3);
  EXPECT_GT(u.started_at_ms(), 0);
  EXPECT_GE(u.finished_at_ms(), u.started_at_ms());
  // RUNNING first, then the log; everything before the final report.
  ASSERT_FALSE(r.sent.empty());
  ASSERT_TRUE(r.sent[0].has_update());
  EXPECT_EQ(r.sent[0].update().status(), v1::RUNNING);
  EXPECT_EQ(r.sent[0].update().attempt(), 2);
  EXPECT_EQ(r.Log(), "hi\n");
  EXPECT_EQ(u.log_size(), 3);
  EXPECT_EQ(r.sent_before_finish, r.sent.size());
  EXPECT_FALSE(fs::exists(r.JobDir())) << "the job's directory goes after the report";
}

TEST(JobRun, RefusesAPlainJobWhereOnlyImagesRun) {
  Rig r;
  r.cfg.allow_plain_jobs = false;
  v1::JobUpdate u = r.Run(r.Job({"/bin/sh", "-c", "touch /tmp/should-not-run"}));
  EXPECT_EQ(u.status(), v1::FAILED);
  EXPECT_EQ(u.result().error(), "worker w1 runs only jobs with an image (kiln submit --image, or the project's "
                                "image); allow_plain_jobs is off");
  EXPECT_EQ(r.Log(), "kiln: " + u.result().error() + "\n");
  for (const auto& m : r.sent) EXPECT_FALSE(m.has_update()) << "it never ran";
}

TEST(JobRun, RefusesAnImageWithoutContainers) {
  Rig r;
  Assignment a = r.Job({"true"});
  a.spec.image = "sha256:" + std::string(64, 'f');
  v1::JobUpdate u = r.Run(a);
  EXPECT_EQ(u.status(), v1::FAILED);
  EXPECT_EQ(u.result().error(), "worker w1 cannot run containers (sandbox = none in its configuration); "
                                "the job needs image " + a.spec.image);
}

TEST(JobRun, FailsABadInputRootBeforeRunning) {
  Rig r;
  Assignment a = r.Job({"/bin/sh", "-c", "echo ran"});
  a.input_root = cas::Digest{"zz", 1};
  v1::JobUpdate u = r.Run(a);
  EXPECT_EQ(u.status(), v1::FAILED);
  EXPECT_EQ(u.result().error().rfind("cannot prepare the input tree on worker w1: ", 0), 0u) << u.result().error();
  EXPECT_EQ(r.Log(), "");
  EXPECT_FALSE(fs::exists(r.JobDir()));
}

TEST(JobRun, StopsAJobWhoseLogPassesItsLimit) {
  Rig r;
  r.cfg.max_log_bytes = 10;
  auto js = std::make_shared<JobState>();
  v1::JobUpdate u = r.Run(r.Job({"/bin/sh", "-c", "head -c 1000 /dev/zero; sleep 30"}), js);
  EXPECT_TRUE(js->log_overflow);
  EXPECT_EQ(u.status(), v1::FAILED);
  EXPECT_EQ(u.result().limit(), "log");
  EXPECT_EQ(u.result().error(), "killed: its log exceeded the limit of 10 bytes");
  EXPECT_LE(u.log_size(), 10);
}

TEST(JobRun, FailsASuccessThatLacksADeclaredOutput) {
  Rig r;
  Assignment a = r.Job({"/bin/sh", "-c", "echo made >present"});
  a.spec.outputs = {"present", "missing"};
  v1::JobUpdate u = r.Run(a);
  EXPECT_EQ(u.status(), v1::FAILED);
  EXPECT_EQ(u.result().exit_code(), 0);
  EXPECT_EQ(u.result().error(), "declared output 'missing' was not produced by the build");
  EXPECT_EQ(r.Log(), "kiln: declared output 'missing' was not produced by the build\n");
  EXPECT_FALSE(u.result().has_output_root());
}

TEST(JobRun, HandsBackAJobAskedTo) {
  Rig r;
  auto js = std::make_shared<JobState>();
  js->hand_back = true;
  v1::JobUpdate u = r.Run(r.Job({"/bin/sh", "-c", "sleep 30"}), js);
  EXPECT_EQ(u.status(), v1::QUEUED);
}

TEST(KeepWorkspace, OnlyAfterACleanEnd) {
  RunOutcome ok;
  ok.status = queue::JobStatus::kSucceeded;
  ok.result.exit_code = 0;
  EXPECT_TRUE(KeepWorkspace(Status::Ok(), ok));
  EXPECT_FALSE(KeepWorkspace(Unavailable("cas"), ok)) << "its sync failed";

  RunOutcome failed;
  failed.status = queue::JobStatus::kFailed;
  failed.result.exit_code = 2;
  EXPECT_TRUE(KeepWorkspace(Status::Ok(), failed)) << "a build that failed on its own leaves it whole";
  RunOutcome killed = failed;
  killed.result.exit_code = -1;
  killed.result.term_signal = 9;
  EXPECT_FALSE(KeepWorkspace(Status::Ok(), killed));
  RunOutcome timed_out = failed;
  timed_out.result.timed_out = true;
  EXPECT_FALSE(KeepWorkspace(Status::Ok(), timed_out));
  RunOutcome limited = failed;
  limited.result.limit = "memory";
  EXPECT_FALSE(KeepWorkspace(Status::Ok(), limited));
  RunOutcome no_exit = failed;
  no_exit.result.exit_code = -1;
  EXPECT_FALSE(KeepWorkspace(Status::Ok(), no_exit));
  for (auto st : {queue::JobStatus::kCancelled, queue::JobStatus::kQueued}) {
    RunOutcome o = ok;
    o.status = st;
    EXPECT_FALSE(KeepWorkspace(Status::Ok(), o));
  }
}

}  // namespace
}  // namespace kiln::worker
