#include "controller/autoscaler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "cluster/instance_store.h"
#include "cluster/scaler.h"
#include "cluster/state_store.h"
#include "controller/deployer.h"

namespace kiln::controller {
namespace {

constexpr std::chrono::minutes kMaxBackoff{5};

}  // namespace

Autoscaler::Autoscaler(AutoscalerDeps d) : d_(std::move(d)) {}

void Autoscaler::Tick() {
  auto specs = d_.state.List();
  if (!specs.ok()) {
    spdlog::warn("autoscaler cannot read the clusters' desired state: {}", specs.status().message());
    return;
  }
  for (const auto& s : *specs) TickCluster(s.cluster);
}

void Autoscaler::TickCluster(const std::string& name) {
  Memory& m = memory_[name];
  const auto steady = std::chrono::steady_clock::now();
  if (steady < m.retry_at) return;
  // One plan-to-apply at a time on this controller (kiln clusters apply too).
  auto serial = d_.deployer.Serialize();
  // A cluster that cannot be read or planned is said once until that changes
  // (every interval would flood the log), and tried again each pass.
  auto cannot = [&](const char* what, const Status& st) {
    const std::string text = std::string(what) + ": " + st.message();
    if (text != m.warned) spdlog::warn("autoscaler cannot {} cluster={}: {}", what, name, st.message());
    m.warned = text;
  };
  if (!serial.status.ok()) {
    cannot("lock", serial.status);
    return;
  }
  // One refresh: both plans below are made from it.
  auto r = d_.deployer.Refresh(name);
  auto seen = d_.instances.Seen(name);
  if (!r.ok() || !seen.ok()) {
    cannot("read", !r.ok() ? r.status() : seen.status());
    return;
  }
  // Where the count stands: the last decision's, else what serves now.
  const cluster::Plan current = d_.deployer.PlanFrom(*r, -1);
  seen->queued_actions = d_.queued_actions ? d_.queued_actions(name) : 0;
  seen->serving = current.serving;
  // No decision yet: what serves now (below the minimum too: say so).
  const int previous = r->last ? r->last->desired : current.serving;
  const int64_t last_change = r->last ? r->last->last_change_ms : 0;
  cluster::Decision decision = cluster::Decide(r->spec, previous, *seen, last_change, r->now_ms);
  const cluster::Plan plan =
      decision.desired != current.desired ? d_.deployer.PlanFrom(*r, decision.desired) : current;
  m.warned.clear();
  d_.metrics.desired.With({{"cluster", name}}).Set(decision.desired);

  using A = cluster::Decision::Action;
  cluster::DecisionRow row;
  row.controller = d_.controller_id;
  row.seen = *seen;
  row.previous = decision.previous;
  row.desired = decision.desired;
  row.reason = decision.reason;
  switch (decision.action) {
    case A::kScaleUp: row.action = "scale_up"; break;
    case A::kScaleDown: row.action = "scale_down"; break;
    case A::kHold: row.action = "hold"; break;
    case A::kNone: row.action = "reconcile"; break;
  }
  auto decided = [&] {
    m.recorded = row.action + " " + std::to_string(decision.desired) + " " + std::to_string(decision.wanted);
    d_.metrics.decisions.With({{"cluster", name}, {"action", row.action}}).Inc();
    spdlog::info("autoscaler decided cluster={} action={} previous={} desired={} reason=\"{}\"", name, row.action,
                 row.previous, row.desired, row.reason);
  };
  // A new count is written before anything is done for it: a leader that
  // dies mid-apply leaves the count its successor goes on from (else it
  // would drain what was just started, and start it again).
  const bool changes_count = decision.action == A::kScaleUp || decision.action == A::kScaleDown;
  std::optional<int64_t> row_id;
  if (changes_count) {
    auto id = d_.instances.RecordDecision(name, row);
    if (!id.ok()) {
      cannot("record a decision", id.status());
      return;  // (nothing applied: the next pass decides again)
    }
    row_id = *id;
    decided();
  }
  Deployer::Applied applied;
  if (!plan.empty())
    applied = d_.deployer.Apply(plan, {"controller " + d_.controller_id + " (autoscaler)", "local"}, serial);
  row.steps = applied.steps;
  row.error = applied.error.ok() ? "" : applied.error.message();
  if (decision.action == A::kNone)
    row.reason = row.steps.empty() ? "the plan's steps failed" : "carried out the plan to " +
                                                                      std::to_string(decision.desired) + " workers";
  if (row_id) {
    if (!row.steps.empty() || !row.error.empty()) {
      if (Status st = d_.instances.FinishDecision(*row_id, row.steps, row.error); !st.ok())
        spdlog::warn("autoscaler cannot record the steps of a decision cluster={}: {}", name, st.message());
    }
  } else {
    // A held change is recorded once until what it holds back changes; a
    // failure once until it changes; steps carried out always.
    const std::string key = row.action + " " + std::to_string(decision.desired) + " " + std::to_string(decision.wanted);
    const bool record = !row.steps.empty() || (decision.action == A::kHold && key != m.recorded) ||
                        (!row.error.empty() && row.error != m.error);
    if (record) {
      if (auto id = d_.instances.RecordDecision(name, row); !id.ok())
        spdlog::warn("autoscaler cannot record a decision cluster={}: {}", name, id.status().message());
      else
        decided();
    }
  }
  if (!row.steps.empty())
    spdlog::info("autoscaler carried out cluster={} steps={} error=\"{}\"", name, row.steps.size(), row.error);
  if (!applied.error.ok()) {
    d_.metrics.failures.With({{"cluster", name}}).Inc();
    m.error = row.error;
    ++m.failures;
    auto wait = d_.interval * (int64_t{1} << std::min(m.failures, 10));
    const auto capped = std::min<std::chrono::milliseconds>(wait, kMaxBackoff);
    m.retry_at = steady + capped;
    spdlog::warn("cluster plan step failed cluster={} failures={} retry_in_ms={}: {}", name, m.failures,
                 capped.count(), row.error);
  } else {
    m.failures = 0;
    m.error.clear();
    m.retry_at = {};
  }
}

}  // namespace kiln::controller
