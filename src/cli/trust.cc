// kiln tokens, kiln workers join-token / revoke, kiln whoami.

#include <cstdio>

#include "cli/commands.h"
#include "cli/errors.h"
#include "cli/output.h"
#include "common/util.h"

namespace kiln::cli {
namespace {

ErrorContext Ctx(const Globals& g) { return {g.controller, g.timeout}; }

std::string Projects(const v1::ApiToken& t) {
  std::string out;
  for (const auto& p : t.projects()) out += (out.empty() ? "" : ",") + p;
  return out.empty() ? "(all)" : out;
}

std::string When(int64_t ms, int64_t now, const char* none) {
  if (ms == 0) return none;
  return ms > now ? "in " + FormatAge(now, ms) : FormatAge(ms, now) + " ago";
}

}  // namespace

int RunTokensCreate(Client& c, const Globals& g, const TokenCreateArgs& a) {
  v1::CreateTokenRequest req;
  req.set_role(a.role);
  for (const auto& p : a.projects) req.add_projects(p);
  req.set_description(a.description);
  if (!a.expires.empty()) {
    auto ttl = ParseDuration(a.expires);
    if (!ttl.ok()) return UsageError("--expires: " + ttl.status().message());
    if (ttl->count() < 1000) return UsageError("--expires must be at least 1s");
    req.set_ttl_s(ttl->count() / 1000);
  }
  auto r = c.CreateToken(req);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    std::printf("%s\n", ToJson(*r).c_str());
    return kExitOk;
  }
  std::printf("%s\n", r->secret().c_str());
  std::fprintf(stderr,
               "kiln: token %s (%s, %s) created; it is shown this once. Use it with KILN_TOKEN=... or "
               "KILN_TOKEN_FILE=FILE; revoke it with kiln tokens revoke %s\n",
               r->token().id().c_str(), r->token().role().c_str(), Projects(r->token()).c_str(),
               r->token().id().c_str());
  return kExitOk;
}

int RunTokensList(Client& c, const Globals& g) {
  auto r = c.ListTokens();
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    std::printf("%s\n", ToJsonArray(r->tokens()).c_str());
    return kExitOk;
  }
  const int64_t now = NowUnixMs();
  Table t({"ID", "ROLE", "PROJECTS", "STATE", "EXPIRES", "LAST-USED", "CREATED-BY", "DESCRIPTION"});
  for (const auto& k : r->tokens()) {
    std::string state = k.revoked_at_ms() ? "revoked"
                        : (k.expires_at_ms() && k.expires_at_ms() <= now) ? "expired"
                                                                             : "active";
    t.AddRow({k.id(), k.role(), Projects(k), state, When(k.expires_at_ms(), now, "never"),
              When(k.last_used_at_ms(), now, "-"), k.created_by(), k.description().empty() ? "-" : k.description()});
  }
  t.Print(stdout);
  return kExitOk;
}

int RunTokensRevoke(Client& c, const Globals& g, const std::string& id) {
  auto r = c.RevokeToken(id);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) std::printf("%s\n", ToJson(*r).c_str());
  else std::printf("token %s revoked\n", id.c_str());
  return kExitOk;
}

int RunJoinToken(Client& c, const Globals& g, const std::string& expires) {
  auto ttl = ParseDuration(expires.empty() ? "1h" : expires);
  if (!ttl.ok()) return UsageError("--expires: " + ttl.status().message());
  if (ttl->count() < 1000) return UsageError("--expires must be at least 1s");
  auto r = c.CreateJoinToken(ttl->count() / 1000);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    std::printf("%s\n", ToJson(*r).c_str());
    return kExitOk;
  }
  std::printf("%s\n", r->token().c_str());
  std::fprintf(stderr,
               "kiln: a single-use join token, valid for %s: give it to one new worker (join_token_file or "
               "KILN_JOIN_TOKEN) with the farm's ca.crt (ca_file)\n",
               FormatMs(ttl->count()).c_str());
  return kExitOk;
}

int RunWorkersRevoke(Client& c, const Globals& g, const std::string& worker_id) {
  auto r = c.RevokeWorker(worker_id);
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    std::printf("%s\n", ToJson(*r).c_str());
    return kExitOk;
  }
  std::printf("worker %s revoked (%d certificate%s); its jobs go back in line and it cannot connect again "
              "unless enrolled anew\n",
              worker_id.c_str(), r->certificates(), r->certificates() == 1 ? "" : "s");
  return kExitOk;
}

int RunWhoAmI(Client& c, const Globals& g) {
  auto r = c.WhoAmI();
  if (!r.ok()) return ReportError(r.status(), Ctx(g));
  if (g.json) {
    std::printf("%s\n", ToJson(*r).c_str());
    return kExitOk;
  }
  std::printf("token %s: %s, projects %s, expires %s\n", r->id().c_str(), r->role().c_str(), Projects(*r).c_str(),
              When(r->expires_at_ms(), NowUnixMs(), "never").c_str());
  return kExitOk;
}

}  // namespace kiln::cli
