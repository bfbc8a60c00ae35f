#pragma once
// A cluster's desired state (sql/021_cluster_state.sql): the bounds of its
// fleet, what each worker it deploys looks like, which provider starts them
// and the autoscaler's policy. Plain types and checks, no database.

#include <cstdint>
#include <map>
#include <string>

#include "common/status.h"

namespace kiln::cluster {

// How the autoscaler sizes the fleet (docs/operations.md, "Scaling policy").
struct Policy {
  int64_t target_queue_wait_ms = 30'000;  // scale up while jobs wait longer; 0: off
  double jobs_per_slot = 1.0;             // queued and running jobs one slot should carry
  int scale_up_step = 1;                  // at most this many workers more per decision
  int64_t scale_up_cooldown_ms = 30'000;  // after a change, no scale-up before this
  int64_t scale_down_cooldown_ms = 120'000;  // after a change, no scale-down before this
  int64_t scale_in_delay_ms = 300'000;       // a worker idle this long may be drained
};

struct Spec {
  std::string cluster;
  int min_workers = 0;
  int max_workers = 0;
  int slots_per_worker = 1;
  std::map<std::string, std::string> labels;
  std::string worker_config = "{}";  // a JSON object: kiln-worker config keys to values
  std::string provider = "process";
  std::string provider_settings = "{}";  // a JSON object
  Policy policy;
  // Set by the store.
  std::string updated_by;
  int64_t updated_at_ms = 0;
};

inline constexpr int kMaxWorkers = 1000;
inline constexpr int kMaxSlots = 1024;
inline constexpr int kMaxStep = 100;
inline constexpr int64_t kMaxPolicyMs = int64_t{86'400'000};  // one day
inline constexpr size_t kMaxDocumentBytes = 64 * 1024;         // worker_config, provider_settings

// Whether `name` is a provider kiln knows: process, systemd or command.
bool KnownProvider(const std::string& name);

// Checks every field, and worker_config and labels as kiln-worker would
// read them. OK, or InvalidArgument naming the first problem and its bounds
// ("--max 2 is below --min 3: ...").
Status Validate(const Spec& s);

// Re-serializes worker_config and provider_settings canonically (sorted
// keys, no spaces). InvalidArgument if either is not a JSON object.
Status Canonicalize(Spec& s);

// The spec as a JSON object (what the audit trail records of a change).
std::string ToJson(const Spec& s);

}  // namespace kiln::cluster
