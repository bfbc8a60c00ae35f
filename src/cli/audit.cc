// kiln audit: the audit trail, newest first.

#include <algorithm>
#include <cstdio>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/errors.h"
#include "cli/output.h"

namespace kiln::cli {

int RunAudit(Client& c, const Globals& g, const AuditArgs& a) {
  constexpr int kPage = 1000;  // the controller's most per call
  v1::ListAuditRequest req;
  req.set_project(a.project);
  auto since = SinceMs(a.since);
  if (!since.ok()) return UsageError(since.status().message());
  req.set_since_ms(*since);
  v1::ListAuditResponse all;
  while (all.entries_size() < a.limit) {
    req.set_limit(std::min(kPage, a.limit - all.entries_size()));
    auto r = c.ListAudit(req);
    if (!r.ok()) return ReportError(r.status(), {g.controller, g.timeout});
    for (auto& e : *r->mutable_entries()) *all.add_entries() = std::move(e);
    if (r->entries_size() < req.limit()) break;
    req.set_before_id(all.entries(all.entries_size() - 1).id());
  }
  if (g.json) {
    std::printf("%s\n", ToJsonArray(all.entries()).c_str());
    return kExitOk;
  }
  if (all.entries_size() == 0) {
    std::printf("no changes recorded%s%s\n", a.project.empty() ? "" : (" for project " + a.project).c_str(),
                a.since.empty() ? "" : (" in the last " + a.since).c_str());
    return kExitOk;
  }
  Table t({"TIME", "ACTOR", "ADDRESS", "ACTION", "PROJECT", "TARGET", "CHANGE"});
  for (const auto& e : all.entries()) {
    t.AddRow({FormatTime(e.at_ms()), e.actor(), e.address(), e.action(), e.project().empty() ? "-" : e.project(),
              e.target(), ChangeSummary(e.change_json(), 100)});
  }
  t.Print(stdout);
  return kExitOk;
}

}  // namespace kiln::cli
