// The registration a worker opens each connection with.

#include <gtest/gtest.h>

#include "worker/registration.h"

namespace kiln::worker {
namespace {

TEST(Registration, SaysWhatTheWorkerIsAndRuns) {
  config::WorkerConfig cfg;
  cfg.slots = 3;
  cfg.labels = {{"pool", "fast"}};
  cfg.cluster = "eu";
  cfg.allow_plain_jobs = true;
  v1::WorkspaceReport ws;
  ws.set_project("p");
  ws.set_name("main");
  v1::WorkerMessage m = Registration(cfg, {"w-1", "host", "x86_64", /*sandbox=*/true}, /*draining=*/true, {ws}, {});
  ASSERT_TRUE(m.has_register_());
  const auto& r = m.register_();
  EXPECT_EQ(r.worker_id(), "w-1");
  EXPECT_EQ(r.hostname(), "host");
  EXPECT_EQ(r.arch(), "x86_64");
  EXPECT_EQ(r.os(), "linux");
  EXPECT_EQ(r.slots(), 3);
  EXPECT_EQ(r.cluster(), "eu");
  EXPECT_EQ(r.work_dir(), "/var/lib/kiln-worker") << "absolute: what tells two workers of one host apart";
  EXPECT_TRUE(r.draining());
  EXPECT_FALSE(r.version().empty());
  EXPECT_EQ(r.labels().size(), 3u);
  EXPECT_EQ(r.labels().at("pool"), "fast");
  EXPECT_EQ(r.labels().at("sandbox"), "runc");
  EXPECT_EQ(r.labels().at("plain"), "yes");
  ASSERT_EQ(r.workspaces_size(), 1);
  EXPECT_EQ(r.workspaces(0).name(), "main");
  EXPECT_EQ(r.running_size(), 0);
}

TEST(Registration, LabelsOnlyWhatTheWorkerRuns) {
  config::WorkerConfig cfg;
  cfg.allow_plain_jobs = false;
  v1::WorkerMessage m = Registration(cfg, {"w-1", "host", "x86_64", /*sandbox=*/false}, false, {}, {});
  EXPECT_EQ(m.register_().labels().count("sandbox"), 0u);
  EXPECT_EQ(m.register_().labels().count("plain"), 0u);
  EXPECT_FALSE(m.register_().draining());
}

TEST(Registration, NamesEveryJobTheWorkerHolds) {
  // A running job and one whose final report waits for its ack.
  JobLedger ledger;
  ASSERT_NE(ledger.Admit(1, 1, 4, false).job, nullptr);
  ASSERT_NE(ledger.Admit(2, 3, 4, false).job, nullptr);
  v1::JobUpdate u;
  u.set_job_id(2);
  u.set_attempt(3);
  u.set_status(v1::SUCCEEDED);
  ledger.Finish(u, /*ran_here=*/true);
  v1::WorkerMessage m = Registration({}, {"w", "h", "a", false}, false, {}, ledger.Snapshot());
  const auto& r = m.register_();
  ASSERT_EQ(r.running_size(), 2);
  EXPECT_EQ(r.running(0).job_id(), 1);
  EXPECT_EQ(r.running(0).attempt(), 1);
  EXPECT_EQ(r.running(1).job_id(), 2);
  EXPECT_EQ(r.running(1).attempt(), 3);
}

}  // namespace
}  // namespace kiln::worker
