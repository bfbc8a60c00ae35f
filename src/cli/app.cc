#include "cli/app.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <functional>
#include <memory>

#include "cli/client.h"
#include "cli/commands.h"
#include <cstdlib>
#include <fstream>

#include "cli/errors.h"
#include "common/util.h"
#include "common/version.h"

namespace kiln::cli {
namespace {

constexpr const char* kGlobalFooter =
    "Global options (before or after the subcommand): --controller ADDR (env KILN_CONTROLLER, default "
    "127.0.0.1:7070), --ca FILE (env KILN_CA), --token-file FILE (env KILN_TOKEN_FILE, or the token itself in "
    "KILN_TOKEN), --insecure, --json, --timeout DUR (default 30s). See kiln --help.";

CLI::App* Sub(CLI::App* parent, const std::string& name, const std::string& description) {
  CLI::App* s = parent->add_subcommand(name, description);
  s->footer(kGlobalFooter);
  return s;
}

// "kiln projects config set" for the subcommands given on the command line.
std::string CommandPath(CLI::App& app) {
  std::string path = "kiln";
  CLI::App* cur = &app;
  while (!cur->get_subcommands().empty()) {
    cur = cur->get_subcommands().front();
    path += " " + cur->get_name();
  }
  return path;
}

// "unknown command "x" for kiln projects; expected one of: list, create, ..."
std::string MissingSubcommand(CLI::App& app) {
  CLI::App* cur = &app;
  while (!cur->get_subcommands().empty()) cur = cur->get_subcommands().front();
  std::string names;
  for (const CLI::App* s : cur->get_subcommands({})) names += (names.empty() ? "" : ", ") + s->get_name();
  std::vector<std::string> rest = app.remaining(true);
  std::string what = rest.empty() ? "missing command" : "unknown command \"" + rest.front() + "\"";
  return what + " for " + CommandPath(app) + "; expected one of: " + names;
}

// Reads a whole small file (a CA certificate, a token).
Result<std::string> Slurp(const std::string& path) {
  auto data = ReadWholeFile(path);
  if (data.ok() && data->size() > (1 << 20)) return InvalidArgument(path + " is too large to be a certificate or token");
  return data;
}

std::string ConfigDir() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x != nullptr && *x != '\0') return std::string(x) + "/kiln";
  if (const char* h = std::getenv("HOME"); h != nullptr && *h != '\0') return std::string(h) + "/.config/kiln";
  return "";
}

// The CA and token, from flags, the environment or the default places.
Status LoadCredentials(const std::string& ca_file, const std::string& token_file, ClientOptions& o) {
  const std::string dir = ConfigDir();
  if (!o.insecure) {
    std::vector<std::string> tries;
    if (!ca_file.empty()) tries = {ca_file};
    else tries = {dir + "/ca.crt", "/etc/kiln/ca.crt"};
    for (const auto& p : tries) {
      auto pem = Slurp(p);
      if (pem.ok()) {
        o.ca_pem = *pem;
        break;
      }
      if (!ca_file.empty()) return InvalidArgument("--ca / KILN_CA: " + pem.status().message());
    }
    if (o.ca_pem.empty()) {
      return InvalidArgument("no CA certificate to check the controller with: set KILN_CA or --ca to the farm's "
                             "ca.crt (or put it in " + dir + "/ca.crt), or --insecure for a plaintext controller");
    }
  }
  if (const char* t = std::getenv("KILN_TOKEN"); t != nullptr && *t != '\0' && token_file.empty()) {
    o.token = Trim(t);
    return Status::Ok();
  }
  std::string path = token_file.empty() ? dir + "/token" : token_file;
  auto text = Slurp(path);
  if (text.ok()) o.token = Trim(*text);
  else if (!token_file.empty()) return InvalidArgument("--token-file / KILN_TOKEN_FILE: " + text.status().message());
  // No token at all: calls fail with the controller's own explanation.
  return Status::Ok();
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"kiln: submit builds to a kiln build farm and inspect jobs, workers, projects and clusters.", "kiln"};
  app.fallthrough();  // global options also after the subcommand
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("kiln ") + kVersion);
  app.footer(
      "Exit codes: 0 ok; 2 usage error; 3 controller unreachable or too slow; 4 not found; 5 other error from "
      "the controller; 6 not allowed (no token, or the token may not). kiln submit (without --detach) exits like the job: its exit code, 124 timed out, "
      "128+N killed by signal N, 130 cancelled, 125 lost or failed without an exit code.");

  Globals g;
  std::string controller = "127.0.0.1:7070";
  std::string timeout_text = "30s";
  app.add_option("--controller", controller, "kiln-controller address, host:port")
      ->envname("KILN_CONTROLLER")
      ->type_name("ADDR")
      ->capture_default_str();
  app.add_flag("--json", g.json, "machine-readable output: protobuf messages as JSON");
  app.add_option("--timeout", timeout_text, "deadline of each call to the controller, e.g. 500ms, 30s, 2m")
      ->type_name("DUR")
      ->capture_default_str();
  std::string ca_file, token_file;
  bool insecure = false;
  app.add_option("--ca", ca_file,
                 "the farm's CA certificate, to check the controller's (default: ~/.config/kiln/ca.crt, else "
                 "/etc/kiln/ca.crt)")
      ->envname("KILN_CA")
      ->type_name("FILE");
  app.add_option("--token-file", token_file,
                 "file holding your API token (default: KILN_TOKEN, else ~/.config/kiln/token); never give a token "
                 "on the command line, where ps shows it")
      ->envname("KILN_TOKEN_FILE")
      ->type_name("FILE");
  app.add_flag("--insecure", insecure, "plaintext, for a controller with insecure = true (loopback only)")
      ->envname("KILN_INSECURE");

  std::function<int(Client&)> action;

  // submit
  SubmitArgs submit;
  int priority = 0;
  auto* sub = Sub(&app, "submit", "Queue a build command; follow its log and exit like it (or --detach)");
  sub->footer(std::string("Give the command after --: kiln submit [OPTIONS] -- CMD ARGS...\n") + kGlobalFooter);
  sub->add_option("--project", submit.project, "project the job belongs to")->capture_default_str();
  sub->add_option("--cluster", submit.cluster, "run only on this cluster (must be mapped to the project)");
  auto* prio = sub->add_option("--priority", priority, "higher runs first; default: the project's")
                   ->check(CLI::Range(-1000, 1000));
  sub->add_option("--max-attempts", submit.max_attempts,
                  "attempts before giving up on lost workers and workers' infrastructure failures")
      ->check(CLI::Range(1, 100));
  sub->add_option("--timeout-s", submit.timeout_s, "kill the build after this many seconds; default: the project's")
      ->check(CLI::Range(int64_t{1}, int64_t{604800}));
  sub->add_option("--env", submit.env, "environment variable for the build, KEY=VALUE (repeatable)")
      ->allow_extra_args(false)
      ->type_name("KEY=VALUE");
  sub->add_option("--secret-env", submit.secret_env,
                  "secret environment variable for the build, its value taken from yours (repeatable): never shown "
                  "by kiln, masked as *** in the log, not kept once the job ends; the job is not action-cached")
      ->allow_extra_args(false)
      ->type_name("NAME");
  sub->add_option("--secret-file", submit.secret_file,
                  "secret environment variable whose value is the content of a file (one final newline dropped), "
                  "as --secret-env (repeatable)")
      ->allow_extra_args(false)
      ->type_name("NAME=PATH");
  sub->add_option("--require", submit.require, "worker property to require, KEY=VALUE, e.g. arch=aarch64 (repeatable)")
      ->allow_extra_args(false)
      ->type_name("KEY=VALUE");
  sub->add_option("--workdir", submit.workdir, "directory to run in, relative to the job's work directory");
  sub->add_flag("--detach", submit.detach, "print the job id (or the job as JSON with --json) and exit");
  sub->add_option("--request-id", submit.request_id, "idempotency key: submitting it again returns the same job");
  sub->add_option("--input", submit.input,
                  "directory sent as the build's input tree; the build runs at its root (default: .)")
      ->type_name("DIR");
  sub->add_flag("--no-input", submit.no_input, "send no tree: the build runs in an empty directory");
  sub->add_option("--include", submit.include,
                  "send only files matching this glob (relative path; a directory match takes all under it; repeatable)")
      ->type_name("GLOB")
      ->allow_extra_args(false);
  sub->add_option("--exclude", submit.exclude, "do not send files matching this glob (repeatable)")
      ->type_name("GLOB")
      ->allow_extra_args(false);
  sub->add_flag("--no-gitignore", submit.no_gitignore,
                "in a git checkout, send every file, not git's list (tracked and untracked, not ignored)");
  sub->add_flag("--no-hash-cache", submit.no_hash_cache, "hash every file, ignoring the local hash cache");
  sub->add_flag("--no-cache", submit.no_cache,
                "run the build even if the farm has the result of an identical one (the result is still cached)");
  sub->add_flag("--no-compile-cache", submit.no_compile_cache,
                "run without the compile cache's wrapper: every translation unit compiles (the project setting "
                "compile_cache = false does this for all its jobs)");
  sub->add_option("--workspace", submit.workspace,
                  "persistent: build in this project's warm workspace on the worker that holds it, so make "
                  "rebuilds only what changed; fresh: a clean directory (default: the project's setting, else fresh)")
      ->check(CLI::IsMember({"fresh", "persistent"}))
      ->type_name("MODE");
  sub->add_option("--workspace-name", submit.workspace_name,
                  "which warm workspace (default: the input directory's git branch, else \"default\")")
      ->type_name("NAME");
  sub->add_option("--output", submit.outputs,
                  "file or directory the build produces, relative to the tree's root; downloaded after success "
                  "(repeatable). What kiln downloaded there is not an input of the next submit of this command "
                  "while its bytes are unchanged, so an identical rebuild hits the action cache; edit it and it "
                  "is an input again. A file kiln did not write first (e.g. shipped in the tree) stays an input")
      ->type_name("PATH")
      ->allow_extra_args(false);
  sub->add_option("--outputs-dir", submit.outputs_dir,
                  "where outputs land (default: the --input directory); inside the tree, what kiln downloaded "
                  "there and is unchanged is not an input either")
      ->type_name("DIR");
  sub->add_option("--image", submit.image,
                  "run in this imported OCI image, sha256:<digest> (kiln image list); default: the project's image")
      ->type_name("DIGEST");
  sub->add_option("--memory", submit.memory, "memory limit in the container, e.g. 2GiB (default and cap: the worker's)")
      ->type_name("SIZE");
  sub->add_option("--disk", submit.disk,
                  "disk for what the build writes (outputs, changed inputs), e.g. 10GiB; past it the build gets "
                  "ENOSPC and the job ends with limit=disk (default and cap: the worker's disk_max)")
      ->type_name("SIZE");
  sub->add_option("--pids", submit.pids, "most processes and threads at once in the container")->type_name("N");
  sub->add_option("--cpus", submit.cpus, "CPU time, in CPUs (e.g. 1.5)")->type_name("N");
  sub->add_option("command", submit.command, "the command to run and its arguments, after --")->type_name("CMD");
  sub->callback([&] {
    if (prio->count() > 0) submit.priority = priority;
    action = [&](Client& c) { return RunSubmit(c, g, submit); };
  });

  // status
  std::string status_id;
  auto* st = Sub(&app, "status", "Show a job's state, times and outcome");
  st->add_option("id", status_id, "job id")->type_name("ID")->required();
  st->callback([&] { action = [&](Client& c) { return RunStatus(c, g, status_id); }; });

  // why
  WhyArgs why;
  auto* wy = Sub(&app, "why",
                 "Say why a job was or was not served from the cache, what changed, and which translation units "
                 "missed the compile cache and why");
  wy->add_option("id", why.job_id, "job id")->type_name("ID")->required();
  wy->add_option("--max-paths", why.max_paths, "list at most this many changed paths (default 200)")
      ->check(CLI::Range(1, 10000));
  wy->callback([&] { action = [&](Client& c) { return RunWhy(c, g, why); }; });

  // cache
  auto* ca = Sub(&app, "cache",
                 "The compile cache: statistics, which translation units a header affects, and the scopes "
                 "projects share cache entries in");
  ca->require_subcommand(1);
  CacheStatsArgs cstats;
  auto* cs = Sub(ca, "stats", "Hits, misses by reason, fallbacks, bytes and time saved of a project's compile cache");
  cs->add_option("--project", cstats.project, "project")->capture_default_str();
  cs->add_option("--since", cstats.since, "only jobs of the last DUR, e.g. 1h, 7d")->type_name("DUR");
  cs->callback([&] { action = [&](Client& c) { return RunCacheStats(c, g, cstats); }; });
  CacheImpactArgs cimpact;
  auto* ci = Sub(ca, "impact", "List the cached translation units that read a header (what changing it recompiles)");
  ci->add_option("path", cimpact.path, "the header, relative to the input tree's root or absolute in the build (/src/...)")
      ->type_name("PATH")
      ->required();
  ci->add_option("--project", cimpact.project, "project")->capture_default_str();
  ci->add_option("--limit", cimpact.limit, "list at most this many (default 1000)")->check(CLI::Range(1, 100000));
  ci->callback([&] { action = [&](Client& c) { return RunCacheImpact(c, g, cimpact); }; });
  auto* csc = Sub(ca, "scopes",
                  "Shared cache scopes (admin): only the projects a scope lists share its action and compile cache "
                  "entries; a project's cache_scope setting must name one that lists it");
  csc->require_subcommand(1);
  std::string scope_name;
  std::vector<std::string> scope_projects;
  auto* css = Sub(csc, "set",
                  "Create a shared cache scope, or replace the projects it lists; projects left out use their own "
                  "scope from their next job");
  css->add_option("name", scope_name, "the scope's name (what projects' cache_scope names)")
      ->type_name("NAME")
      ->required();
  css->add_option("--project", scope_projects, "a project that shares the scope (repeatable; at least one)")
      ->type_name("PROJECT")
      ->allow_extra_args(false)
      ->required();
  css->callback([&] { action = [&](Client& c) { return RunCacheScopesSet(c, g, scope_name, scope_projects); }; });
  auto* csl = Sub(csc, "list", "List shared cache scopes and the projects each lists");
  csl->callback([&] { action = [&](Client& c) { return RunCacheScopesList(c, g); }; });
  auto* csr = Sub(csc, "rm",
                  "Remove a shared cache scope: its projects use their own scopes from their next job (its entries "
                  "stay until they expire)");
  csr->add_option("name", scope_name, "the scope's name")->type_name("NAME")->required();
  csr->callback([&] { action = [&](Client& c) { return RunCacheScopesRemove(c, g, scope_name); }; });

  // workspace
  auto* wsp = Sub(&app, "workspace", "Warm workspaces kept on workers (list, rm)");
  wsp->require_subcommand(1);
  std::string ws_project, ws_name;
  auto* wl = Sub(wsp, "list", "Warm workspaces: project, name, the worker holding it, size, the tree it holds");
  wl->add_option("--project", ws_project, "only this project's");
  wl->callback([&] { action = [&](Client& c) { return RunWorkspaceList(c, g, ws_project); }; });
  auto* wr = Sub(wsp, "rm", "Delete a warm workspace on every worker (the next build starts clean)");
  wr->add_option("name", ws_name, "the workspace's name (e.g. the branch)")->type_name("NAME")->required();
  std::string ws_rm_project = "default";
  wr->add_option("--project", ws_rm_project, "project")->capture_default_str();
  wr->callback([&] { action = [&](Client& c) { return RunWorkspaceRemove(c, g, ws_rm_project, ws_name); }; });

  // image
  auto* im = Sub(&app, "image", "OCI images builds run in (import, list, rm)");
  im->require_subcommand(1);
  ImageImportArgs imp;
  auto* imi = im->add_subcommand("import", "Store an image in CAS and print its digest");
  imi->add_option("path", imp.path, "OCI image layout directory, OCI archive (tar), or a root filesystem tarball")
      ->type_name("PATH")
      ->required();
  imi->add_option("--name", imp.name, "a label shown by kiln image list");
  imi->add_option("--ref", imp.ref, "the image to take from a layout that holds several (its ref name)");
  imi->callback([&] { action = [&](Client& c) { return RunImageImport(c, g, imp); }; });
  auto* iml = im->add_subcommand("list", "Imported images, newest first");
  iml->callback([&] { action = [&](Client& c) { return RunImageList(c, g); }; });
  std::string rm_digest;
  auto* imr = im->add_subcommand("rm", "Forget an image (refused while jobs that have not ended use it)");
  imr->add_option("digest", rm_digest, "sha256:<digest>")->type_name("DIGEST")->required();
  imr->callback([&] { action = [&](Client& c) { return RunImageRemove(c, g, rm_digest); }; });

  // outputs
  OutputsArgs outs;
  auto* op = Sub(&app, "outputs", "Download a finished job's declared outputs");
  op->add_option("id", outs.job_id, "job id")->type_name("ID")->required();
  op->add_option("--dest", outs.dest, "directory to write them into (default: .)")->type_name("DIR");
  op->callback([&] { action = [&](Client& c) { return RunOutputs(c, g, outs); }; });

  // logs
  LogsArgs logs;
  auto* lg = Sub(&app, "logs", "Print a job's log (exit 4, saying why, if the log quotas removed it)");
  lg->add_flag("-f,--follow", logs.follow, "keep printing until the job ended");
  lg->add_option("--attempt", logs.attempt, "the log of this attempt; default: the current one")
      ->check(CLI::Range(1, 1000000).description("a positive number"));
  lg->add_option("id", logs.job_id, "job id")->type_name("ID")->required();
  lg->callback([&] { action = [&](Client& c) { return RunLogs(c, g, logs); }; });

  // cancel
  CancelArgs cancel;
  auto* cn = Sub(&app, "cancel", "Cancel a job and wait until it stopped");
  cn->add_option("id", cancel.job_id, "job id")->type_name("ID")->required();
  cn->add_option("--reason", cancel.reason, "why, recorded with the job");
  cn->add_flag("--no-wait", cancel.no_wait, "return once the cancel is requested");
  cn->callback([&] { action = [&](Client& c) { return RunCancel(c, g, cancel); }; });

  // list
  ListArgs list;
  auto* ls = Sub(&app, "list", "List recent jobs, newest first");
  ls->add_option("--project", list.project, "only this project's jobs");
  ls->add_option("--status", list.statuses, "only jobs in this state (repeatable or comma-separated): "
                                            "queued, setup, running, succeeded, failed, cancelled, lost")
      ->delimiter(',')
      ->allow_extra_args(false)
      ->type_name("STATUS");
  ls->add_option("--limit", list.limit, "at most this many jobs (default 50)")->check(CLI::Range(1, 1000));
  ls->callback([&] { action = [&](Client& c) { return RunList(c, g, list); }; });

  // workers
  bool all_workers = false;
  auto* wk = Sub(&app, "workers", "List workers; enrol (join-token) and revoke them");
  wk->add_flag("--all", all_workers, "include disconnected and lost workers");
  wk->callback([&] {
    if (wk->get_subcommands().empty()) action = [&](Client& c) { return RunWorkers(c, g, all_workers); };
  });
  std::string join_expires, revoke_worker;
  auto* wj = Sub(wk, "join-token", "Create a single-use join token that enrols one new worker (admin)");
  wj->add_option("--expires", join_expires, "lifetime, e.g. 10m, 1h (default 1h)")->type_name("DUR");
  wj->callback([&] { action = [&](Client& c) { return RunJoinToken(c, g, join_expires); }; });
  auto* wrv = Sub(wk, "revoke", "Revoke a worker's certificate: it is disconnected and its jobs requeued (admin)");
  wrv->add_option("id", revoke_worker, "worker id (kiln workers --all)")->required();
  wrv->callback([&] { action = [&](Client& c) { return RunWorkersRevoke(c, g, revoke_worker); }; });

  // tokens
  auto* tk = Sub(&app, "tokens", "API tokens: create, list, revoke (admin)");
  tk->require_subcommand(1);
  TokenCreateArgs token_args;
  auto* tc = Sub(tk, "create", "Create a token and print it (shown once)");
  tc->add_option("--role", token_args.role, "read (watch jobs, logs, outputs), submit (also submit and cancel) or "
                                            "admin (manage the farm)")
      ->required()
      ->check(CLI::IsMember({"read", "submit", "admin"}));
  tc->add_option("--project", token_args.projects, "project a read or submit token may act on (repeatable)")
      ->allow_extra_args(false);
  tc->add_option("--expires", token_args.expires, "lifetime, e.g. 30d, 12h (default: never)")->type_name("DUR");
  tc->add_option("--description", token_args.description, "what the token is for");
  tc->callback([&] { action = [&](Client& c) { return RunTokensCreate(c, g, token_args); }; });
  auto* tl = Sub(tk, "list", "List tokens (never their secrets)");
  tl->callback([&] { action = [&](Client& c) { return RunTokensList(c, g); }; });
  std::string revoke_token;
  auto* tr = Sub(tk, "revoke", "Revoke a token at once");
  tr->add_option("id", revoke_token, "token id (the 12 hex after kiln_)")->required();
  tr->callback([&] { action = [&](Client& c) { return RunTokensRevoke(c, g, revoke_token); }; });
  auto* who = Sub(&app, "whoami", "Show the API token in use: its role, projects and expiry");
  who->callback([&] { action = [&](Client& c) { return RunWhoAmI(c, g); }; });

  // audit
  AuditArgs audit;
  auto* au = Sub(&app, "audit",
                 "List the audit trail, newest first: every change made through the API (submits, cancels, projects, "
                 "clusters, cache scopes, workspaces, images, tokens, workers) with who made it (token, worker or join "
                 "token), from which address, when, and what changed. An admin token lists every row; a read token "
                 "lists one of its projects' rows with --project");
  au->add_option("--project", audit.project, "only this project's changes (a token that is not an admin's must give it)")
      ->type_name("PROJECT");
  au->add_option("--since", audit.since, "only changes of the last DUR, e.g. 1h, 7d")->type_name("DUR");
  au->add_option("--limit", audit.limit, "at most this many rows (default 100)")->check(CLI::Range(1, 100000));
  au->callback([&] { action = [&](Client& c) { return RunAudit(c, g, audit); }; });

  // stats
  StatsArgs stats;
  auto* stt = Sub(&app, "stats",
                  "Show the farm's history for a window: jobs, success rate, queue wait p50/p95/p99, run time "
                  "p50/p95, action and compile cache hit rates, the time the caches saved, worker utilisation per "
                  "cluster, and the slowest and most-missed translation units. An admin token sees every project; "
                  "a read token one of its projects with --project. The SQL behind it is a set of views "
                  "(docs/operations.md, \"History in SQL\")");
  stt->add_option("--project", stats.project, "only this project (a token that is not an admin's must give it)")
      ->type_name("PROJECT");
  stt->add_option("--since", stats.since, "the window: jobs that ended in the last DUR, e.g. 1h, 7d (default 1d)")
      ->type_name("DUR");
  stt->callback([&] { action = [&](Client& c) { return RunStats(c, g, stats); }; });

  // projects
  auto* pr = Sub(&app, "projects", "Manage projects");
  pr->require_subcommand(1);
  auto* pl = Sub(pr, "list", "List projects");
  pl->callback([&] { action = [&](Client& c) { return RunProjectsList(c, g); }; });
  std::string project_name, project_config;
  auto* pc = Sub(pr, "create", "Create a project");
  pc->add_option("name", project_name, "project name")->required();
  pc->add_option("--config", project_config, "configuration: JSON text, @FILE or - for standard input");
  pc->callback([&] { action = [&](Client& c) { return RunProjectsCreate(c, g, project_name, project_config); }; });
  auto* ps = Sub(pr, "show", "Show a project, its clusters and configuration");
  ps->add_option("name", project_name, "project name")->required();
  ps->callback([&] { action = [&](Client& c) { return RunProjectsShow(c, g, project_name); }; });
  auto* pcfg = Sub(pr, "config", "Read or replace a project's configuration");
  pcfg->require_subcommand(1);
  auto* pget = Sub(pcfg, "get", "Print the configuration as JSON");
  pget->add_option("name", project_name, "project name")->required();
  pget->callback([&] { action = [&](Client& c) { return RunProjectsConfigGet(c, g, project_name); }; });
  auto* pset = Sub(pcfg, "set", "Replace the configuration (validated here first)");
  pset->add_option("name", project_name, "project name")->required();
  pset->add_option("config", project_config, "JSON text, @FILE, or - for standard input")->required();
  pset->callback([&] { action = [&](Client& c) { return RunProjectsConfigSet(c, g, project_name, project_config); }; });

  // clusters
  auto* cl = Sub(&app, "clusters",
                 "Manage clusters, which projects they serve and their desired state (alone: kiln clusters list)");
  cl->require_subcommand(0, 1);
  cl->callback([&] {
    if (cl->get_subcommands().empty()) action = [&](Client& c) { return RunClustersList(c, g); };
  });
  auto* cll = Sub(cl, "list", "List clusters and their desired state");
  cll->callback([&] { action = [&](Client& c) { return RunClustersList(c, g); }; });
  ClustersSetArgs cset;
  auto* cls = Sub(cl, "set",
                  "Set a cluster's desired state: the flags given change, the others keep their value (a cluster "
                  "not managed yet starts from the defaults in docs/operations.md, \"Cluster state\"). Admin token; "
                  "validated as a whole, an error changes nothing; recorded in the audit trail");
  cls->add_option("name", cset.name, "cluster name")->required();
  cls->add_option("--min", cset.min, "fewest workers")->type_name("N");
  cls->add_option("--max", cset.max, "most workers")->type_name("N");
  cls->add_option("--slots", cset.slots, "slots of each worker deployed")->type_name("N");
  cls->add_option("--label", cset.labels, "a label of each worker deployed (repeated; replaces the labels)")
      ->type_name("K=V");
  cls->add_flag("--no-labels", cset.no_labels, "deploy workers without labels");
  cls->add_option("--provider", cset.provider, "what starts workers: process, systemd or command")->type_name("NAME");
  cls->add_option("--provider-settings", cset.provider_settings,
                  "the provider's settings: a JSON object, @FILE or - for standard input")
      ->type_name("JSON");
  cls->add_option("--worker-config", cset.worker_config,
                  "further kiln-worker settings to deploy: a JSON object of config keys, @FILE or -")
      ->type_name("JSON");
  cls->add_option("--target-queue-wait", cset.target_queue_wait, "scale up while jobs wait longer (0: off)")
      ->type_name("DUR");
  cls->add_option("--jobs-per-slot", cset.jobs_per_slot, "queued and running jobs one slot should carry")
      ->type_name("X");
  cls->add_option("--scale-up-step", cset.scale_up_step, "at most this many workers more per decision")
      ->type_name("N");
  cls->add_option("--scale-up-cooldown", cset.scale_up_cooldown, "after a change, no scale-up before this")
      ->type_name("DUR");
  cls->add_option("--scale-down-cooldown", cset.scale_down_cooldown, "after a change, no scale-down before this")
      ->type_name("DUR");
  cls->add_option("--scale-in-delay", cset.scale_in_delay, "how long a worker stays idle before it is drained")
      ->type_name("DUR");
  cls->callback([&] { action = [&](Client& c) { return RunClustersSet(c, g, cset); }; });
  std::string cluster_name, map_project;
  for (bool apply : {false, true}) {
    auto* pa = Sub(cl, apply ? "apply" : "plan",
                   apply ? "Carry out the plan: start, drain, replace and destroy workers through the cluster's "
                           "provider (admin)"
                         : "Show what apply would do to bring managed clusters to their desired state, like a "
                           "Terraform plan; changes nothing");
    pa->add_option("name", cluster_name, "cluster name (default: every managed cluster)");
    pa->callback([&, apply] { action = [&, apply](Client& c) { return RunClustersPlan(c, g, cluster_name, apply); }; });
  }
  int history_limit = 20;
  auto* clh = Sub(cl, "history",
                  "Show the autoscaler's decisions for a cluster, oldest first: when, what it saw (queued and running "
                  "jobs, queued actions, the oldest wait, slots), what it decided and why, and the steps it carried out");
  clh->add_option("name", cluster_name, "cluster name")->required();
  clh->add_option("--limit", history_limit, "the newest N decisions (1 to 1000)")
      ->type_name("N")
      ->check(CLI::Range(1, 1000));
  clh->callback([&] { action = [&](Client& c) { return RunClustersHistory(c, g, cluster_name, history_limit); }; });
  auto* clsh = Sub(cl, "show", "Show a cluster, its projects and its desired state");
  clsh->add_option("name", cluster_name, "cluster name")->required();
  clsh->callback([&] { action = [&](Client& c) { return RunClustersShow(c, g, cluster_name); }; });
  auto* clc = Sub(cl, "create", "Create a cluster");
  clc->add_option("name", cluster_name, "cluster name")->required();
  clc->callback([&] { action = [&](Client& c) { return RunClustersCreate(c, g, cluster_name); }; });
  for (bool unmap : {false, true}) {
    auto* m = Sub(cl, unmap ? "unmap" : "map",
                  unmap ? "Stop running a project's jobs on a cluster" : "Let a cluster run a project's jobs");
    m->add_option("cluster", cluster_name, "cluster name")->required();
    m->add_option("project", map_project, "project name")->required();
    m->callback([&, unmap] {
      action = [&, unmap](Client& c) { return RunClustersMap(c, g, cluster_name, map_project, unmap); };
    });
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::string msg = e.what();
    if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr && msg.find("subcommand") != std::string::npos) {
      msg = MissingSubcommand(app);
    }
    if (CommandPath(app) == "kiln submit" && dynamic_cast<const CLI::ExtrasError*>(&e) != nullptr) {
      msg += " (give the command to run after --: kiln submit [OPTIONS] -- CMD ARGS...)";
    }
    UsageError(msg);
    std::fprintf(stderr, "Run '%s --help' for usage.\n", CommandPath(app).c_str());
    return kExitUsage;
  }

  auto timeout = ParseDuration(timeout_text);
  if (!timeout.ok()) return UsageError("--timeout: " + timeout.status().message());
  if (timeout->count() <= 0) return UsageError("--timeout must be greater than zero");
  g.controller = controller;
  g.timeout = *timeout;
  if (!action) return UsageError("no command given; run 'kiln --help'");

  ClientOptions options;
  options.address = controller;
  options.timeout = *timeout;
  options.insecure = insecure;
  if (Status s = LoadCredentials(ca_file, token_file, options); !s.ok()) return UsageError(s.message());
  auto client = Client::Connect(options);
  return action(*client);
}

}  // namespace kiln::cli
