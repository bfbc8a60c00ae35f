#pragma once
// Plain data types of the build queue, free of libpqxx and gRPC.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::queue {

enum class JobStatus { kQueued, kSetup, kRunning, kSucceeded, kFailed, kCancelled, kLost };

// "queued", "setup", ... as stored in build_jobs.status.
const char* ToString(JobStatus s);
// Inverse of ToString; nullopt for anything else.
std::optional<JobStatus> ParseJobStatus(std::string_view s);
bool IsTerminal(JobStatus s);

struct JobSpec {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string working_dir;
  int64_t timeout_s = 0;
  std::map<std::string, std::string> requirements;  // matched against worker properties
  std::string input_root;            // "<sha256 hex>/<size>" of the input tree, or empty
  std::vector<std::string> outputs;  // declared output paths, relative to the tree's root
  std::string image;                 // "sha256:<hex>" manifest digest, or empty
  int64_t memory_bytes = 0;          // 0: the worker's cap
  int64_t disk_bytes = 0;            // 0: the worker's cap
  int pids = 0;
  int cpu_millis = 0;
  bool no_compile_cache = false;     // no kiln-cc wrapper in the container
  std::string workspace;             // "persistent", "fresh", or "" (the project's setting)
  std::string workspace_name;        // the persistent workspace's name (e.g. a branch)
  // Input paths the CLI left out as unchanged downloaded outputs; shown by
  // kiln why and status, never part of the action digest.
  std::vector<std::string> excluded_outputs;
  // Names of the secret environment variables, sorted; their values are
  // sealed in job_secrets until the job ends (never in this spec).
  std::vector<std::string> secret_names;
};

struct JobResult {
  int exit_code = -1;
  int term_signal = 0;
  std::string error;
  bool timed_out = false;
  std::string output_root;  // "<sha256 hex>/<size>" of the outputs' tree, or empty
  std::string limit;        // "timeout", "memory", "pids": the limit that ended it
  int64_t cached_from = 0;  // served from the action cache: the job whose run produced it
  bool infrastructure = false;  // the worker's failure, not the build's: retried elsewhere while attempts remain
};

// A job's log removed by the log quotas: its own, or for a job served from
// the action cache (or one that took an identical job's result) its
// producer's, whose log was its log.
struct LogRemoval {
  int64_t job_id = 0;      // whose log was removed
  int64_t removed_ms = 0;
  std::string reason;      // "retention", "project_log_max_bytes" or "log_max_bytes"
  std::string detail;      // e.g. "older than project web's log_retention of 30d"
  int64_t bytes = 0;       // what it held, every attempt
};

struct Job {
  int64_t id = 0;
  std::string project;
  std::string cluster;  // pinned cluster or empty
  int priority = 0;
  JobStatus status = JobStatus::kQueued;
  int attempt = 0;
  int max_attempts = 0;
  std::string worker_id;
  JobSpec spec;
  std::string request_id;
  int64_t submitted_ms = 0, queued_ms = 0, started_ms = 0, finished_ms = 0;
  std::optional<JobResult> result;
  int64_t log_size = 0;
  bool cancel_requested = false;
  int64_t waits_for = 0;  // an identical job in flight whose result this one takes (0: none)
  std::optional<LogRemoval> log_removed;
};

struct NewJob {
  std::string project;
  std::string cluster;  // optional pin
  int priority = 0;
  int max_attempts = 3;
  std::string request_id;  // optional idempotency key, unique per project
  JobSpec spec;
  // Action cache: the digest (empty: not cacheable) and its scope. no_cache
  // skips the lookup and the in-flight de-duplication; a success is still
  // recorded.
  std::string action_digest;
  std::string cache_scope;
  bool no_cache = false;
  // The secret env values (spec.secret_names), sealed (auth::SecretBox):
  // kept in job_secrets until the job ends. Empty: none.
  std::string sealed_secrets;
};

struct SubmitOutcome {
  Job job;
  bool existing = false;  // the request id named an earlier, identical submit
};

// A job handed to a worker by Claim.
struct Claimed {
  int64_t id = 0;
  int attempt = 0;
  std::string project;
  JobSpec spec;
  std::string sealed_secrets;  // NewJob::sealed_secrets, empty for none
  double since_submit_s = 0;   // seconds from its submit to this claim (for metrics)
  double since_queued_s = 0;   // ... from its last requeue (or its submit) to this claim
};

// Where a final report's job spent its time on the worker (unix ms of the
// worker's clock, 0: the phase did not happen) and what it moved; stored in
// job_timings with the report (sql/016).
struct JobTimings {
  int64_t received_ms = 0;  // the assignment arrived
  int64_t inputs_ms = 0;    // the input tree (or warm workspace) was ready
  int64_t image_ms = 0;     // the image was ready (container jobs)
  int64_t ended_ms = 0;     // the build's process ended
  int64_t input_bytes = 0;  // fetched from CAS for the inputs
  int64_t output_bytes = 0; // uploaded to CAS as outputs
  int64_t log_bytes = 0;
};

// A state change reported by a worker, applied only while the job is still
// held by that worker at that attempt.
struct Update {
  std::string worker_id;
  std::string worker_cert;  // the serial of the certificate it reported under ("" without TLS)
  int64_t job_id = 0;
  int attempt = 0;
  JobStatus status = JobStatus::kRunning;  // running, succeeded, failed, cancelled; queued = hand back
  std::optional<JobResult> result;
  int64_t started_ms = 0;
  int64_t finished_ms = 0;
  std::optional<JobTimings> timings;  // final reports: recorded in job_timings
};

struct LogAppend {
  std::string worker_id;
  int64_t job_id = 0;
  int attempt = 0;
  int64_t offset = 0;  // within the attempt's log
  std::string data;
};

struct UpdateOutcome {
  int64_t job_id = 0;
  int attempt = 0;
  bool applied = false;  // false: stale (another attempt owns the job, or it ended)
  JobStatus status = JobStatus::kQueued;  // the stored status if applied, else the one reported
};

struct JobRef {
  int64_t job_id = 0;
  int attempt = 0;
};

struct WorkerRegistration {
  std::string id;
  std::string hostname;
  std::string cluster;
  std::string arch;
  std::string os;
  std::map<std::string, std::string> labels;
  int slots = 0;
  std::string version;
  std::string controller_id;
  std::string session;
  bool draining = false;
  std::string work_dir;  // absolute; empty from older workers
};

struct WorkerRow {
  std::string id, hostname, cluster, state, version;
  std::map<std::string, std::string> properties;  // arch, os and labels
  int slots = 0;
  int running = 0;
  int64_t last_heartbeat_ms = 0;
  std::string health = "healthy";  // or unhealthy (sql/020)
  std::string health_reason;
  int64_t health_since_ms = 0;
};

struct ProjectRow {
  std::string name;
  std::string config_json;
  int64_t updated_at_ms = 0;
  std::vector<std::string> clusters;
  // The shared cache scope its jobs use: the configuration's cache_scope if
  // that scope exists and lists the project (sql/010), else "" (its own).
  std::string shared_scope;
};

// A shared cache scope: the projects that share action and compile cache
// entries, as an admin listed them.
struct CacheScopeRow {
  std::string name;
  std::vector<std::string> projects;  // sorted, at least one
  std::string created_by;
  int64_t created_at_ms = 0, updated_at_ms = 0;
};

struct WorkspaceRow {
  std::string project, name, worker_id, worker_state;
  std::string root;  // "<hex>/<size>" or empty
  int64_t bytes = 0;
  int64_t updated_ms = 0;
  bool removed = false;
};

struct ClusterRow {
  std::string name;
  std::vector<std::string> projects;
  int workers = 0;  // connected or draining
};

struct ListFilter {
  std::string project;
  std::vector<JobStatus> statuses;
  int limit = 50;
  int64_t before_id = 0;
};

struct LogSlice {
  int attempt = 0;       // the attempt read
  int64_t offset = 0;    // where data starts
  std::string data;
};

// A job that ended without a worker's final report (kiln_jobs_finished_total
// counts it): lost or cancelled with its worker, or completed by the
// identical job it waited for.
struct EndedJob {
  int64_t job_id = 0;
  std::string project;
  JobStatus status = JobStatus::kSucceeded;
};

// Result of a lease sweep or a dropped stream.
struct RequeueOutcome {
  int requeued = 0;
  int lost = 0;       // attempts exhausted
  int cancelled = 0;  // cancel was pending
  std::vector<int64_t> job_ids;
  std::vector<EndedJob> ended;  // the lost and cancelled ones
  bool fenced = false;          // DropWorker: the worker registered again since; nothing done
};

}  // namespace kiln::queue
