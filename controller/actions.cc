#include "controller/actions.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>

#include "common/util.h"
#include "controller/sessions.h"

namespace kiln::controller {
namespace {

using Clock = ActionBroker::Clock;

struct Pending {
  std::string id, project, cluster, requester;
  v1::ControllerMessage msg;         // the RunAction
  std::vector<std::string> hashes;   // its inputs: lent to the worker that runs it
  int tries = 0;
  std::set<std::string> refused;     // workers that could not run it
  std::string last_error;
  std::shared_ptr<Session> session;  // running there; null while queued
  bool finished = false;
  v1::ActionResult result;
  std::string outcome;               // kiln_actions_finished_total's, once finished
  Clock::time_point queued_at;
};

struct WorkerSlots {
  std::shared_ptr<Session> session;
  std::string cluster;
  int slots = 0;
  int busy = 0;
  uint64_t last = 0;  // when it was last given an action (the broker's tick)
  int Free() const { return session->Available() ? slots - busy : 0; }
};

using Sends = std::vector<std::pair<std::shared_ptr<Session>, std::shared_ptr<Pending>>>;

v1::ActionResult Error(const std::string& why) {
  v1::ActionResult r;
  r.set_error(why);
  return r;
}

}  // namespace

struct ActionBroker::Impl {
  Options o;
  ActionMetrics m;
  std::mutex mu;
  std::condition_variable cv;
  std::map<std::string, WorkerSlots> workers;  // by worker id
  // cluster -> project -> actions waiting for a slot, oldest first
  std::map<std::string, std::map<std::string, std::deque<std::shared_ptr<Pending>>>> queues;
  std::map<std::pair<std::string, std::string>, int> running;  // (cluster, project) -> actions running
  std::map<std::pair<std::string, std::string>, uint64_t> served;  // (cluster, project) -> when it last got a slot
  uint64_t tick = 0;
  std::unordered_map<std::string, std::unordered_map<std::string, int>> lent;  // worker -> input hash -> actions
  std::unordered_map<std::string, std::shared_ptr<Pending>> actions;         // by id, until their requester returns
  uint64_t next = 0;

  void Queue(const std::shared_ptr<Pending>& p, bool front) {
    p->queued_at = Clock::now();
    auto& q = queues[p->cluster][p->project];
    if (front) q.push_front(p);
    else q.push_back(p);
    Gauge(p->cluster, p->project);
  }

  // kiln_actions_queued of (cluster, project), after its queue changed.
  void Gauge(const std::string& cluster, const std::string& project) {
    size_t n = 0;
    if (auto c = queues.find(cluster); c != queues.end())
      if (auto q = c->second.find(project); q != c->second.end()) n = q->second.size();
    m.queued.With({{"cluster", cluster}, {"project", project}}).Set(static_cast<double>(n));
  }

  void Dequeue(const std::shared_ptr<Pending>& p) {
    auto c = queues.find(p->cluster);
    if (c == queues.end()) return;
    auto q = c->second.find(p->project);
    if (q == c->second.end()) return;
    for (auto it = q->second.begin(); it != q->second.end(); ++it) {
      if (*it != p) continue;
      q->second.erase(it);
      break;
    }
    if (q->second.empty()) c->second.erase(q);
    if (c->second.empty()) queues.erase(c);
    Gauge(p->cluster, p->project);
  }

  void Assign(const std::shared_ptr<Pending>& p, WorkerSlots& w) {
    m.queue_wait.With({{"cluster", p->cluster}})
        .Observe(std::chrono::duration<double>(Clock::now() - p->queued_at).count());
    m.dispatched
        .With({{"cluster", p->cluster},
               {"project", p->project},
               {"host", w.session->worker_id == p->requester ? "requester" : "other"}})
        .Inc();
    p->session = w.session;
    w.busy++;
    w.last = tick + 1;  // the tick `served` takes below
    running[{p->cluster, p->project}]++;
    served[{p->cluster, p->project}] = ++tick;
    auto& mine = lent[w.session->worker_id];
    for (const auto& h : p->hashes) mine[h]++;
  }

  // Off the worker it ran on (still in `actions` of its requester).
  void Unassign(const std::shared_ptr<Pending>& p) {
    if (!p->session) return;
    const std::string& id = p->session->worker_id;
    auto w = workers.find(id);
    if (w != workers.end() && w->second.session == p->session && w->second.busy > 0) w->second.busy--;
    auto r = running.find({p->cluster, p->project});
    if (r != running.end() && --r->second <= 0) running.erase(r);
    auto l = lent.find(id);
    if (l != lent.end()) {
      for (const auto& h : p->hashes) {
        auto it = l->second.find(h);
        if (it != l->second.end() && --it->second <= 0) l->second.erase(it);
      }
      if (l->second.empty()) lent.erase(l);
    }
    p->session.reset();
  }

  // `queued`: it may still wait in its queue (never when Dispatch, which
  // iterates the queues, took it off).
  void Finish(const std::shared_ptr<Pending>& p, const std::string& outcome, v1::ActionResult r, bool queued = true) {
    Unassign(p);
    if (queued) Dequeue(p);
    p->finished = true;
    p->outcome = outcome;
    p->result = std::move(r);
    cv.notify_all();
  }

  // The action goes to another worker, or fails after max_tries.
  void Retry(const std::shared_ptr<Pending>& p, const std::string& why) {
    Unassign(p);
    p->last_error = why;
    if (++p->tries >= o.max_tries) {
      Finish(p, "failed", Error("the farm could not run the action (" + std::to_string(p->tries) + " tries); last: " + why));
      return;
    }
    Queue(p, /*front=*/true);
  }

  // Hands queued actions to free slots, the project with the fewest
  // running first; returns what to send (outside the lock).
  Sends Dispatch() {
    Sends out;
    for (auto c = queues.begin(); c != queues.end();) {
      const std::string cluster = c->first;
      for (;;) {
        // The project with the fewest actions running in the cluster; on a
        // tie, the one served least recently.
        std::deque<std::shared_ptr<Pending>>* best = nullptr;
        std::pair<int, uint64_t> fewest;
        for (auto& [project, q] : c->second) {
          if (q.empty()) continue;
          auto r = running.find({cluster, project});
          auto t = served.find({cluster, project});
          std::pair<int, uint64_t> key{r == running.end() ? 0 : r->second, t == served.end() ? 0 : t->second};
          if (!best || key < fewest) best = &q, fewest = key;
        }
        if (!best) break;
        auto p = best->front();
        // The worker with the most free slots that has not refused it; on a
        // tie, another than the requester (its host runs make and links),
        // then the one that was given an action least recently: a build
        // that runs fewer compiles than there are slots spreads them over
        // the hosts instead of piling them on the first.
        auto better = [&](const WorkerSlots& a, const WorkerSlots& b) {
          if (a.Free() != b.Free()) return a.Free() > b.Free();
          const bool a_home = a.session->worker_id == p->requester, b_home = b.session->worker_id == p->requester;
          if (a_home != b_home) return b_home;
          return a.last < b.last;
        };
        WorkerSlots* pick = nullptr;
        bool any_free = false;
        for (auto& [id, w] : workers) {
          if (w.cluster != cluster || w.Free() <= 0) continue;
          any_free = true;
          if (p->refused.count(id)) continue;
          if (!pick || better(w, *pick)) pick = &w;
        }
        if (!any_free) break;
        best->pop_front();
        Gauge(cluster, p->project);
        if (!pick) {
          Finish(p, "failed", Error("every worker with a free slot failed to run the action; last: " + p->last_error),
                 /*queued=*/false);
          continue;
        }
        Assign(p, *pick);
        out.emplace_back(pick->session, p);
      }
      // Drop emptied queues.
      for (auto q = c->second.begin(); q != c->second.end();) q = q->second.empty() ? c->second.erase(q) : std::next(q);
      c = c->second.empty() ? queues.erase(c) : std::next(c);
    }
    return out;
  }

  // Sends the assignments (never under the lock: a stream write may
  // block); an action whose stream closed goes to another worker.
  void Send(Sends sends) {
    while (!sends.empty()) {
      Sends more;
      for (const auto& [s, p] : sends) {
        if (s->Send(p->msg)) continue;
        std::lock_guard g(mu);
        if (p->session != s || p->finished) continue;
        Retry(p, "the stream to worker " + s->worker_id + " closed");
        auto again = Dispatch();
        more.insert(more.end(), again.begin(), again.end());
      }
      sends = std::move(more);
    }
  }
};

ActionBroker::ActionBroker() : ActionBroker(Options{}) {}
ActionBroker::ActionBroker(Options o, ActionMetrics m) : impl_(std::make_unique<Impl>()) {
  impl_->o = o;
  impl_->m = std::move(m);
}
ActionBroker::~ActionBroker() = default;

void ActionBroker::WorkerUp(const std::shared_ptr<Session>& s, const std::string& cluster, int slots) {
  Sends sends;
  {
    std::lock_guard g(impl_->mu);
    if (slots <= 0) {
      impl_->workers.erase(s->worker_id);
      return;
    }
    impl_->workers[s->worker_id] = {s, cluster, slots, 0};
    sends = impl_->Dispatch();
  }
  impl_->Send(sends);
}

void ActionBroker::Wake() {
  Sends sends;
  {
    std::lock_guard g(impl_->mu);
    sends = impl_->Dispatch();
  }
  impl_->Send(sends);
}

void ActionBroker::WorkerDown(const std::shared_ptr<Session>& s) {
  Sends sends;
  {
    std::lock_guard g(impl_->mu);
    auto& i = *impl_;
    auto w = i.workers.find(s->worker_id);
    if (w != i.workers.end() && w->second.session == s) i.workers.erase(w);
    // What it ran goes to other workers at once.
    for (auto& [_, p] : i.actions)
      if (p->session == s && !p->finished) i.Retry(p, "worker " + s->worker_id + " went away");
    sends = i.Dispatch();
  }
  impl_->Send(sends);
}

bool ActionBroker::Done(const std::string& worker_id, const v1::ActionDone& d) {
  Sends sends;
  {
    std::lock_guard g(impl_->mu);
    auto& i = *impl_;
    auto it = i.actions.find(d.action_id());
    if (it == i.actions.end() || !it->second->session || it->second->session->worker_id != worker_id ||
        it->second->finished)
      return false;
    auto p = it->second;
    if (!d.result().error().empty()) {
      // It could not run it (no slot after all, its sandbox failed): another worker may.
      p->refused.insert(worker_id);
      i.Retry(p, d.result().error());
    } else {
      v1::ActionResult r = d.result();
      r.set_worker_id(worker_id);  // who ran it is who answered, whatever it says
      i.Finish(p, "ran", std::move(r));
    }
    sends = i.Dispatch();
  }
  impl_->Send(sends);
  return true;
}

v1::ActionResult ActionBroker::Execute(const std::string& requester, const std::string& project,
                                       const std::string& cluster, const v1::Action& a, Clock::time_point deadline) {
  auto& i = *impl_;
  auto p = std::make_shared<Pending>();
  p->project = project;
  p->cluster = cluster;
  p->requester = requester;
  for (const auto& in : a.inputs()) p->hashes.push_back(in.digest().hash());
  Sends sends;
  {
    std::lock_guard g(i.mu);
    bool any = false;  // (only workers with slots are listed)
    for (const auto& [_, w] : i.workers) any |= w.cluster == cluster;
    if (!any) {
      i.m.finished.With({{"cluster", cluster}, {"outcome", "no_worker"}}).Inc();
      return Error("no worker of cluster " + cluster + " connected to this controller runs remote actions");
    }
    p->id = std::to_string(++i.next) + "-" + RandomHex(4);
    auto* run = p->msg.mutable_run_action();
    run->set_action_id(p->id);
    run->set_project(project);
    *run->mutable_action() = a;
    i.actions[p->id] = p;
    i.Queue(p, /*front=*/false);
    sends = i.Dispatch();
  }
  i.Send(sends);
  const auto began = Clock::now();
  std::unique_lock lk(i.mu);
  for (;;) {
    if (p->finished) break;
    auto now = Clock::now();
    const bool waiting = !p->session;
    if (now >= deadline || (waiting && now - p->queued_at >= i.o.max_queued)) {
      std::string why = now >= deadline ? "the action's deadline passed" + std::string(waiting ? " before a slot was free" : " while it ran")
                                        : "no action slot was free in cluster " + cluster + " for " +
                                              FormatDuration(i.o.max_queued.count());
      i.Finish(p, "expired", Error(why));
      break;
    }
    auto until = waiting ? std::min(deadline, p->queued_at + i.o.max_queued) : deadline;
    i.cv.wait_until(lk, until);
  }
  i.actions.erase(p->id);
  i.m.finished.With({{"cluster", cluster}, {"outcome", p->outcome}}).Inc();
  v1::ActionResult r = std::move(p->result);
  if (r.error().empty()) {
    r.set_queued_ms(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began).count() - r.run_ms()));
    i.m.overhead.With({{"cluster", cluster}}).Observe(static_cast<double>(r.queued_ms()) / 1000.0);
  }
  return r;
}

int ActionBroker::Queued(const std::string& cluster) {
  std::lock_guard g(impl_->mu);
  int n = 0;
  auto c = impl_->queues.find(cluster);
  if (c != impl_->queues.end())
    for (const auto& [_, q] : c->second) n += static_cast<int>(q.size());
  return n;
}

int ActionBroker::Slots(const std::string& cluster) {
  std::lock_guard g(impl_->mu);
  int n = 0;
  for (const auto& [_, w] : impl_->workers)
    if (w.cluster == cluster && w.session->Available()) n += w.slots;
  return n;
}

void ActionBroker::LentTo(const std::string& worker_id, const std::vector<std::string>& hashes,
                          std::unordered_set<std::string>& out) {
  std::lock_guard g(impl_->mu);
  auto l = impl_->lent.find(worker_id);
  if (l == impl_->lent.end()) return;
  for (const auto& h : hashes)
    if (l->second.count(h)) out.insert(h);
}


}  // namespace kiln::controller
