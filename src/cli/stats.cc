// kiln stats: the farm's history for a window (AdminService.GetStats, over
// the views of sql/016 and sql/017).

#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/errors.h"
#include "cli/output.h"
#include "common/util.h"

namespace kiln::cli {
namespace {

std::string Ms(const v1::Millis& m) { return m.has() ? HumanDuration(m.ms()) : "-"; }

std::string Ratio(double r) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * r);
  return buf;
}

std::string Fixed(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

// A titled table, or `none` when it has no rows.
void Section(const std::string& title, const std::string& none, std::vector<std::string> header,
             const std::vector<std::vector<std::string>>& rows) {
  std::printf("\n%s:\n", title.c_str());
  if (rows.empty()) {
    std::printf("  %s\n", none.c_str());
    return;
  }
  Table t(std::move(header));
  for (const auto& r : rows) t.AddRow(r);
  t.Print(stdout);
}

}  // namespace

int RunStats(Client& c, const Globals& g, const StatsArgs& a) {
  auto window = ParseDuration(a.since);
  if (!window.ok()) return UsageError("--since: " + window.status().message());
  if (window->count() < 1000) return UsageError("--since: the window must be at least 1s");
  v1::GetStatsRequest req;
  req.set_project(a.project);
  req.set_window_s(window->count() / 1000);
  auto r = c.GetStats(req);
  if (!r.ok()) return ReportError(r.status(), {g.controller, g.timeout});
  if (g.json) {
    std::printf("%s\n", ToJson(*r).c_str());
    return kExitOk;
  }
  const v1::Stats& s = *r;
  std::printf("%s, the last %s (%s to %s):\n", a.project.empty() ? "every project" : ("project " + a.project).c_str(),
              a.since.c_str(), FormatTime(s.from_ms()).c_str(), FormatTime(s.to_ms()).c_str());
  std::vector<std::pair<std::string, std::string>> rows;
  rows.push_back({"jobs", FormatCount(s.jobs()) + " ended: " + FormatCount(s.succeeded()) + " succeeded, " +
                              FormatCount(s.failed()) + " failed, " + FormatCount(s.cached()) +
                              " served from the action cache, " + FormatCount(s.cancelled()) + " cancelled, " +
                              FormatCount(s.lost()) + " lost"});
  rows.push_back({"success rate", s.jobs() - s.cancelled() > 0 ? Ratio(s.success_rate()) : "-"});
  rows.push_back({"queue wait", "p50 " + Ms(s.queue_wait_p50()) + ", p95 " + Ms(s.queue_wait_p95()) + ", p99 " +
                                    Ms(s.queue_wait_p99()) + " (" + FormatCount(s.queue_waits()) + " jobs)"});
  rows.push_back({"run time", "p50 " + Ms(s.run_p50()) + ", p95 " + Ms(s.run_p95()) + " (" + FormatCount(s.runs()) +
                                  " jobs)"});
  rows.push_back({"action cache", FormatCount(s.cached()) + " hits of " + FormatCount(s.action_cache_lookups()) +
                                      " cacheable jobs (" + FormatPercent(s.cached(), s.action_cache_lookups()) +
                                      ")"});
  rows.push_back({"compile cache", FormatCount(s.compile_hits()) + " hits of " + FormatCount(s.compile_units()) +
                                       " cacheable units (" + FormatPercent(s.compile_hits(), s.compile_units()) +
                                       ")"});
  rows.push_back({"time saved", HumanDuration(s.action_cache_saved_ms() + s.compile_cache_saved_ms()) + " (" +
                                    HumanDuration(s.action_cache_saved_ms()) + " by the action cache, " +
                                    HumanDuration(s.compile_cache_saved_ms()) + " by the compile cache)"});
  for (const auto& [k, v] : rows) std::printf("  %-15s %s\n", k.c_str(), v.c_str());

  std::vector<std::vector<std::string>> clusters, slowest, missed;
  for (const auto& u : s.clusters())
    clusters.push_back({"  " + u.cluster(), Fixed(u.slots_avg()), Fixed(u.busy_avg()),
                        u.has_utilisation() ? Ratio(u.utilisation()) : "-", FormatCount(u.samples())});
  for (const auto& u : s.slowest_units())
    slowest.push_back({"  " + HumanDuration(u.compile_ms()), u.source(), u.project()});
  for (const auto& u : s.most_missed_units())
    missed.push_back({"  " + FormatCount(u.misses()), u.source(), u.last_reason()});
  Section("worker utilisation (samples every sample_interval)", "no samples in the window",
          {"  CLUSTER", "SLOTS", "BUSY", "UTILISATION", "SAMPLES"}, clusters);
  Section("slowest units (compile time recorded by the compile cache)", "none compiled in the window",
          {"  COMPILE", "SOURCE", "PROJECT"}, slowest);
  Section("most-missed units (compile cache misses)", "none missed in the window", {"  MISSES", "SOURCE", "LAST REASON"},
          missed);
  return kExitOk;
}

}  // namespace kiln::cli
