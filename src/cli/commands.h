#pragma once
// The kiln subcommands. Each takes parsed arguments, talks to the controller
// through a Client, prints its result and returns the process exit code
// (see main.cpp); none throws.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cli/client.h"

namespace kiln::cli {

// Options shared by every subcommand.
struct Globals {
  std::string controller;                    // address, for messages
  bool json = false;                         // machine-readable output
  std::chrono::milliseconds timeout{30'000};
};

struct SubmitArgs {
  std::string project = "default";
  std::string cluster;
  std::optional<int> priority;
  int max_attempts = 0;
  int64_t timeout_s = 0;
  std::vector<std::string> env;       // KEY=VALUE
  std::vector<std::string> secret_env;   // NAME: the value is this process's $NAME
  std::vector<std::string> secret_file;  // NAME=PATH: the value is the file's content
  std::vector<std::string> require;   // KEY=VALUE
  std::string workdir;
  bool detach = false;
  std::string request_id;             // empty: a random one
  std::vector<std::string> command;
  // The input tree: this directory, as a Merkle tree in CAS.
  std::string input = ".";
  bool no_input = false;              // run in an empty directory
  std::vector<std::string> include, exclude;
  bool no_gitignore = false;
  bool no_hash_cache = false;
  bool no_cache = false;              // skip the action cache lookup
  bool no_compile_cache = false;      // no kiln-cc in the container
  std::string workspace;              // fresh, persistent, or "" (the project's)
  std::string workspace_name;         // "": the input's git branch, else "default"
  std::vector<std::string> outputs;   // declared outputs, relative to the tree's root
  std::string outputs_dir;            // where they land; default: the input directory
  std::string image;                  // sha256:<hex>; empty: the project's
  std::string memory;                 // e.g. 2GiB
  std::string disk;                   // e.g. 10GiB
  int pids = 0;
  double cpus = 0;
};
int RunSubmit(Client& c, const Globals& g, const SubmitArgs& a);

int RunStatus(Client& c, const Globals& g, const std::string& job_id);

struct WhyArgs {
  std::string job_id;
  int max_paths = 200;
};
int RunWhy(Client& c, const Globals& g, const WhyArgs& a);
// The compile cache part of `kiln why` (nothing when the job recorded none).
void PrintCompileSummary(const v1::Explanation& ex, int max_paths);
// The remote compiles of the job `ex` explains, in a line (kiln why and kiln
// status): how many compiled on which other workers and the compile time
// they took off its host, and how many compiled on its host after all; ""
// when remote compiles played no part.
std::string RemoteSummary(const v1::Explanation& ex);
// What a compile event's detail says when a unit that could have gone to
// the farm compiled on the job's host (the worker adds it: the reason follows).
inline constexpr const char* kCompiledHere = " (compiled here: ";

struct CacheStatsArgs {
  std::string project = "default";
  std::string since;  // e.g. 7d; empty: everything kept
};
int RunCacheStats(Client& c, const Globals& g, const CacheStatsArgs& a);

struct CacheImpactArgs {
  std::string project = "default";
  std::string path;
  int limit = 0;
};
int RunCacheImpact(Client& c, const Globals& g, const CacheImpactArgs& a);

// kiln cache scopes set / list / rm (admin).
int RunCacheScopesSet(Client& c, const Globals& g, const std::string& name, const std::vector<std::string>& projects);
int RunCacheScopesList(Client& c, const Globals& g);
int RunCacheScopesRemove(Client& c, const Globals& g, const std::string& name);

struct OutputsArgs {
  std::string job_id;
  std::string dest = ".";
};
int RunOutputs(Client& c, const Globals& g, const OutputsArgs& a);

struct LogsArgs {
  std::string job_id;
  bool follow = false;
  int attempt = 0;
};
int RunLogs(Client& c, const Globals& g, const LogsArgs& a);

struct CancelArgs {
  std::string job_id;
  std::string reason;
  bool no_wait = false;
};
int RunCancel(Client& c, const Globals& g, const CancelArgs& a);

struct ListArgs {
  std::string project;
  std::vector<std::string> statuses;
  int limit = 0;
};
int RunList(Client& c, const Globals& g, const ListArgs& a);

int RunWorkers(Client& c, const Globals& g, bool all);

struct ImageImportArgs {
  std::string path;  // OCI layout directory, OCI archive tar, or a rootfs tar
  std::string name;
  std::string ref;   // which image of a layout holding several
};
int RunImageImport(Client& c, const Globals& g, const ImageImportArgs& a);
int RunImageList(Client& c, const Globals& g);
int RunImageRemove(Client& c, const Globals& g, const std::string& digest);

int RunProjectsList(Client& c, const Globals& g);
int RunProjectsCreate(Client& c, const Globals& g, const std::string& name, const std::string& config);
int RunProjectsShow(Client& c, const Globals& g, const std::string& name);
int RunProjectsConfigGet(Client& c, const Globals& g, const std::string& name);
// `config` is JSON text, @FILE or - (stdin).
int RunProjectsConfigSet(Client& c, const Globals& g, const std::string& name, const std::string& config);

int RunClustersList(Client& c, const Globals& g);
int RunClustersCreate(Client& c, const Globals& g, const std::string& name);
int RunWorkspaceList(Client& c, const Globals& g, const std::string& project);
int RunWorkspaceRemove(Client& c, const Globals& g, const std::string& project, const std::string& name);

struct TokenCreateArgs {
  std::string role;
  std::vector<std::string> projects;
  std::string expires, description;
};
int RunTokensCreate(Client& c, const Globals& g, const TokenCreateArgs& a);
int RunTokensList(Client& c, const Globals& g);
int RunTokensRevoke(Client& c, const Globals& g, const std::string& id);
int RunJoinToken(Client& c, const Globals& g, const std::string& expires);
int RunWorkersRevoke(Client& c, const Globals& g, const std::string& worker_id);
int RunWhoAmI(Client& c, const Globals& g);

// kiln clusters set NAME: only the flags given change.
struct ClustersSetArgs {
  std::string name;
  std::optional<int> min, max, slots, scale_up_step;
  std::vector<std::string> labels;  // K=V; given (or no_labels): replaces the labels
  bool no_labels = false;
  std::optional<std::string> worker_config, provider, provider_settings;  // JSON text, @FILE or -
  std::optional<std::string> target_queue_wait, scale_up_cooldown, scale_down_cooldown, scale_in_delay;  // DUR
  std::optional<double> jobs_per_slot;
};
int RunClustersSet(Client& c, const Globals& g, const ClustersSetArgs& a);
int RunClustersShow(Client& c, const Globals& g, const std::string& name);
// kiln clusters plan / apply [NAME]: exit 0, or 5 when an apply step failed.
int RunClustersPlan(Client& c, const Globals& g, const std::string& name, bool apply);
int RunClustersHistory(Client& c, const Globals& g, const std::string& name, int limit);

int RunClustersMap(Client& c, const Globals& g, const std::string& cluster, const std::string& project, bool unmap);

struct AuditArgs {
  std::string project;  // empty: every row (admin)
  std::string since;    // e.g. 7d; empty: every row kept
  int limit = 100;      // newest first; more than a page is fetched in pages
};
int RunAudit(Client& c, const Globals& g, const AuditArgs& a);

struct StatsArgs {
  std::string project;      // empty: every project (admin)
  std::string since = "1d";  // the window: jobs that ended in the last DUR
};
int RunStats(Client& c, const Globals& g, const StatsArgs& a);

}  // namespace kiln::cli
