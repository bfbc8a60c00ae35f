// The outbox: messages go to the stream in order, wait for the next
// connection while there is none, and logs are capped while they wait.

#include <gtest/gtest.h>

#include <vector>

#include "worker/outbox.h"

namespace kiln::worker {
namespace {

v1::WorkerMessage Log(int64_t offset, const std::string& data) {
  v1::WorkerMessage m;
  m.mutable_log()->set_job_id(1);
  m.mutable_log()->set_attempt(1);
  m.mutable_log()->set_offset(offset);
  m.mutable_log()->set_data(data);
  return m;
}

v1::WorkerMessage Final(int64_t job_id) {
  v1::WorkerMessage m;
  m.mutable_update()->set_job_id(job_id);
  m.mutable_update()->set_attempt(1);
  m.mutable_update()->set_status(v1::SUCCEEDED);
  return m;
}

v1::WorkerMessage Heartbeat() {
  v1::WorkerMessage m;
  m.mutable_heartbeat()->set_running(1);
  return m;
}

// A stream that records what was written and breaks after `fail_after`
// writes (negative: never).
struct FakeStream {
  std::vector<v1::WorkerMessage> written;
  int fail_after = -1;
  Outbox::Writer writer() {
    return [this](const v1::WorkerMessage& m) {
      if (fail_after >= 0 && static_cast<int>(written.size()) >= fail_after) return false;
      written.push_back(m);
      return true;
    };
  }
};

TEST(Outbox, WritesAtOnceWhenConnected) {
  Outbox o;
  FakeStream s;
  o.Attach(s.writer());
  o.Send(Log(0, "a"));
  ASSERT_EQ(s.written.size(), 1u);
  EXPECT_EQ(s.written[0].log().data(), "a");
  EXPECT_EQ(o.queued(), 0u);
}

TEST(Outbox, KeepsMessagesInOrderForTheNextConnection) {
  Outbox o;
  o.Send(Log(0, "a"));
  o.Send(Heartbeat(), /*keep=*/false);  // a heartbeat is not worth keeping
  o.Send(Final(1));
  EXPECT_EQ(o.queued(), 2u);
  EXPECT_FALSE(o.Flush()) << "nothing to write to yet";

  FakeStream s;
  o.Attach(s.writer());
  // Nothing overtakes what waits: a new message queues behind it.
  o.Send(Log(1, "b"));
  EXPECT_TRUE(s.written.empty());
  EXPECT_TRUE(o.Flush());
  ASSERT_EQ(s.written.size(), 3u);
  EXPECT_EQ(s.written[0].log().data(), "a");
  EXPECT_EQ(s.written[1].update().job_id(), 1);
  EXPECT_EQ(s.written[2].log().data(), "b");
  EXPECT_EQ(o.queued(), 0u);
  EXPECT_EQ(o.queued_bytes(), 0u);
}

TEST(Outbox, AFailedWriteKeepsTheRestForTheNextConnection) {
  Outbox o;
  o.Send(Log(0, "a"));
  o.Send(Log(1, "b"));
  o.Send(Final(1));
  FakeStream broken;
  broken.fail_after = 1;
  o.Attach(broken.writer());
  EXPECT_FALSE(o.Flush());
  ASSERT_EQ(broken.written.size(), 1u);
  EXPECT_EQ(o.queued(), 2u);
  // A message sent while the broken stream is attached is kept, not lost.
  o.Send(Final(2));
  EXPECT_EQ(o.queued(), 3u);
  o.Detach();

  FakeStream s;
  o.Attach(s.writer());
  EXPECT_TRUE(o.Flush());
  ASSERT_EQ(s.written.size(), 3u);
  EXPECT_EQ(s.written[0].log().data(), "b");
  EXPECT_EQ(s.written[1].update().job_id(), 1);
  EXPECT_EQ(s.written[2].update().job_id(), 2);
}

TEST(Outbox, DropsLogsPastItsCapButKeepsStateChanges) {
  // Room for exactly the first three chunks.
  size_t cap = 0;
  for (int i = 0; i < 3; ++i) cap += Log(i * 100, std::string(100, 'x')).ByteSizeLong();
  Outbox o(cap);
  for (int i = 0; i < 5; ++i) o.Send(Log(i * 100, std::string(100, 'x')));
  EXPECT_EQ(o.queued(), 3u) << "logs past the cap are dropped";
  o.Send(Final(1));
  o.Send(Final(2));
  EXPECT_EQ(o.queued(), 5u) << "final reports are kept past the cap";

  FakeStream s;
  o.Attach(s.writer());
  EXPECT_TRUE(o.Flush());
  ASSERT_EQ(s.written.size(), 5u);
  EXPECT_EQ(s.written[2].log().offset(), 200);
  EXPECT_EQ(s.written[3].update().job_id(), 1);
  // Emptied, the outbox takes logs again.
  o.Detach();
  o.Send(Log(500, std::string(100, 'x')));
  EXPECT_EQ(o.queued(), 1u);
}

TEST(Outbox, DetachedItWritesNothing) {
  Outbox o;
  FakeStream s;
  o.Attach(s.writer());
  o.Detach();
  o.Send(Final(1));
  EXPECT_TRUE(s.written.empty());
  EXPECT_EQ(o.queued(), 1u);
}

v1::JobUpdate Report(int64_t job_id) { return Final(job_id).update(); }

TEST(Outbox, ReplaysFinalReportsAfterWhatWaitedOnEveryConnection) {
  Outbox o;
  o.Send(Log(0, "tail of job 1"));  // sent while disconnected
  const std::vector<v1::JobUpdate> unacked = {Report(1), Report(2)};

  FakeStream s;
  o.Connect(s.writer(), unacked);
  ASSERT_EQ(s.written.size(), 3u);
  EXPECT_EQ(s.written[0].log().data(), "tail of job 1") << "logs first: a final report would fence them out";
  EXPECT_EQ(s.written[1].update().job_id(), 1);
  EXPECT_EQ(s.written[2].update().job_id(), 2);
  EXPECT_EQ(o.queued(), 0u);

  // Not acknowledged before the stream broke: the next connection sends them again.
  o.Detach();
  FakeStream again;
  o.Connect(again.writer(), unacked);
  ASSERT_EQ(again.written.size(), 2u);
  EXPECT_EQ(again.written[0].update().job_id(), 1);
  EXPECT_EQ(again.written[1].update().job_id(), 2);
}

TEST(Outbox, ReplaysNoFinalReportBeforeWhatWaitedIsSent) {
  Outbox o;
  o.Send(Log(0, "a"));
  o.Send(Log(1, "b"));
  FakeStream broken;
  broken.fail_after = 1;
  o.Connect(broken.writer(), {Report(1)});
  ASSERT_EQ(broken.written.size(), 1u);
  EXPECT_TRUE(broken.written[0].has_log());
  EXPECT_EQ(o.queued(), 1u) << "the replayed report is not queued: its keeper sends it next time";
  o.Detach();

  FakeStream s;
  o.Connect(s.writer(), {Report(1)});
  ASSERT_EQ(s.written.size(), 2u);
  EXPECT_EQ(s.written[0].log().data(), "b");
  EXPECT_EQ(s.written[1].update().job_id(), 1);
}

}  // namespace
}  // namespace kiln::worker
