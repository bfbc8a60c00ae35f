// The worker's ledger of its jobs: admission, cancels, and final reports
// kept until the controller acknowledges them, named again at every
// registration.

#include <gtest/gtest.h>

#include "worker/ledger.h"

namespace kiln::worker {
namespace {

using std::chrono::milliseconds;
using Ref = std::pair<int64_t, int>;

v1::JobUpdate Final(int64_t job_id, int attempt) {
  v1::JobUpdate u;
  u.set_job_id(job_id);
  u.set_attempt(attempt);
  u.set_status(v1::SUCCEEDED);
  return u;
}

TEST(JobLedger, AdmitsUpToItsSlots) {
  JobLedger l;
  auto a = l.Admit(1, 1, /*slots=*/2, /*draining=*/false);
  auto b = l.Admit(2, 1, 2, false);
  ASSERT_NE(a.job, nullptr);
  ASSERT_NE(b.job, nullptr);
  EXPECT_EQ(a.job->id, 1);
  EXPECT_EQ(a.job->attempt, 1);
  EXPECT_TRUE(a.refuse.empty());
  auto c = l.Admit(3, 1, 2, false);
  EXPECT_EQ(c.job, nullptr);
  EXPECT_EQ(c.refuse, "the worker has no free slot");
  EXPECT_EQ(l.running(), 2u);
}

TEST(JobLedger, RefusesWhileDraining) {
  JobLedger l;
  auto a = l.Admit(1, 1, 4, /*draining=*/true);
  EXPECT_EQ(a.job, nullptr);
  EXPECT_EQ(a.refuse, "the worker is draining");
  EXPECT_EQ(l.running(), 0u);
}

// The attempt's run ended cancelled, its report kept until acknowledged.
void Stopped(JobLedger& l, int64_t job, int attempt) {
  v1::JobUpdate u;
  u.set_job_id(job);
  u.set_attempt(attempt);
  u.set_status(v1::CANCELLED);
  l.Finish(u, /*ran_here=*/true);
}

TEST(JobLedger, IgnoresARepeatAndStopsAnOlderAttempt) {
  JobLedger l;
  auto first = l.Admit(1, 2, 4, false);
  ASSERT_NE(first.job, nullptr);
  auto repeat = l.Admit(1, 2, 4, false);
  EXPECT_EQ(repeat.job, nullptr);
  EXPECT_TRUE(repeat.refuse.empty()) << "a repeat is neither run nor handed back";
  auto older = l.Admit(1, 1, 4, false);
  EXPECT_EQ(older.job, nullptr);
  EXPECT_TRUE(older.refuse.empty());
  EXPECT_FALSE(first.job->cancel);

  v1::Assign wire;
  wire.set_job_id(1);
  wire.set_attempt(3);
  auto newer = l.Admit(1, 3, 4, false, &wire);
  EXPECT_EQ(newer.job, nullptr);
  EXPECT_EQ(newer.refuse, "an older attempt of the job is still stopping here");
  EXPECT_TRUE(first.job->cancel) << "the newer attempt stops the older one";
  EXPECT_TRUE(newer.older_stopping) << "the newer attempt waits for the older one's slot";
  EXPECT_EQ(l.Snapshot().running, (std::vector<Ref>{{1, 3}})) << "a registration names the attempt the job is now";

  // The older attempt stops: its run's thread takes the successor.
  Stopped(l, 1, 2);
  auto next = l.TakeSuccessor(1);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->attempt(), 3);
  EXPECT_FALSE(l.TakeSuccessor(1).has_value()) << "taken once";
  auto again = l.Admit(1, 3, 4, false, &*next);
  ASSERT_NE(again.job, nullptr) << again.refuse;
  EXPECT_EQ(again.job->attempt, 3);
  EXPECT_FALSE(again.job->cancel);
}

// A cancel of the newer attempt that came before its assignment is kept
// while it waits for the older one, and cancels it when it starts.
TEST(JobLedger, ACancelOfAWaitingSuccessorIsKept) {
  JobLedger l;
  auto first = l.Admit(7, 1, 4, false);
  ASSERT_NE(first.job, nullptr);
  EXPECT_EQ(l.Cancel(7, 2), JobLedger::CancelResult::kRemembered);
  v1::Assign wire;
  wire.set_job_id(7);
  wire.set_attempt(2);
  EXPECT_TRUE(l.Admit(7, 2, 4, false, &wire).older_stopping);
  Stopped(l, 7, 1);
  auto next = l.TakeSuccessor(7);
  ASSERT_TRUE(next.has_value());
  auto started = l.Admit(7, 2, 4, false, &*next);
  ASSERT_NE(started.job, nullptr);
  EXPECT_TRUE(started.job->cancel) << "the cancel that overtook the assignment was lost";
}

TEST(JobLedger, CancelsARunningAttemptOnly) {
  JobLedger l;
  auto a = l.Admit(1, 2, 4, false);
  ASSERT_NE(a.job, nullptr);
  // Another attempt's cancel does not touch this one (it is remembered).
  EXPECT_EQ(l.Cancel(1, 1), JobLedger::CancelResult::kRemembered);
  EXPECT_FALSE(a.job->cancel);
  EXPECT_EQ(l.Cancel(1, 2), JobLedger::CancelResult::kCancelled);
  EXPECT_TRUE(a.job->cancel);
}

TEST(JobLedger, ACancelThatOvertookItsAssignmentCancelsIt) {
  JobLedger l;
  EXPECT_EQ(l.Cancel(5, 1), JobLedger::CancelResult::kRemembered);
  auto a = l.Admit(5, 1, 4, false);
  ASSERT_NE(a.job, nullptr);
  EXPECT_TRUE(a.job->cancel);
  // Used once: the next attempt starts uncancelled.
  l.Finish(Final(5, 1), /*ran_here=*/true);
  l.RunEnded();
  auto b = l.Admit(5, 2, 4, false);
  ASSERT_NE(b.job, nullptr);
  EXPECT_FALSE(b.job->cancel);
}

TEST(JobLedger, ACancelAfterTheFinalReportIsIgnored) {
  JobLedger l;
  ASSERT_NE(l.Admit(1, 1, 4, false).job, nullptr);
  l.Finish(Final(1, 1), true);
  EXPECT_EQ(l.Cancel(1, 1), JobLedger::CancelResult::kIgnored);
  // Not remembered: a repeat of the assignment would otherwise start cancelled.
  l.Ack(1, 1);
  l.RunEnded();
  auto again = l.Admit(1, 1, 4, false);
  ASSERT_NE(again.job, nullptr);
  EXPECT_FALSE(again.job->cancel);
}

TEST(JobLedger, KeepsFinalReportsUntilAckedAndNamesThemAtEveryRegistration) {
  JobLedger l;
  auto a = l.Admit(1, 1, 4, false);
  auto b = l.Admit(2, 1, 4, false);
  ASSERT_NE(a.job, nullptr);
  ASSERT_NE(b.job, nullptr);
  l.Finish(Final(1, 1), /*ran_here=*/true);
  EXPECT_EQ(l.running(), 1u) << "the slot is free with the report";
  EXPECT_EQ(l.unacked(), 1u);

  // A registration (a reconnect) names the running job and the reported
  // one, each once, and has the report to send again.
  for (int reconnect = 0; reconnect < 2; ++reconnect) {
    JobLedger::Held h = l.Snapshot();
    EXPECT_EQ(h.running, (std::vector<Ref>{{2, 1}, {1, 1}}));
    ASSERT_EQ(h.reports.size(), 1u);
    EXPECT_EQ(h.reports[0].job_id(), 1);
    EXPECT_EQ(h.reports[0].status(), v1::SUCCEEDED);
  }
  // A later report for the same attempt replaces the kept one.
  v1::JobUpdate failed = Final(1, 1);
  failed.set_status(v1::FAILED);
  l.Finish(failed, false);
  ASSERT_EQ(l.Snapshot().reports.size(), 1u);
  EXPECT_EQ(l.Snapshot().reports[0].status(), v1::FAILED);

  // An ack of another attempt leaves it; its own ack ends it.
  l.Ack(1, 2);
  EXPECT_EQ(l.unacked(), 1u);
  l.Ack(1, 1);
  EXPECT_EQ(l.unacked(), 0u);
  JobLedger::Held h = l.Snapshot();
  EXPECT_EQ(h.running, (std::vector<Ref>{{2, 1}}));
  EXPECT_TRUE(h.reports.empty());
}

TEST(JobLedger, AHandBackIsKeptUntilAckedWithoutTouchingRunningJobs) {
  JobLedger l;
  auto a = l.Admit(1, 1, 4, false);
  ASSERT_NE(a.job, nullptr);
  l.Finish(Final(9, 1), /*ran_here=*/false);  // e.g. a refused assignment handed back
  EXPECT_EQ(l.running(), 1u);
  EXPECT_EQ(l.unacked(), 1u);
}

TEST(JobLedger, IsIdleOnlyWhenNoJobRunsAndEveryRunEnded) {
  JobLedger l;
  auto a = l.Admit(1, 1, 4, false);
  ASSERT_NE(a.job, nullptr);
  EXPECT_FALSE(l.WaitIdle(milliseconds(20)));
  l.Finish(Final(1, 1), true);
  EXPECT_FALSE(l.WaitIdle(milliseconds(20))) << "its thread still runs";
  std::thread t([&] {
    std::this_thread::sleep_for(milliseconds(50));
    l.RunEnded();
  });
  EXPECT_TRUE(l.WaitIdle(milliseconds(5000)));
  t.join();
}

TEST(JobLedger, HandsBackEveryRunningJob) {
  JobLedger l;
  auto a = l.Admit(1, 1, 4, false);
  auto b = l.Admit(2, 1, 4, false);
  EXPECT_EQ(l.HandBackAll(), 2u);
  EXPECT_TRUE(a.job->hand_back);
  EXPECT_TRUE(b.job->hand_back);
}

TEST(JobLedger, WaitsForAcks) {
  JobLedger l;
  EXPECT_TRUE(l.WaitAcked(milliseconds(0)));
  l.Finish(Final(1, 1), false);
  EXPECT_FALSE(l.WaitAcked(milliseconds(20)));
  std::thread t([&] {
    std::this_thread::sleep_for(milliseconds(50));
    l.Ack(1, 1);
  });
  EXPECT_TRUE(l.WaitAcked(milliseconds(5000)));
  t.join();
}

}  // namespace
}  // namespace kiln::worker
