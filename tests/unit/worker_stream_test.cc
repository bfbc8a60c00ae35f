// The worker's side of the controller stream, without a connection: what
// it does with each message from the controller, its reports and its
// heartbeat.

#include <gtest/gtest.h>

#include <vector>

#include "worker/stream.h"

namespace kiln::worker {
namespace {

struct Rig {
  config::WorkerConfig cfg;
  JobLedger ledger;
  Outbox outbox;
  std::atomic<bool> draining{false};
  std::vector<v1::Assign> assigned;
  std::vector<v1::WorkerMessage> written;
  std::unique_ptr<ControllerStream> stream;

  Rig() {
    ControllerStream::Deps d;
    d.cfg = &cfg;
    d.who = {"w-1", "host", "x86_64", false};
    d.ledger = &ledger;
    d.outbox = &outbox;
    d.draining = &draining;
    d.assign = [this](const v1::Assign& a) { assigned.push_back(a); };
    stream = std::make_unique<ControllerStream>(std::move(d));
  }
  void Connect() {
    outbox.Attach([this](const v1::WorkerMessage& m) {
      written.push_back(m);
      return true;
    });
  }
};

v1::JobUpdate Final(int64_t job_id, int attempt) {
  v1::JobUpdate u;
  u.set_job_id(job_id);
  u.set_attempt(attempt);
  u.set_status(v1::SUCCEEDED);
  return u;
}

TEST(ControllerStream, PassesAssignmentsOn) {
  Rig r;
  v1::ControllerMessage m;
  m.mutable_assign()->set_job_id(4);
  m.mutable_assign()->set_attempt(2);
  r.stream->Handle(m);
  ASSERT_EQ(r.assigned.size(), 1u);
  EXPECT_EQ(r.assigned[0].job_id(), 4);
  EXPECT_EQ(r.assigned[0].attempt(), 2);
}

TEST(ControllerStream, AReportIsSentAndKeptUntilItsAck) {
  Rig r;
  r.Connect();
  auto adm = r.ledger.Admit(1, 1, 4, false);
  ASSERT_NE(adm.job, nullptr);
  r.stream->Report(Final(1, 1), /*ran_here=*/true);
  ASSERT_EQ(r.written.size(), 1u);
  EXPECT_EQ(r.written[0].update().job_id(), 1);
  EXPECT_EQ(r.ledger.running(), 0u);
  EXPECT_EQ(r.ledger.unacked(), 1u);

  v1::ControllerMessage ack;
  ack.mutable_ack()->set_job_id(1);
  ack.mutable_ack()->set_attempt(2);  // another attempt's
  ack.mutable_ack()->set_applied(true);
  r.stream->Handle(ack);
  EXPECT_EQ(r.ledger.unacked(), 1u);
  ack.mutable_ack()->set_attempt(1);
  ack.mutable_ack()->set_applied(false);  // dropped as stale: acknowledged all the same
  r.stream->Handle(ack);
  EXPECT_EQ(r.ledger.unacked(), 0u);
}

TEST(ControllerStream, AReportWhileDisconnectedWaitsInTheOutbox) {
  Rig r;
  r.stream->HandBack(3, 1, "the worker is draining");
  EXPECT_EQ(r.outbox.queued(), 1u);
  EXPECT_EQ(r.ledger.unacked(), 1u);
  r.Connect();
  EXPECT_TRUE(r.outbox.Flush());
  ASSERT_EQ(r.written.size(), 1u);
  EXPECT_EQ(r.written[0].update().status(), v1::QUEUED);
  EXPECT_EQ(r.written[0].update().result().error(), "the worker is draining");
}

TEST(ControllerStream, ACancelStopsTheRunningAttempt) {
  Rig r;
  auto adm = r.ledger.Admit(5, 2, 4, false);
  ASSERT_NE(adm.job, nullptr);
  v1::ControllerMessage m;
  m.mutable_cancel()->set_job_id(5);
  m.mutable_cancel()->set_attempt(2);
  m.mutable_cancel()->set_reason("kiln cancel");
  r.stream->Handle(m);
  EXPECT_TRUE(adm.job->cancel);
}

TEST(ControllerStream, HeartbeatsSayWhatRunsAndAreNotKept) {
  Rig r;
  r.stream->Heartbeat();
  EXPECT_EQ(r.outbox.queued(), 0u) << "a heartbeat is not worth keeping";
  ASSERT_NE(r.ledger.Admit(1, 1, 4, false).job, nullptr);
  ASSERT_NE(r.ledger.Admit(2, 1, 4, false).job, nullptr);
  r.draining = true;
  r.Connect();
  r.stream->Heartbeat();
  ASSERT_EQ(r.written.size(), 1u);
  ASSERT_TRUE(r.written[0].has_heartbeat());
  EXPECT_EQ(r.written[0].heartbeat().running(), 2);
  EXPECT_TRUE(r.written[0].heartbeat().draining());
}

TEST(ControllerStream, ClosedItOpensNoSession) {
  Rig r;  // no stub: a session that tried to connect would crash
  EXPECT_FALSE(r.stream->closed());
  r.stream->Close();
  EXPECT_TRUE(r.stream->closed());
  r.stream->Session();
}

}  // namespace
}  // namespace kiln::worker
