#include "cluster/plan.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "cas/digest.h"

namespace kiln::cluster {
namespace {

// Gone for good: lost (its lease expired a minute ago or more). A worker
// just disconnected may be reconnecting (a controller restart, a network
// blip) with its jobs: destroying it would lose them. One whose process
// ended is destroyed anyway (the provider no longer sees it).
bool Gone(const std::string& state) { return state == "lost"; }

}  // namespace

std::string ConfigHash(const Spec& s, const std::string& version) {
  nlohmann::json j;
  j["slots"] = s.slots_per_worker;
  j["labels"] = s.labels;
  j["worker_config"] = nlohmann::json::parse(s.worker_config, nullptr, false);
  j["version"] = version;
  return cas::DigestOf(j.dump()).hash.substr(0, 16);
}

const char* OpName(Op op) {
  switch (op) {
    case Op::kStart: return "start";
    case Op::kDrain: return "drain";
    case Op::kReplace: return "replace";
    case Op::kDestroy: return "destroy";
  }
  return "?";
}

Plan MakePlan(const Spec& spec, int desired, const Actual& actual, const std::string& want_hash, int64_t now_ms) {
  Plan p;
  p.cluster = spec.cluster;
  p.desired = std::clamp(desired, spec.min_workers, spec.max_workers);
  struct Candidate {
    const Instance* in;
    int64_t idle_since_ms;
  };
  std::vector<Candidate> idle;  // serving instances that may drain to scale in
  for (const auto& in : actual.instances) {
    const WorkerView* w = nullptr;
    if (auto it = actual.workers.find(in.worker_id); !in.worker_id.empty() && it != actual.workers.end())
      w = &it->second;
    if (!in.alive) {
      p.steps.push_back({Op::kDestroy, in.id, "the provider no longer sees it"});
      continue;
    }
    if (in.worker_id.empty()) {
      if (now_ms >= in.register_deadline_ms) {
        p.steps.push_back({Op::kDestroy, in.id, "it did not register within its deadline", true});
        continue;
      }
    } else if (w == nullptr || Gone(w->state)) {
      p.steps.push_back({Op::kDestroy, in.id, "its worker " + in.worker_id + " is gone"});
      continue;
    }
    if (in.state == "draining") {
      if (w != nullptr && w->running == 0 && w->state == "draining")
        p.steps.push_back({Op::kDestroy, in.id, "drained: its worker runs no job"});
      continue;  // draining: counts no more
    }
    if (w != nullptr && !w->healthy) {
      p.steps.push_back({Op::kReplace, in.id, "worker " + in.worker_id + " is unhealthy: " + w->health_reason});
      continue;
    }
    if (in.config_hash != want_hash) {
      p.steps.push_back({Op::kReplace, in.id, "configuration " + in.config_hash + " is not the desired " + want_hash});
      continue;
    }
    ++p.serving;
    if (w != nullptr && w->running == 0 && w->state == "connected")
      idle.push_back({&in, w->idle_since_ms > 0 ? w->idle_since_ms : in.created_at_ms});
  }
  // A replacement starts a new instance in the old one's place.
  int replacing = 0;
  for (const auto& s : p.steps) replacing += s.op == Op::kReplace ? 1 : 0;
  const int missing = p.desired - p.serving - replacing;
  for (int i = 0; i < missing; ++i)
    p.steps.push_back({Op::kStart, "",
                       std::to_string(p.serving + replacing) + " serving or replaced, " + std::to_string(p.desired) +
                           " desired"});
  int extra = p.serving + replacing - p.desired;
  if (extra > 0) {
    // The longest idle first; only past the scale-in delay.
    std::sort(idle.begin(), idle.end(),
              [](const Candidate& a, const Candidate& b) { return a.idle_since_ms < b.idle_since_ms; });
    for (const auto& c : idle) {
      if (extra == 0) break;
      const int64_t idle_ms = now_ms - c.idle_since_ms;
      if (idle_ms < spec.policy.scale_in_delay_ms) continue;
      p.steps.push_back({Op::kDrain, c.in->id,
                         "idle for " + std::to_string(idle_ms / 1000) + "s, " + std::to_string(p.serving) +
                             " serving for " + std::to_string(p.desired) + " desired"});
      --extra;
    }
  }
  return p;
}

std::string Render(const Plan& p) {
  std::string out = "cluster " + p.cluster + ": " + std::to_string(p.serving) + " serving, " +
                    std::to_string(p.desired) + " desired\n";
  int n[4] = {0, 0, 0, 0};
  for (const auto& s : p.steps) {
    const char* mark = s.op == Op::kStart ? "+" : s.op == Op::kReplace ? "~" : "-";
    std::string name = OpName(s.op);
    name.resize(8, ' ');
    std::string inst = s.instance.empty() ? "(new)" : s.instance;
    out += "  " + std::string(mark) + " " + name + " " + inst + "  (" + s.reason + ")\n";
    ++n[static_cast<int>(s.op)];
  }
  if (p.steps.empty()) out += "  no changes: the cluster is as desired\n";
  out += "Plan: " + std::to_string(n[0]) + " to start, " + std::to_string(n[2]) + " to replace, " +
         std::to_string(n[1]) + " to drain, " + std::to_string(n[3]) + " to destroy.\n";
  return out;
}

}  // namespace kiln::cluster
