// kiln workers, projects, clusters.

#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/errors.h"
#include "cli/output.h"
#include "cli/trees.h"
#include "common/util.h"
#include "config/project_config.h"

namespace kiln::cli {
namespace {

ErrorContext Ctx(const Globals& g) { return {g.controller, g.timeout}; }

void PrintLine(const std::string& s) { std::printf("%s\n", s.c_str()); }

std::string Join(const google::protobuf::RepeatedPtrField<std::string>& items, const char* empty) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out.empty() ? empty : out;
}

// Local validation before the round trip, so mistakes get a quick, clear error.
Status ValidateConfig(const std::string& json) {
  KILN_RETURN_IF_ERROR(config::CheckProjectConfigSize(json));
  auto parsed = config::ParseProjectConfig(json);
  if (!parsed.ok()) return InvalidArgument("invalid project configuration: " + parsed.status().message());
  return Status::Ok();
}

}  // namespace

int RunWorkers(Client& c, const Globals& g, bool all) {
  auto resp = c.ListWorkers(all);
  if (!resp.ok()) return ReportError(resp.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJsonArray(resp->workers()));
    return kExitOk;
  }
  const int64_t now = NowUnixMs();
  Table t({"ID", "HOST", "CLUSTER", "STATE", "HEALTH", "SLOTS", "RUNNING", "ARCH", "LABELS", "LAST-SEEN"});
  std::vector<std::string> reasons;
  for (const auto& w : resp->workers()) {
    std::string seen = w.last_heartbeat_ms() > 0 ? FormatAge(w.last_heartbeat_ms(), now) + " ago" : "-";
    std::string health = w.health().empty() ? "-" : w.health();
    if (w.health() == "unhealthy") {
      if (w.health_since_ms() > 0) health += " (" + FormatAge(w.health_since_ms(), now) + ")";
      reasons.push_back(w.id() + ": " + w.health_reason());
    }
    t.AddRow({w.id(), w.hostname(), w.cluster().empty() ? "-" : w.cluster(), w.state(), health,
              std::to_string(w.slots()), std::to_string(w.running()), w.arch(),
              w.labels().empty() ? "-" : JoinMap(w.labels()), seen});
  }
  t.Print(stdout);
  // Reasons are sentences: below the table, one line per unhealthy worker.
  if (!reasons.empty()) std::printf("\nunhealthy (no new jobs until their checks pass again):\n");
  for (const auto& r : reasons) PrintLine("  " + r);
  return kExitOk;
}

int RunProjectsList(Client& c, const Globals& g) {
  auto resp = c.ListProjects();
  if (!resp.ok()) return ReportError(resp.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJsonArray(resp->projects()));
    return kExitOk;
  }
  const int64_t now = NowUnixMs();
  Table t({"NAME", "CLUSTERS", "UPDATED", "CONFIG"});
  for (const auto& p : resp->projects()) {
    t.AddRow({p.name(), Join(p.clusters(), "-"), FormatAge(p.updated_at_ms(), now),
              Truncate(p.config_json().empty() ? "{}" : p.config_json(), 50)});
  }
  t.Print(stdout);
  return kExitOk;
}

int RunProjectsCreate(Client& c, const Globals& g, const std::string& name, const std::string& config) {
  std::string doc;
  if (!config.empty()) {
    auto text = ReadDocumentArg(config);
    if (!text.ok()) return UsageError(text.status().message());
    if (Status s = ValidateConfig(*text); !s.ok()) return UsageError(s.message());
    doc = *text;
  }
  auto p = c.CreateProject(name, doc);
  if (!p.ok()) return ReportError(p.status(), Ctx(g));
  if (g.json) PrintLine(ToJson(*p));
  else PrintLine("project " + p->name() + " created");
  return kExitOk;
}

int RunProjectsShow(Client& c, const Globals& g, const std::string& name) {
  auto p = c.GetProject(name);
  if (!p.ok()) return ReportError(p.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJson(*p));
    return kExitOk;
  }
  Table t({"project:", p->name()});
  t.AddRow({"clusters:", p->clusters().empty()
                             ? "none: its jobs wait until it is mapped (kiln clusters map CLUSTER " + p->name() + ")"
                             : Join(p->clusters(), "-")});
  t.AddRow({"updated:", FormatTime(p->updated_at_ms())});
  if (!p->cache_scope().empty()) {
    // A cache_scope not in effect: the scope does not exist or does not list the project.
    auto conf = config::ParseProjectConfig(p->config_json().empty() ? "{}" : p->config_json());
    std::string named = conf.ok() ? conf->cache_scope : "";
    std::string note = !named.empty() && p->cache_scope() != "shared:" + named
                           ? " (its cache_scope " + named + " is not in effect: no cache scope of that name lists it; "
                                                            "see kiln cache scopes list)"
                           : "";
    t.AddRow({"cache scope:", p->cache_scope() + note});
  }
  t.Print(stdout);
  PrintLine("config:");
  PrintLine(PrettyJson(p->config_json().empty() ? "{}" : p->config_json()));
  return kExitOk;
}

int RunProjectsConfigGet(Client& c, const Globals& g, const std::string& name) {
  auto p = c.GetProject(name);
  if (!p.ok()) return ReportError(p.status(), Ctx(g));
  PrintLine(PrettyJson(p->config_json().empty() ? "{}" : p->config_json()));
  return kExitOk;
}

int RunProjectsConfigSet(Client& c, const Globals& g, const std::string& name, const std::string& config) {
  auto text = ReadDocumentArg(config);
  if (!text.ok()) return UsageError(text.status().message());
  if (Status s = ValidateConfig(*text); !s.ok()) return UsageError(s.message());
  auto p = c.SetProjectConfig(name, *text);
  if (!p.ok()) return ReportError(p.status(), Ctx(g));
  if (g.json) PrintLine(ToJson(*p));
  else PrintLine("project " + p->name() + " configuration updated");
  return kExitOk;
}

int RunClustersList(Client& c, const Globals& g) {
  auto resp = c.ListClusters();
  if (!resp.ok()) return ReportError(resp.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJsonArray(resp->clusters()));
    return kExitOk;
  }
  Table t({"NAME", "WORKERS", "MIN", "MAX", "SLOTS", "PROVIDER", "PROJECTS"});
  for (const auto& cl : resp->clusters()) {
    const auto& s = cl.state();
    const bool managed = cl.has_state();
    t.AddRow({cl.name(), std::to_string(cl.workers()), managed ? std::to_string(s.min_workers()) : "-",
              managed ? std::to_string(s.max_workers()) : "-", managed ? std::to_string(s.slots_per_worker()) : "-",
              managed ? s.provider() : "(not managed)", Join(cl.projects(), "-")});
  }
  t.Print(stdout);
  return kExitOk;
}

int RunClustersCreate(Client& c, const Globals& g, const std::string& name) {
  auto cl = c.CreateCluster(name);
  if (!cl.ok()) return ReportError(cl.status(), Ctx(g));
  if (g.json) PrintLine(ToJson(*cl));
  else PrintLine("cluster " + cl->name() + " created");
  return kExitOk;
}

int RunWorkspaceList(Client& c, const Globals& g, const std::string& project) {
  auto r = c.ListWorkspaces(project);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJsonArray(r->workspaces()));
    return kExitOk;
  }
  if (r->workspaces_size() == 0) {
    PrintLine(std::string("no warm workspaces") + (project.empty() ? "" : " of project " + project) +
              " (kiln submit --workspace persistent makes one)");
    return kExitOk;
  }
  const int64_t now = NowUnixMs();
  Table t({"PROJECT", "NAME", "WORKER", "STATE", "SIZE", "TREE", "USED"});
  for (const auto& w : r->workspaces())
    t.AddRow({w.project(), w.name(), w.worker_id(), w.worker_state(), HumanBytes(w.bytes()),
              w.has_root() ? "sha256:" + w.root().hash().substr(0, 12) + ".." : "-",
              FormatAge(w.updated_at_ms(), now) + " ago"});
  t.Print(stdout);
  return kExitOk;
}

int RunWorkspaceRemove(Client& c, const Globals& g, const std::string& project, const std::string& name) {
  auto r = c.RemoveWorkspace(project, name);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) PrintLine(ToJson(*r));
  else PrintLine("workspace " + name + " of project " + project + ": " + std::to_string(r->workers()) +
                 (r->workers() == 1 ? " worker deletes it" : " workers delete it") +
                 " (at once, or when the build using it ends)");
  return kExitOk;
}

int RunClustersMap(Client& c, const Globals& g, const std::string& cluster, const std::string& project, bool unmap) {
  auto cl = c.MapProject(cluster, project, unmap);
  if (!cl.ok()) return ReportError(cl.status(), Ctx(g));
  if (g.json) PrintLine(ToJson(*cl));
  else if (unmap) PrintLine("project " + project + " unmapped from cluster " + cluster);
  else PrintLine("project " + project + " mapped to cluster " + cluster);
  return kExitOk;
}

}  // namespace kiln::cli
