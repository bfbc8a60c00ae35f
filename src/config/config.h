#pragma once
// Daemon configuration: one validated, immutable struct per daemon, layered
// defaults -> file -> environment -> flags. Files are "key = value" lines
// with '#' comments (see deploy/*.conf.example).

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::config {

using std::chrono::milliseconds;

struct ControllerConfig {
  std::string listen = "127.0.0.1:7070";
  std::string database_url;                  // required; KILN_DATABASE_URL
  bool migrate_on_start = true;
  int db_pool_size = 8;
  milliseconds heartbeat_interval{2000};     // workers heartbeat this often
  milliseconds lease{10000};                 // a silent worker loses its jobs after this
  milliseconds reap_interval{1000};
  // A worker whose stream drops keeps its jobs this long (at most the lease)
  // to come back; then they are requeued. 0: at once.
  milliseconds reconnect_grace{5000};
  milliseconds dispatch_poll_interval{5000}; // safety net behind LISTEN/NOTIFY
  milliseconds config_poll_interval{2000};
  std::string log_level = "info";
  std::string address_file;                  // write the bound address here once serving
  // Content-addressed storage (a directory every controller of the farm shares).
  std::string cas_dir = "/var/lib/kiln-controller/cas";
  int64_t cas_max_blob_bytes = int64_t{8} << 30;  // larger uploads are refused
  int64_t cas_max_tree_files = 1'000'000;       // entries (files, dirs, symlinks) of one submitted tree
  int64_t cas_max_bytes = 0;                    // collect least recently used blobs past this; 0: no cap
  milliseconds cas_max_age{30LL * 86'400'000};  // collect blobs unused this long
  milliseconds cas_min_age{3'600'000};          // never collect what was used more recently
  milliseconds cas_gc_interval{600'000};
  milliseconds output_retention{7LL * 86'400'000};  // outputs of ended jobs are kept this long
  milliseconds action_cache_max_age{30LL * 86'400'000};  // cache entries unused this long are dropped
  milliseconds compile_cache_max_age{30LL * 86'400'000}; // compile results unused this long are dropped
  milliseconds workspace_grace{10'000};  // a warm workspace's job waits this long for its worker
  // Log quotas (docs/operations.md, "Log quotas"): stored logs of ended jobs.
  // A project's log_retention and log_max_bytes override the first two.
  milliseconds log_retention{30LL * 86'400'000};  // logs of jobs that ended longer ago go; 0: kept for ever
  int64_t project_log_max_bytes = 0;              // per project, oldest first past it; 0: no cap
  int64_t log_max_bytes = int64_t{100} << 30;     // every project together, oldest first past it; 0: no cap
  milliseconds log_prune_interval{600'000};       // how often each controller prunes
  milliseconds audit_retention{365LL * 86'400'000};  // audit rows older than this are pruned; 0: kept forever
  // The farm's history (docs/operations.md, "History in SQL").
  bool job_timings = true;                           // store each job's phase timings with its final report
  milliseconds sample_interval{60'000};              // a sample of the farm's state this often; 0: none
  milliseconds sample_retention{30LL * 86'400'000};  // day partitions of samples older than this go; 0: kept
  // Trust (docs/operations.md, "Trust"). tls_dir holds server.crt and
  // server.key (what clients and workers see), ca.crt and ca.key (the farm's
  // CA, which signs enrolled workers' certificates) and optionally
  // trusted.crt (every CA whose worker certificates are accepted, during a
  // CA rotation; else ca.crt). `kiln-controller certs init` creates them.
  std::string tls_dir = "/etc/kiln-controller/tls";
  // The key that seals jobs' secret env in the database (kiln submit
  // --secret-env); every controller of a farm holds the same one. Empty:
  // tls_dir/secrets.key (certs init creates it). Missing: secrets are refused.
  std::string secrets_key_file;
  bool insecure = false;         // plaintext gRPC: loopback addresses only, unless insecure_remote
  bool insecure_remote = false;  // ... allow plaintext on any address (never on a shared network)
  milliseconds worker_cert_validity{30LL * 86'400'000};  // enrolled workers renew at two thirds of it
  // Prometheus /metrics (docs/operations.md, "Metrics"): HOST:PORT, empty: off.
  std::string metrics_address;
  std::string metrics_address_file;  // write the bound metrics address here (for metrics_address port 0)
  // Health (docs/operations.md, "Health"): a worker whose report fails one
  // of these is unhealthy (no new jobs, no actions) until its checks have
  // passed for health_recover_after.
  int64_t health_min_free_disk = int64_t{1} << 30;  // per store: work_dir, images, cas
  int health_min_free_percent = 5;                  // per store; 0: off
  milliseconds health_max_clock_skew{30'000};
  double health_max_load_per_cpu = 0;               // 0: off
  milliseconds health_recover_after{30'000};
  int health_max_infra_failures = 3;                // jobs' infrastructure failures in the window; 0: off
  milliseconds health_infra_window{600'000};
  // Cluster state (docs/operations.md, "Autoscaler"): the farm's leader
  // sizes each managed cluster and carries out its plan this often; 0: off
  // (kiln clusters apply by hand only).
  milliseconds autoscale_interval{5'000};
};

struct WorkerConfig {
  std::string controller = "127.0.0.1:7070";
  int slots = 0;                             // 0: number of CPUs
  std::string work_dir = "/var/lib/kiln-worker";
  std::string cluster = "default";
  std::string hostname;                      // empty: gethostname()
  std::map<std::string, std::string> labels;
  milliseconds drain_grace{600000};          // SIGTERM: running jobs get this long before hand-back
  int64_t cache_max_bytes = int64_t{10} << 30;  // local CAS cache (work_dir/cas); least recently used go first
  // Containers (runc). "runc": run jobs with an image in containers (the
  // worker must be root); "none": refuse such jobs.
  std::string sandbox = "runc";
  bool allow_plain_jobs = false;     // run jobs without an image as plain processes (trusted pools only)
  int64_t image_cache_bytes = int64_t{20} << 30;  // unpacked images (work_dir/images)
  int sandbox_uid = 100000;          // the build's user and group on the host
  int64_t sandbox_memory_max = int64_t{4} << 30;  // per job: the default and the cap
  int sandbox_pids_max = 4096;
  int sandbox_cpus_max = 0;          // whole CPUs; 0: all
  int64_t sandbox_tmp_bytes = int64_t{1} << 30;   // the container's tmpfs /tmp
  // Per job: the default and the cap of its checkout's own disk (what the
  // build writes: outputs and changed inputs). Past it the build sees ENOSPC.
  int64_t disk_max = int64_t{20} << 30;
  int64_t max_log_bytes = int64_t{64} << 20;      // a job whose log grows past this is stopped
  int64_t max_output_bytes = int64_t{8} << 30;    // declared outputs larger than this fail the job
  // The compile cache: kiln-cc first on PATH in containers, served over a
  // unix socket bound into each one.
  bool compile_cache = true;
  std::string compile_cache_wrapper;              // the kiln-cc binary; empty: beside kiln-worker
  int64_t compile_cache_max_object_bytes = int64_t{256} << 20;  // larger objects are not cached
  int64_t compile_cache_memory_bytes = int64_t{128} << 20;      // recent lookups kept in memory (0: none)
  // Remote actions (docs/architecture.md, "Remote actions"). action_slots:
  // how many other workers' actions (compiles) this one runs at once, in
  // long-lived sandboxes; -1: its number of CPUs; 0: none. remote_compiles:
  // whether its jobs' compile cache misses may compile on other workers.
  int action_slots = -1;
  bool remote_compiles = true;
  int64_t workspace_max_bytes = int64_t{50} << 30;  // warm workspaces (work_dir/workspaces); least recently used go
  std::string log_level = "info";
  // Trust. The worker checks the controller's certificate against ca_file
  // (the farm's CA, copied from the controller's tls_dir/ca.crt), enrols
  // once with a join token (join_token_file or KILN_JOIN_TOKEN) and keeps its
  // key and certificate in work_dir/tls.
  std::string ca_file;
  std::string join_token_file;
  std::string tls_server_name;   // the name the controller's certificate must carry; empty: the host in `controller`
  bool insecure = false;         // plaintext gRPC to a controller with insecure = true
  milliseconds cert_renew_before{0};  // renew this long before expiry; 0: at two thirds of the lifetime
  // Prometheus /metrics (docs/operations.md, "Metrics"): HOST:PORT, empty: off.
  std::string metrics_address;
  std::string metrics_address_file;  // write the bound metrics address here (for metrics_address port 0)
  // Health (docs/operations.md, "Health"): the costly check (whether runc
  // answers) runs this often; disk, load and clock go with every heartbeat.
  milliseconds health_check_interval{60'000};
};

// The settings a running daemon applies when SIGHUP makes it read its config
// file again (marked "reloadable" in deploy/*.conf.example); a change of any
// other needs a restart.
bool ControllerReloadable(const std::string& key);
bool WorkerReloadable(const std::string& key);

// The keys whose values differ between two config files' contents (set in
// one only, or to another value), sorted.
std::vector<std::string> ChangedKeys(const std::map<std::string, std::string>& before,
                                     const std::map<std::string, std::string>& after);

// Reads "key = value" lines. InvalidArgument names the file and line.
Result<std::map<std::string, std::string>> ReadKeyValueFile(const std::string& path);

// Applies one key to a config; InvalidArgument for unknown keys or bad values.
Status Apply(ControllerConfig& c, const std::string& key, const std::string& value);
Status Apply(WorkerConfig& c, const std::string& key, const std::string& value);

// Applies a command line's "--set KEY=VALUE".
template <class Config>
Status ApplySetting(Config& c, const std::string& key_value) {
  auto eq = key_value.find('=');
  if (eq == std::string::npos) return InvalidArgument("--set " + key_value + ": expected KEY=VALUE");
  return Apply(c, key_value.substr(0, eq), key_value.substr(eq + 1));
}

// Whether a listen or dial address stays on this machine: 127.x, [::1],
// localhost or a unix: socket.
bool IsLoopbackAddress(const std::string& address);

// Checks a metrics_address: empty (off) or HOST:PORT with a numeric port.
Status CheckMetricsAddress(const std::string& address);

// Checks cross-field rules (e.g. lease > heartbeat interval).
Status Validate(const ControllerConfig& c);
Status Validate(const WorkerConfig& c);

// Loads a file (if path non-empty) onto the defaults, then the environment
// (KILN_DATABASE_URL, KILN_CONTROLLER).
Result<ControllerConfig> LoadController(const std::string& path);
Result<WorkerConfig> LoadWorker(const std::string& path);

}  // namespace kiln::config
