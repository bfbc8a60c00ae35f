#pragma once
// The deployer's plan (refresh → plan → apply): the difference between a
// cluster's desired state and what runs, as steps with their reasons, like
// a Terraform plan. Pure: no database, no provider, no clock of its own.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "cluster/spec.h"

namespace kiln::cluster {

// What a worker the deployer started should be: the hash of everything it
// deploys (slots, labels, worker settings, kiln's version). An instance
// with another hash is on an old configuration and is replaced.
std::string ConfigHash(const Spec& s, const std::string& version);

// A provider instance as refresh found it (its row and the provider's view).
struct Instance {
  std::string id;
  std::string config_hash;
  std::string state;         // "starting", "running", "draining" (as the deployer left it)
  bool alive = true;         // the provider still sees it (a process, a unit, a machine)
  std::string worker_id;     // the worker it registered as; empty: not yet
  int64_t created_at_ms = 0;
  int64_t register_deadline_ms = 0;  // destroyed if it has not registered by then
};

// A worker row of the cluster, as the workers table has it.
struct WorkerView {
  std::string state;  // connected, draining, disconnected, lost
  bool healthy = true;
  std::string health_reason;
  int running = 0;           // jobs in setup or running
  int64_t idle_since_ms = 0; // when it last ran a job (or registered); 0: unknown
};

struct Actual {
  std::vector<Instance> instances;
  std::map<std::string, WorkerView> workers;  // by worker id
};

enum class Op {
  kStart,    // start a new instance
  kDrain,    // stop giving it jobs; destroyed once drained (its jobs finish)
  kReplace,  // drain it and start one in its place
  kDestroy,  // remove it now (it never registered, its worker is gone, or it has drained)
};
const char* OpName(Op op);

struct Step {
  Op op;
  std::string instance;  // empty for kStart
  std::string reason;
  bool unregistered = false;  // kDestroy: it never registered by its deadline (counted)
};

struct Plan {
  std::string cluster;
  int desired = 0;  // workers wanted, within min..max
  int serving = 0;  // instances that count toward it now
  std::vector<Step> steps;
  bool empty() const { return steps.empty(); }
};

// The steps that bring `actual` to `desired` workers (clamped to the spec's
// min..max) on configuration `want_hash`, at time `now_ms`:
// - an instance whose provider no longer sees it, or that has not
//   registered by its deadline, is destroyed;
// - a draining instance is destroyed once its worker ran no job and is
//   gone or idle;
// - an instance on an unhealthy worker or an old configuration is replaced;
// - then instances start while fewer than `desired` serve, and idle ones
//   (idle for at least the spec's scale-in delay) drain while more do;
//   a busy worker is never drained to scale in.
Plan MakePlan(const Spec& spec, int desired, const Actual& actual, const std::string& want_hash, int64_t now_ms);

// The plan as a person reads it, Terraform-style:
//   cluster default: 2 serving, 3 desired
//     + start      (1 more to reach 3)
//     ~ replace    default-1a2b3c  (worker default-1a2b3c-xx is unhealthy: disk full)
//   Plan: 1 to start, 1 to replace, 0 to drain, 0 to destroy.
std::string Render(const Plan& p);

}  // namespace kiln::cluster
