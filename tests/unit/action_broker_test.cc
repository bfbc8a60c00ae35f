// The ActionBroker's scheduling, with workers whose streams are sinks: fair
// share between projects, retries when a worker goes, answers only from the
// worker that holds the action, and an error in time when no slot comes.

#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "controller/actions.h"
#include "controller/sessions.h"

namespace kiln::controller {
namespace {

using namespace std::chrono_literals;

// What the broker sent to one worker, in order.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<v1::RunAction> runs;
  std::shared_ptr<Session> session;

  explicit Inbox(const std::string& id) {
    session = std::make_shared<Session>(id, id + "-s", 1, [this](const v1::ControllerMessage& m) {
      std::lock_guard g(mu);
      if (m.has_run_action()) runs.push_back(m.run_action());
      cv.notify_all();
      return true;
    });
  }
  // The next action sent here (waits up to 10 s).
  std::optional<v1::RunAction> Next() {
    std::unique_lock lk(mu);
    if (!cv.wait_for(lk, 10s, [&] { return !runs.empty(); })) return std::nullopt;
    auto r = runs.front();
    runs.pop_front();
    return r;
  }
};

v1::Action Compile(const std::string& name) {
  v1::Action a;
  a.set_image("sha256:" + std::string(64, 'a'));
  a.add_argv("/usr/bin/cc");
  a.add_argv(name);
  return a;
}

// Waits (up to 10 s) until `n` actions of cluster c wait for a slot.
bool QueuedReaches(ActionBroker& b, int n) {
  auto until = std::chrono::steady_clock::now() + 10s;
  while (b.Queued("c") != n) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

v1::ActionDone Ok(const v1::RunAction& r, const std::string& claimed_worker = "") {
  v1::ActionDone d;
  d.set_action_id(r.action_id());
  d.mutable_result()->set_exit_code(0);
  d.mutable_result()->set_stdout("ran " + r.action().argv(1));
  d.mutable_result()->set_worker_id(claimed_worker);
  return d;
}

TEST(ActionBroker, TwoBackloggedProjectsShareTheSlotsWhateverTheirQueues) {
  ActionBroker broker;
  Inbox w1("w1"), w2("w2");
  broker.WorkerUp(w1.session, "c", 1);
  broker.WorkerUp(w2.session, "c", 1);
  // Project big queues 16 actions before small queues 4: first come, first
  // served would give small nothing until big's were all done.
  std::vector<std::thread> callers;
  std::atomic<int> answered{0};
  auto call = [&](const std::string& project, int i) {
    callers.emplace_back([&, project, i] {
      auto r = broker.Execute("w0", project, "c", Compile(project + std::to_string(i)), ActionBroker::Clock::now() + 60s);
      EXPECT_EQ(r.error(), "");
      answered++;
    });
  };
  for (int i = 0; i < 16; ++i) call("big", i);
  ASSERT_TRUE(QueuedReaches(broker, 14));
  for (int i = 0; i < 4; ++i) call("small", i);
  ASSERT_TRUE(QueuedReaches(broker, 18));
  // The workers answer one action at a time, in turn: each answer frees
  // the slot the next dispatch takes.
  std::vector<std::string> order;
  for (int n = 0; n < 20; ++n) {
    Inbox& w = n % 2 == 0 ? w1 : w2;
    auto r = w.Next();
    ASSERT_TRUE(r.has_value()) << "no action reached worker " << w.session->worker_id;
    order.push_back(r->project());
    EXPECT_TRUE(broker.Done(w.session->worker_id, Ok(*r)));
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(answered, 20);
  // The first two went out before small queued; the next eight were handed
  // out while both projects had actions waiting: each gets at least 40%.
  int small = 0;
  for (int n = 2; n < 10; ++n) small += order[n] == "small";
  EXPECT_GE(small * 10, 8 * 4) << "small got " << small << " of 8 slots";
  EXPECT_GE((8 - small) * 10, 8 * 4) << "big got " << 8 - small << " of 8 slots";
}

TEST(ActionBroker, SlotsWhileBothWaitGoHalfAndHalf) {
  ActionBroker broker;
  Inbox w1("w1");
  broker.WorkerUp(w1.session, "c", 1);
  std::vector<std::thread> callers;
  for (int i = 0; i < 8; ++i)
    callers.emplace_back([&, i] { broker.Execute("w0", "big", "c", Compile("b" + std::to_string(i)), ActionBroker::Clock::now() + 60s); });
  auto first = w1.Next();  // big's first holds the one slot while the rest queue
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(QueuedReaches(broker, 7));
  for (int i = 0; i < 2; ++i)
    callers.emplace_back([&, i] { broker.Execute("w0", "small", "c", Compile("s" + std::to_string(i)), ActionBroker::Clock::now() + 60s); });
  ASSERT_TRUE(QueuedReaches(broker, 9));
  EXPECT_TRUE(broker.Done("w1", Ok(*first)));
  // Both wait now: the freed slot goes to small (none running), then big,
  // then small again, whatever the order they queued in.
  std::vector<std::string> order;
  for (int n = 0; n < 9; ++n) {
    auto r = w1.Next();
    ASSERT_TRUE(r.has_value());
    order.push_back(r->project());
    EXPECT_TRUE(broker.Done("w1", Ok(*r)));
  }
  for (auto& t : callers) t.join();
  int small_in_first_four = 0;
  for (int n = 0; n < 4; ++n) small_in_first_four += order[n] == "small";
  EXPECT_EQ(small_in_first_four, 2) << "small's two actions alternate with big's, not after all of big's";
  EXPECT_EQ(order[0], "small");
}

// A build that runs one compile at a time (make -j1) spreads them over the
// helpers, not all on the first: with free slots equal, the one given an
// action least recently takes the next; the requester's own host last.
TEST(ActionBroker, OneCompileAtATimeTakesTurnsOverTheHelpers) {
  ActionBroker broker;
  Inbox home("home"), w1("w1"), w2("w2");
  broker.WorkerUp(home.session, "c", 2);
  broker.WorkerUp(w1.session, "c", 2);
  broker.WorkerUp(w2.session, "c", 2);
  std::map<std::string, int> ran;
  for (int i = 0; i < 6; ++i) {
    v1::ActionResult result;
    std::thread caller(
        [&] { result = broker.Execute("home", "p", "c", Compile("u" + std::to_string(i)), ActionBroker::Clock::now() + 60s); });
    std::optional<v1::RunAction> sent;
    std::string where;
    for (auto until = std::chrono::steady_clock::now() + 10s; !sent && std::chrono::steady_clock::now() < until;) {
      for (auto* in : {&home, &w1, &w2}) {
        std::lock_guard g(in->mu);
        if (in->runs.empty()) continue;
        sent = in->runs.front();
        in->runs.pop_front();
        where = in->session->worker_id;
        break;
      }
      if (!sent) std::this_thread::sleep_for(1ms);
    }
    ASSERT_TRUE(sent.has_value()) << "action " << i << " was sent nowhere";
    EXPECT_TRUE(broker.Done(where, Ok(*sent)));
    caller.join();
    EXPECT_EQ(result.error(), "");
    ran[where]++;
  }
  EXPECT_EQ(ran["w1"], 3) << "home " << ran["home"] << ", w2 " << ran["w2"];
  EXPECT_EQ(ran["w2"], 3);
  EXPECT_EQ(ran["home"], 0) << "the requester's host keeps its slots for make while helpers are free";
}

TEST(ActionBroker, AnActionOfAWorkerThatWentRunsOnAnotherAndOnlyItsHolderMayAnswer) {
  ActionBroker broker;
  Inbox w1("w1"), w2("w2");
  broker.WorkerUp(w1.session, "c", 1);
  v1::ActionResult result;
  std::thread caller([&] { result = broker.Execute("w0", "p", "c", Compile("x"), ActionBroker::Clock::now() + 60s); });
  auto first = w1.Next();
  ASSERT_TRUE(first.has_value());
  broker.WorkerUp(w2.session, "c", 1);
  EXPECT_FALSE(broker.Done("w2", Ok(*first))) << "w2 does not hold it";
  broker.WorkerDown(w1.session);
  auto again = w2.Next();
  ASSERT_TRUE(again.has_value()) << "the action of the worker that went was not sent to the other";
  EXPECT_EQ(again->action_id(), first->action_id());
  EXPECT_FALSE(broker.Done("w1", Ok(*first))) << "w1 gave it up with its stream";
  EXPECT_TRUE(broker.Done("w2", Ok(*again, "w1-pretending")));
  caller.join();
  EXPECT_EQ(result.error(), "");
  EXPECT_EQ(result.stdout(), "ran x");
  EXPECT_EQ(result.worker_id(), "w2") << "who ran it is who answered, not who it claims";
}

TEST(ActionBroker, NoSlotAnywhereIsAnErrorAtOnceAndABusyFarmOneInTime) {
  ActionBroker::Options o;
  o.max_queued = 300ms;
  ActionBroker broker(o);
  auto none = broker.Execute("w0", "p", "c", Compile("x"), ActionBroker::Clock::now() + 60s);
  EXPECT_NE(none.error().find("no worker of cluster c"), std::string::npos) << none.error();
  Inbox w1("w1");
  broker.WorkerUp(w1.session, "c", 1);
  std::thread hold([&] { broker.Execute("w0", "p", "c", Compile("long"), ActionBroker::Clock::now() + 60s); });
  auto running = w1.Next();
  ASSERT_TRUE(running.has_value());
  auto began = ActionBroker::Clock::now();
  auto waited = broker.Execute("w0", "p", "c", Compile("y"), ActionBroker::Clock::now() + 60s);
  EXPECT_NE(waited.error().find("no action slot was free"), std::string::npos) << waited.error();
  EXPECT_LT(ActionBroker::Clock::now() - began, 10s);
  EXPECT_TRUE(broker.Done("w1", Ok(*running)));
  hold.join();
  // A worker that cannot run it is not asked again; with no other, an error.
  std::thread refused([&] {
    auto r = broker.Execute("w0", "p", "c", Compile("z"), ActionBroker::Clock::now() + 60s);
    EXPECT_NE(r.error().find("sandbox broke"), std::string::npos) << r.error();
  });
  auto z = w1.Next();
  ASSERT_TRUE(z.has_value());
  v1::ActionDone bad;
  bad.set_action_id(z->action_id());
  bad.mutable_result()->set_error("sandbox broke");
  EXPECT_TRUE(broker.Done("w1", bad));
  refused.join();
}

TEST(ActionBroker, AWorkerTurningHealthyTakesTheQueuedActionsAtOnce) {
  ActionBroker broker;
  Inbox w1("w1"), w2("w2");
  w2.session->unhealthy = true;
  broker.WorkerUp(w1.session, "c", 1);
  broker.WorkerUp(w2.session, "c", 1);
  std::thread hold([&] { broker.Execute("w0", "p", "c", Compile("long"), ActionBroker::Clock::now() + 60s); });
  auto running = w1.Next();
  ASSERT_TRUE(running.has_value());
  v1::ActionResult waited;
  std::thread queued([&] { waited = broker.Execute("w0", "p", "c", Compile("y"), ActionBroker::Clock::now() + 60s); });
  ASSERT_TRUE(QueuedReaches(broker, 1)) << "the unhealthy worker's slot took it";
  // The health checker's verdict changes (controller/worker_service.cc) and it wakes the broker.
  w2.session->unhealthy = false;
  broker.Wake();
  auto y = w2.Next();
  ASSERT_TRUE(y.has_value()) << "the queued action waited for an unrelated event";
  EXPECT_EQ(y->action().argv(1), "y");
  EXPECT_TRUE(broker.Done("w2", Ok(*y)));
  EXPECT_TRUE(broker.Done("w1", Ok(*running)));
  queued.join();
  hold.join();
  EXPECT_EQ(waited.stdout(), "ran y");
}

}  // namespace
}  // namespace kiln::controller
