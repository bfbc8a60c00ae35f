// kiln clusters set / show: a cluster's desired state (docs/operations.md,
// "Cluster state").

#include <cstdio>
#include <map>
#include <optional>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/errors.h"
#include "cli/output.h"
#include "common/util.h"

namespace kiln::cli {
namespace {

ErrorContext Ctx(const Globals& g) { return {g.controller, g.timeout}; }

void PrintLine(const std::string& s) { std::printf("%s\n", s.c_str()); }

// A --flag DUR as milliseconds, into `set`.
template <class Setter>
Status SetDuration(const char* flag, const std::optional<std::string>& text, Setter set) {
  if (!text) return Status::Ok();
  auto d = ParseDuration(*text);
  if (!d.ok()) return InvalidArgument(std::string(flag) + " " + *text + ": " + d.status().message());
  set(d->count());
  return Status::Ok();
}

Status SetDocument(const char* flag, const std::optional<std::string>& arg, std::string* out) {
  if (!arg) return Status::Ok();
  auto text = ReadDocumentArg(*arg);
  if (!text.ok()) return InvalidArgument(std::string(flag) + ": " + text.status().message());
  *out = *text;
  return Status::Ok();
}

Status BuildRequest(const ClustersSetArgs& a, v1::SetClusterStateRequest& req) {
  req.set_cluster(a.name);
  if (a.min) req.set_min_workers(*a.min);
  if (a.max) req.set_max_workers(*a.max);
  if (a.slots) req.set_slots_per_worker(*a.slots);
  if (a.scale_up_step) req.set_scale_up_step(*a.scale_up_step);
  if (a.jobs_per_slot) req.set_jobs_per_slot(*a.jobs_per_slot);
  if (a.provider) req.set_provider(*a.provider);
  if (!a.labels.empty() || a.no_labels) {
    if (!a.labels.empty() && a.no_labels) return InvalidArgument("give --label K=V or --no-labels, not both");
    auto* values = req.mutable_labels()->mutable_values();
    for (const auto& kv : a.labels) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) return InvalidArgument("--label " + kv + ": expected KEY=VALUE");
      (*values)[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  if (a.worker_config) KILN_RETURN_IF_ERROR(SetDocument("--worker-config", a.worker_config, req.mutable_worker_config_json()));
  if (a.provider_settings)
    KILN_RETURN_IF_ERROR(SetDocument("--provider-settings", a.provider_settings, req.mutable_provider_settings_json()));
  KILN_RETURN_IF_ERROR(SetDuration("--target-queue-wait", a.target_queue_wait,
                                   [&](int64_t ms) { req.set_target_queue_wait_ms(ms); }));
  KILN_RETURN_IF_ERROR(SetDuration("--scale-up-cooldown", a.scale_up_cooldown,
                                   [&](int64_t ms) { req.set_scale_up_cooldown_ms(ms); }));
  KILN_RETURN_IF_ERROR(SetDuration("--scale-down-cooldown", a.scale_down_cooldown,
                                   [&](int64_t ms) { req.set_scale_down_cooldown_ms(ms); }));
  KILN_RETURN_IF_ERROR(SetDuration("--scale-in-delay", a.scale_in_delay,
                                   [&](int64_t ms) { req.set_scale_in_delay_ms(ms); }));
  return Status::Ok();
}

std::string Labels(const v1::ClusterState& s) {
  std::string out;
  for (const auto& [k, v] : std::map<std::string, std::string>(s.labels().begin(), s.labels().end()))
    out += (out.empty() ? "" : ",") + k + "=" + v;
  return out.empty() ? "-" : out;
}

}  // namespace

int RunClustersSet(Client& c, const Globals& g, const ClustersSetArgs& a) {
  v1::SetClusterStateRequest req;
  if (Status s = BuildRequest(a, req); !s.ok()) return UsageError(s.message());
  auto cl = c.SetClusterState(req);
  if (!cl.ok()) return ReportError(cl.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJson(*cl));
    return kExitOk;
  }
  const auto& s = cl->state();
  PrintLine("cluster " + cl->name() + ": " + std::to_string(s.min_workers()) + " to " +
            std::to_string(s.max_workers()) + " workers of " + std::to_string(s.slots_per_worker()) +
            " slots, provider " + s.provider());
  return kExitOk;
}

int RunClustersShow(Client& c, const Globals& g, const std::string& name) {
  auto cl = c.GetCluster(name);
  if (!cl.ok()) return ReportError(cl.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJson(*cl));
    return kExitOk;
  }
  std::string projects;
  for (const auto& p : cl->projects()) projects += (projects.empty() ? "" : ",") + p;
  Table t({"cluster:", cl->name()});
  t.AddRow({"projects:", projects.empty() ? "-" : projects});
  t.AddRow({"workers:", std::to_string(cl->workers()) + " connected or draining"});
  if (!cl->has_state()) {
    t.AddRow({"managed:", "no: its workers are whatever an operator starts (kiln clusters set " + cl->name() +
                              " --min N --max N manages it)"});
    t.Print(stdout);
    return kExitOk;
  }
  const auto& s = cl->state();
  const auto& p = s.policy();
  t.AddRow({"min workers:", std::to_string(s.min_workers())});
  t.AddRow({"max workers:", std::to_string(s.max_workers())});
  t.AddRow({"slots per worker:", std::to_string(s.slots_per_worker())});
  t.AddRow({"labels:", Labels(s)});
  t.AddRow({"provider:", s.provider()});
  t.AddRow({"provider settings:", s.provider_settings_json()});
  t.AddRow({"worker config:", s.worker_config_json()});
  t.AddRow({"target queue wait:", p.target_queue_wait_ms() > 0 ? FormatDuration(p.target_queue_wait_ms()) : "off"});
  char jps[32];
  std::snprintf(jps, sizeof jps, "%g", p.jobs_per_slot());
  t.AddRow({"jobs per slot:", jps});
  t.AddRow({"scale-up step:", std::to_string(p.scale_up_step())});
  t.AddRow({"scale-up cooldown:", FormatDuration(p.scale_up_cooldown_ms())});
  t.AddRow({"scale-down cooldown:", FormatDuration(p.scale_down_cooldown_ms())});
  t.AddRow({"scale-in delay:", FormatDuration(p.scale_in_delay_ms())});
  t.AddRow({"updated:", FormatTime(s.updated_at_ms()) + " by " + s.updated_by()});
  t.Print(stdout);
  return kExitOk;
}

int RunClustersPlan(Client& c, const Globals& g, const std::string& name, bool apply) {
  auto r = c.PlanClusters(name, apply);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJsonArray(r->plans()));
    return kExitOk;
  }
  if (r->plans_size() == 0) PrintLine("no managed clusters (kiln clusters set NAME --min N --max N manages one)");
  int rc = kExitOk;
  for (const auto& p : r->plans()) {
    std::printf("%s", p.text().c_str());
    if (!apply) continue;
    for (const auto& s : p.applied()) PrintLine("  done: " + s);
    if (!p.error().empty()) {
      std::fprintf(stderr, "kiln: error: cluster %s: %s (the next apply retries it)\n", p.cluster().c_str(),
                   p.error().c_str());
      rc = kExitRemote;
    }
  }
  return rc;
}

int RunClustersHistory(Client& c, const Globals& g, const std::string& name, int limit) {
  auto r = c.ClusterHistory(name, limit);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJsonArray(r->decisions()));
    return kExitOk;
  }
  if (r->decisions_size() == 0) {
    PrintLine("cluster " + name + ": no autoscaler decisions yet (the farm's leader decides every autoscale_interval "
              "for clusters managed with kiln clusters set)");
    return kExitOk;
  }
  // Oldest first, as a log reads.
  Table t({"TIME", "ACTION", "WORKERS", "QUEUED", "RUNNING", "ACTIONS", "WAIT", "SLOTS", "WHY"});
  for (int k = r->decisions_size() - 1; k >= 0; --k) {
    const auto& d = r->decisions(k);
    std::string why = d.reason();
    for (const auto& st : d.steps()) why += "; " + st;
    if (!d.error().empty()) why += "; failed: " + d.error();
    t.AddRow({FormatTime(d.at_ms()), d.action(), std::to_string(d.previous()) + " -> " + std::to_string(d.desired()),
              std::to_string(d.queued_jobs()), std::to_string(d.running_jobs()), std::to_string(d.queued_actions()),
              d.oldest_wait_ms() > 0 ? HumanDuration(d.oldest_wait_ms()) : "-", std::to_string(d.slots()), why});
  }
  t.Print(stdout);
  return kExitOk;
}

}  // namespace kiln::cli
