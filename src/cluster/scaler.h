#pragma once
// The autoscaler's decision (issue 27, item 3): from what a cluster's queue
// and fleet look like, how many workers it should have. Pure: no database,
// no provider, no clock of its own; the farm's leader calls it on an
// interval (controller/autoscaler.h) and the deployer's plan carries the
// count out, draining only idle workers (cluster/plan.h).

#include <cstdint>
#include <string>

#include "cluster/spec.h"

namespace kiln::cluster {

// What the leader saw of a cluster.
struct Signals {
  int64_t queued_jobs = 0;     // queued jobs its workers may claim
  int64_t running_jobs = 0;    // jobs in setup or running on its workers
  int64_t queued_actions = 0;  // remote actions waiting for a slot
  int64_t oldest_wait_ms = 0;  // how long the oldest queued job has waited; 0: none queued
  int64_t slots = 0;           // slots of its connected healthy workers
  int serving = 0;             // instances that count toward the fleet (cluster/plan.h)
};

struct Decision {
  enum class Action { kScaleUp, kScaleDown, kHold, kNone };
  Action action = Action::kNone;  // kNone: nothing to change, nothing held back
  int previous = 0;               // the desired count before
  int desired = 0;                // after (within the spec's min..max)
  int wanted = 0;                 // what the load asks for, before cooldowns and the step
  std::string reason;
};
const char* ActionName(Decision::Action a);  // scale_up, scale_down, hold, none

// The desired worker count of cluster `spec`, changed from `previous` (the
// last decision's, or the serving count when there is none):
// - the load is queued and running jobs and queued actions; one worker
//   carries slots_per_worker × jobs_per_slot of it, so it asks for
//   ceil(load / that) workers;
// - queued jobs waiting longer than target_queue_wait_ms ask for one
//   worker more than previous, whatever the load says;
// - within min..max (outside them: back inside at once, no cooldown);
// - up at most scale_up_step at a time, and not before scale_up_cooldown
//   after the last change (`last_change_ms`, 0: never); down not before
//   scale_down_cooldown. Down is a count only: the plan drains idle
//   workers, never a busy one, and only after the scale-in delay.
Decision Decide(const Spec& spec, int previous, const Signals& seen, int64_t last_change_ms, int64_t now_ms);

}  // namespace kiln::cluster
