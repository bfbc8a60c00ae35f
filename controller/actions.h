#pragma once
// Remote actions at the controller (docs/architecture.md, "Remote
// actions"): a job's worker asks the farm to run an action (ExecuteAction);
// the broker queues it in this controller's memory, per cluster and
// project, and hands it to a connected worker of the job's cluster with a
// free action slot, the project with the fewest actions running first (fair
// share). An action lost with its worker goes to another at once; its
// requester gets the result, or an error in time to run the work itself.
// Actions have no rows: the job is the durable part, and a requester whose
// controller dies compiles locally.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "controller/metrics.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::controller {

class Session;

class ActionBroker {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    int max_tries = 3;                                     // workers tried before the requester gets an error
    std::chrono::milliseconds max_queued{30'000};          // waiting for a slot longer than this: an error
  };
  ActionBroker();
  explicit ActionBroker(Options o, ActionMetrics m = {});
  ~ActionBroker();

  // A worker's stream registered with `slots` action slots in `cluster`.
  void WorkerUp(const std::shared_ptr<Session>& s, const std::string& cluster, int slots);
  // Its stream closed: the actions it ran go to other workers now.
  void WorkerDown(const std::shared_ptr<Session>& s);
  // A worker's slots may take actions again (it turned healthy): queued
  // actions are handed out now, not at the next unrelated event.
  void Wake();

  // Runs `a` for a job of `project` whose worker `requester` (in `cluster`)
  // asks; blocks until a worker answered, or `deadline` passed, or no
  // worker can take it (ActionResult.error says which).
  v1::ActionResult Execute(const std::string& requester, const std::string& project, const std::string& cluster,
                           const v1::Action& a, Clock::time_point deadline);

  // A worker's answer; ignored (false) unless that worker runs that action.
  bool Done(const std::string& worker_id, const v1::ActionDone& d);

  // Actions of `cluster` waiting for a slot here.
  int Queued(const std::string& cluster);
  // Action slots of the workers of `cluster` connected here (draining and
  // unhealthy ones not counted).
  int Slots(const std::string& cluster);

  // Of `hashes`, those that are inputs of actions worker `worker_id` runs
  // now, added to `out` (it may read them from CAS).
  void LentTo(const std::string& worker_id, const std::vector<std::string>& hashes,
              std::unordered_set<std::string>& out);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::controller
