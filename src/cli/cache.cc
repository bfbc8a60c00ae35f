// kiln cache stats, kiln cache impact, kiln cache scopes, and the compile
// cache part of kiln why.

#include <cstdio>
#include <map>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/errors.h"
#include "cli/output.h"
#include "cli/trees.h"
#include "common/util.h"

namespace kiln::cli {
namespace {

void Line(const std::string& s) { std::printf("%s\n", s.c_str()); }

ErrorContext Ctx(const Globals& g) { return {g.controller, g.timeout}; }

// "8 cacheable: 3 hits (38%; 1 after an edit that left the code the same), 4 misses, 1 failed to compile"
std::string Outcomes(const v1::CompileStats& s) {
  int64_t hits = s.hits() + s.hits_preprocessed();
  int64_t cacheable = hits + s.misses() + s.failed();
  std::string out = FormatCount(cacheable) + " cacheable: " + FormatCount(hits) + " hits (" + FormatPercent(hits, cacheable);
  if (s.hits_preprocessed() > 0) out += "; " + FormatCount(s.hits_preprocessed()) + " after an edit that left the code the same";
  out += "), " + FormatCount(s.misses()) + (s.misses() == 1 ? " miss" : " misses");
  if (s.failed() > 0) out += ", " + FormatCount(s.failed()) + " failed to compile";
  return out;
}

std::string Projects(const v1::CacheScope& s) {
  std::string out;
  for (const auto& p : s.projects()) out += (out.empty() ? "" : ", ") + p;
  return out;
}

}  // namespace

std::string RemoteSummary(const v1::Explanation& ex) {
  const v1::CompileStats& s = ex.compile();
  int here = 0;  // remote compiles were on, yet it compiled here (the event says why)
  for (const auto& e : ex.compile_events())
    if (e.detail().find(kCompiledHere) != std::string::npos) here++;
  if (s.remote() <= 0 && here == 0) return "";
  std::string out;
  if (s.remote() > 0) {
    std::map<std::string, int> where;
    for (const auto& e : ex.compile_events())
      if (!e.remote_worker().empty()) where[e.remote_worker()]++;
    std::string list;
    for (const auto& [w, n] : where) list += (list.empty() ? "" : ", ") + w + " " + FormatCount(n);
    out = FormatCount(s.remote()) + " of the misses compiled on other workers" + (list.empty() ? "" : " (" + list + ")") +
          ", " + HumanDuration(s.remote_ms()) + " of compiling off this host";
  }
  if (here > 0)
    out += (out.empty() ? "" : "; ") + FormatCount(here) + (here == 1 ? " unit" : " units") +
           " compiled here after all (kiln why " + std::to_string(ex.job().id()) + " says why)";
  return out;
}

void PrintCompileSummary(const v1::Explanation& ex, int max_paths) {
  if (!ex.has_compile()) return;
  const v1::CompileStats& s = ex.compile();
  std::string whose = ex.cached() ? " (in the run of job " + std::to_string(ex.job().result().cached_from_job()) +
                                        ", which produced this result)"
                                  : "";
  Line("compile cache" + whose + ": " + FormatCount(s.units()) + " compiler invocations, " + Outcomes(s) + "; " +
       FormatCount(s.fallbacks()) + " not cacheable");
  if (s.saved_ms() > 0 || s.compile_ms() > 0)
    Line("  saved " + HumanDuration(s.saved_ms()) + " of compiling; the misses compiled for " + HumanDuration(s.compile_ms()));
  if (std::string remote = RemoteSummary(ex); !remote.empty()) Line("  remote: " + remote);
  std::map<std::string, int> fallbacks;
  Table misses({"", "SOURCE", "OUTPUT", "WHY"});
  int listed = 0;
  for (const auto& e : ex.compile_events()) {
    if (e.outcome() == "fallback") {
      fallbacks[e.reason()]++;
      continue;
    }
    if (listed++ >= max_paths) continue;
    std::string kind = e.outcome() == "hit_preprocessed" ? "hit" : e.outcome() == "failed" ? "failed" : "miss";
    std::string why = e.detail().empty() ? e.reason() : e.detail();
    if (e.outcome() == "hit_preprocessed") why += " (the same code: served)";
    if (!e.remote_worker().empty()) why += " (compiled on " + e.remote_worker() + ")";
    misses.AddRow({"    " + kind, e.source(), e.output(), why});
  }
  if (listed > 0) {
    Line("  translation units that did not hit directly:");
    misses.Print(stdout);
  }
  if (!fallbacks.empty()) {
    std::string list;
    for (const auto& [reason, n] : fallbacks) list += (list.empty() ? "" : ", ") + reason + " " + FormatCount(n);
    Line("  not cacheable: " + list);
  }
  if (ex.compile_events_truncated() || listed > max_paths)
    Line("  (more translation units than listed; --max-paths shows more)");
}

int RunCacheStats(Client& c, const Globals& g, const CacheStatsArgs& a) {
  v1::CompileStatsRequest req;
  req.set_project(a.project);
  auto since = SinceMs(a.since);
  if (!since.ok()) return UsageError(since.status().message());
  req.set_since_ms(*since);
  auto r = c.CompileStats(req);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    Line(ToJson(*r));
    return kExitOk;
  }
  const auto& s = r->stats();
  Line("compile cache of project " + r->project() + " (scope " + r->scope() + "), " + FormatCount(r->jobs()) +
       (r->jobs() == 1 ? " job" : " jobs") + (a.since.empty() ? "" : " in the last " + a.since) + ":");
  std::vector<std::pair<std::string, std::string>> rows;
  rows.push_back({"translation units", Outcomes(s)});
  std::string misses, fallbacks;
  for (const auto& rc : r->reasons()) {
    std::string& list = rc.outcome() == "fallback" ? fallbacks : misses;
    list += (list.empty() ? "" : ", ") + rc.reason() + " " + FormatCount(rc.count());
  }
  if (!misses.empty()) rows.push_back({"misses by reason", misses});
  rows.push_back({"not cacheable", FormatCount(s.fallbacks()) + (fallbacks.empty() ? "" : " (" + fallbacks + ")")});
  rows.push_back({"time saved", HumanDuration(s.saved_ms()) + " of compiling (the misses compiled for " +
                                    HumanDuration(s.compile_ms()) + ")"});
  rows.push_back({"objects", "served " + HumanBytes(s.bytes_served()) + ", stored " + HumanBytes(s.bytes_stored())});
  rows.push_back({"entries", FormatCount(r->results()) + " results (" + HumanBytes(r->object_bytes()) + " of objects), " +
                                 FormatCount(r->manifests()) + " manifests"});
  for (const auto& [k, v] : rows) std::printf("  %-18s %s\n", k.c_str(), v.c_str());
  return kExitOk;
}

int RunCacheImpact(Client& c, const Globals& g, const CacheImpactArgs& a) {
  v1::CompileImpactRequest req;
  req.set_project(a.project);
  req.set_path(a.path);
  req.set_limit(a.limit);
  auto r = c.CompileImpact(req);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    Line(ToJson(*r));
    return kExitOk;
  }
  if (r->units_size() == 0) {
    Line("no cached translation unit of project " + a.project + " reads " + r->path() +
         " (paths are as the build sees them: the input tree is /src)");
    return kExitOk;
  }
  Line(r->path() + " is read by " + (r->truncated() ? "more than " : "") + FormatCount(r->units_size()) +
       " cached translation " + (r->units_size() == 1 ? "unit" : "units") + " of project " + a.project +
       "; changing it recompiles them:");
  const int64_t now = NowUnixMs();
  Table t({"SOURCE", "OUTPUT", "MANIFESTS", "LAST USED"});
  for (const auto& u : r->units())
    t.AddRow({u.source(), u.output(), std::to_string(u.manifests()), FormatAge(u.last_used_ms(), now) + " ago"});
  t.Print(stdout);
  if (r->truncated()) Line("(first " + FormatCount(r->units_size()) + "; --limit shows more)");
  return kExitOk;
}

int RunCacheScopesSet(Client& c, const Globals& g, const std::string& name, const std::vector<std::string>& projects) {
  auto r = c.SetCacheScope(name, projects);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    Line(ToJson(*r));
    return kExitOk;
  }
  Line("cache scope " + r->name() + ": projects " + Projects(*r) + " share its action and compile cache entries "
       "(each project's configuration names it with \"cache_scope\": \"" + r->name() + "\")");
  return kExitOk;
}

int RunCacheScopesList(Client& c, const Globals& g) {
  auto r = c.ListCacheScopes();
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    Line(ToJsonArray(r->scopes()));
    return kExitOk;
  }
  if (r->scopes_size() == 0) {
    Line("no shared cache scopes: every project's cache entries are its own (kiln cache scopes set NAME --project A "
         "--project B shares them)");
    return kExitOk;
  }
  const int64_t now = NowUnixMs();
  Table t({"NAME", "PROJECTS", "UPDATED", "CREATED-BY"});
  for (const auto& s : r->scopes())
    t.AddRow({s.name(), Projects(s), FormatAge(s.updated_at_ms(), now) + " ago", s.created_by()});
  t.Print(stdout);
  return kExitOk;
}

int RunCacheScopesRemove(Client& c, const Globals& g, const std::string& name) {
  auto r = c.RemoveCacheScope(name);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    Line(ToJson(*r));
    return kExitOk;
  }
  Line("cache scope " + r->name() + " removed: projects " + Projects(*r) +
       " use their own scopes from now on (their entries in it are no longer served)");
  return kExitOk;
}

}  // namespace kiln::cli
