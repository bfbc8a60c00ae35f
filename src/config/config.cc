#include "config/config.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "common/util.h"

namespace kiln::config {
namespace {

Status ParseBool(const std::string& key, const std::string& v, bool& out) {
  if (v == "true" || v == "on" || v == "yes" || v == "1") out = true;
  else if (v == "false" || v == "off" || v == "no" || v == "0") out = false;
  else return InvalidArgument(key + ": expected true or false, got \"" + v + "\"");
  return Status::Ok();
}

Status ParseInt(const std::string& key, const std::string& v, int lo, int hi, int& out) {
  try {
    size_t used = 0;
    long n = std::stol(v, &used);
    if (used != v.size() || n < lo || n > hi) throw std::out_of_range(v);
    out = static_cast<int>(n);
    return Status::Ok();
  } catch (const std::exception&) {
    return InvalidArgument(key + ": expected an integer from " + std::to_string(lo) + " to " +
                           std::to_string(hi) + ", got \"" + v + "\"");
  }
}

Status ParseSize(const std::string& key, const std::string& v, int64_t& out) {
  auto b = ParseBytes(v);
  if (!b.ok()) return InvalidArgument(key + ": " + b.status().message());
  out = *b;
  return Status::Ok();
}

Status ParseDur(const std::string& key, const std::string& v, milliseconds& out) {
  auto d = ParseDuration(v);
  if (!d.ok()) return InvalidArgument(key + ": " + d.status().message());
  out = *d;
  return Status::Ok();
}

// A load per CPU: a number from 0 to 1000 (0: off).
Status ParseLoad(const std::string& key, const std::string& v, double& out) {
  try {
    size_t used = 0;
    double d = std::stod(v, &used);
    if (used != v.size() || !(d >= 0 && d <= 1000)) throw std::out_of_range(v);
    out = d;
    return Status::Ok();
  } catch (const std::exception&) {
    return InvalidArgument(key + ": expected a number from 0 (off) to 1000, got \"" + v + "\"");
  }
}

template <typename C>
Result<C> Load(const std::string& path) {
  C c;
  if (!path.empty()) {
    auto kv = ReadKeyValueFile(path);
    if (!kv.ok()) return kv.status();
    for (const auto& [k, v] : *kv) {
      Status s = Apply(c, k, v);
      if (!s.ok()) return InvalidArgument(path + ": " + s.message());
    }
  }
  return c;
}

}  // namespace

bool IsLoopbackAddress(const std::string& address) {
  if (address.rfind("unix:", 0) == 0) return true;
  std::string host = address;
  if (!host.empty() && host[0] == '[') {
    host = host.substr(1, host.find(']') == std::string::npos ? 0 : host.find(']') - 1);
  } else if (auto colon = host.rfind(':'); colon != std::string::npos) {
    host = host.substr(0, colon);
  }
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

bool ControllerReloadable(const std::string& key) {
  return key == "log_level" || key.rfind("health_", 0) == 0;
}

bool WorkerReloadable(const std::string& key) { return key == "log_level" || key == "health_check_interval"; }

std::vector<std::string> ChangedKeys(const std::map<std::string, std::string>& before,
                                     const std::map<std::string, std::string>& after) {
  std::vector<std::string> out;
  for (const auto& [k, v] : before) {
    auto it = after.find(k);
    if (it == after.end() || it->second != v) out.push_back(k);
  }
  for (const auto& [k, v] : after)
    if (!before.count(k)) out.push_back(k);
  std::sort(out.begin(), out.end());
  return out;
}

Result<std::map<std::string, std::string>> ReadKeyValueFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot read config file " + path + ": no such file or not readable");
  std::map<std::string, std::string> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    std::string t = Trim(line);
    if (t.empty()) continue;
    auto eq = t.find('=');
    if (eq == std::string::npos) {
      return InvalidArgument(path + ":" + std::to_string(n) + ": expected \"key = value\", got \"" + t + "\"");
    }
    std::string k = Trim(t.substr(0, eq)), v = Trim(t.substr(eq + 1));
    if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) v = v.substr(1, v.size() - 2);
    if (k.empty()) return InvalidArgument(path + ":" + std::to_string(n) + ": empty key");
    out[k] = v;
  }
  return out;
}

Status Apply(ControllerConfig& c, const std::string& k, const std::string& v) {
  if (k == "listen") c.listen = v;
  else if (k == "database_url") c.database_url = v;
  else if (k == "migrate_on_start") return ParseBool(k, v, c.migrate_on_start);
  // Two at least: the deployer holds one for the farm's apply lock while it applies.
  else if (k == "db_pool_size") return ParseInt(k, v, 2, 256, c.db_pool_size);
  else if (k == "heartbeat_interval") return ParseDur(k, v, c.heartbeat_interval);
  else if (k == "lease") return ParseDur(k, v, c.lease);
  else if (k == "reap_interval") return ParseDur(k, v, c.reap_interval);
  else if (k == "reconnect_grace") return ParseDur(k, v, c.reconnect_grace);
  else if (k == "dispatch_poll_interval") return ParseDur(k, v, c.dispatch_poll_interval);
  else if (k == "config_poll_interval") return ParseDur(k, v, c.config_poll_interval);
  else if (k == "log_level") c.log_level = v;
  else if (k == "address_file") c.address_file = v;
  else if (k == "cas_dir") c.cas_dir = v;
  else if (k == "cas_max_blob_bytes") return ParseSize(k, v, c.cas_max_blob_bytes);
  else if (k == "cas_max_tree_files") return ParseSize(k, v, c.cas_max_tree_files);
  else if (k == "cas_max_bytes") return ParseSize(k, v, c.cas_max_bytes);
  else if (k == "cas_max_age") return ParseDur(k, v, c.cas_max_age);
  else if (k == "cas_min_age") return ParseDur(k, v, c.cas_min_age);
  else if (k == "cas_gc_interval") return ParseDur(k, v, c.cas_gc_interval);
  else if (k == "output_retention") return ParseDur(k, v, c.output_retention);
  else if (k == "action_cache_max_age") return ParseDur(k, v, c.action_cache_max_age);
  else if (k == "compile_cache_max_age") return ParseDur(k, v, c.compile_cache_max_age);
  else if (k == "workspace_grace") return ParseDur(k, v, c.workspace_grace);
  else if (k == "log_retention") return ParseDur(k, v, c.log_retention);
  else if (k == "project_log_max_bytes") return ParseSize(k, v, c.project_log_max_bytes);
  else if (k == "log_max_bytes") return ParseSize(k, v, c.log_max_bytes);
  else if (k == "log_prune_interval") return ParseDur(k, v, c.log_prune_interval);
  else if (k == "audit_retention") return ParseDur(k, v, c.audit_retention);
  else if (k == "job_timings") return ParseBool(k, v, c.job_timings);
  else if (k == "sample_interval") return ParseDur(k, v, c.sample_interval);
  else if (k == "sample_retention") return ParseDur(k, v, c.sample_retention);
  else if (k == "tls_dir") c.tls_dir = v;
  else if (k == "secrets_key_file") c.secrets_key_file = v;
  else if (k == "insecure") return ParseBool(k, v, c.insecure);
  else if (k == "insecure_remote") return ParseBool(k, v, c.insecure_remote);
  else if (k == "worker_cert_validity") return ParseDur(k, v, c.worker_cert_validity);
  else if (k == "metrics_address") c.metrics_address = v;
  else if (k == "metrics_address_file") c.metrics_address_file = v;
  else if (k == "health_min_free_disk") return ParseSize(k, v, c.health_min_free_disk);
  else if (k == "health_min_free_percent") return ParseInt(k, v, 0, 99, c.health_min_free_percent);
  else if (k == "health_max_clock_skew") return ParseDur(k, v, c.health_max_clock_skew);
  else if (k == "health_max_load_per_cpu") return ParseLoad(k, v, c.health_max_load_per_cpu);
  else if (k == "health_recover_after") return ParseDur(k, v, c.health_recover_after);
  else if (k == "health_max_infra_failures") return ParseInt(k, v, 0, 64, c.health_max_infra_failures);
  else if (k == "health_infra_window") return ParseDur(k, v, c.health_infra_window);
  else if (k == "autoscale_interval") return ParseDur(k, v, c.autoscale_interval);
  else return InvalidArgument("unknown setting \"" + k + "\" (see deploy/controller.conf.example)");
  return Status::Ok();
}

Status Apply(WorkerConfig& c, const std::string& k, const std::string& v) {
  if (k == "controller") c.controller = v;
  else if (k == "slots") return ParseInt(k, v, 0, 4096, c.slots);
  else if (k == "work_dir") c.work_dir = v;
  else if (k == "cluster") c.cluster = v;
  else if (k == "hostname") c.hostname = v;
  else if (k.rfind("label.", 0) == 0 && k.size() > 6) c.labels[k.substr(6)] = v;
  else if (k == "drain_grace") return ParseDur(k, v, c.drain_grace);
  else if (k == "cache_max_bytes") return ParseSize(k, v, c.cache_max_bytes);
  else if (k == "sandbox") c.sandbox = v;
  else if (k == "allow_plain_jobs") return ParseBool(k, v, c.allow_plain_jobs);
  else if (k == "image_cache_bytes") return ParseSize(k, v, c.image_cache_bytes);
  else if (k == "sandbox_uid") return ParseInt(k, v, 1, 2000000000, c.sandbox_uid);
  else if (k == "sandbox_memory_max") return ParseSize(k, v, c.sandbox_memory_max);
  else if (k == "sandbox_pids_max") return ParseInt(k, v, 8, 1 << 22, c.sandbox_pids_max);
  else if (k == "sandbox_cpus_max") return ParseInt(k, v, 0, 4096, c.sandbox_cpus_max);
  else if (k == "sandbox_tmp_bytes") return ParseSize(k, v, c.sandbox_tmp_bytes);
  else if (k == "disk_max") return ParseSize(k, v, c.disk_max);
  else if (k == "max_log_bytes") return ParseSize(k, v, c.max_log_bytes);
  else if (k == "max_output_bytes") return ParseSize(k, v, c.max_output_bytes);
  else if (k == "compile_cache") return ParseBool(k, v, c.compile_cache);
  else if (k == "action_slots") return ParseInt(k, v, -1, 4096, c.action_slots);
  else if (k == "remote_compiles") return ParseBool(k, v, c.remote_compiles);
  else if (k == "compile_cache_wrapper") c.compile_cache_wrapper = v;
  else if (k == "compile_cache_max_object_bytes") return ParseSize(k, v, c.compile_cache_max_object_bytes);
  else if (k == "compile_cache_memory_bytes") return ParseSize(k, v, c.compile_cache_memory_bytes);
  else if (k == "workspace_max_bytes") return ParseSize(k, v, c.workspace_max_bytes);
  else if (k == "log_level") c.log_level = v;
  else if (k == "ca_file") c.ca_file = v;
  else if (k == "join_token_file") c.join_token_file = v;
  else if (k == "tls_server_name") c.tls_server_name = v;
  else if (k == "cert_renew_before") return ParseDur(k, v, c.cert_renew_before);
  else if (k == "insecure") return ParseBool(k, v, c.insecure);
  else if (k == "metrics_address") c.metrics_address = v;
  else if (k == "metrics_address_file") c.metrics_address_file = v;
  else if (k == "health_check_interval") return ParseDur(k, v, c.health_check_interval);
  else return InvalidArgument("unknown setting \"" + k + "\" (see deploy/worker.conf.example)");
  return Status::Ok();
}

Status CheckMetricsAddress(const std::string& a) {
  if (a.empty()) return Status::Ok();
  auto colon = a.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 || !ParseInt("port", a.substr(colon + 1), 0, 65535, port).ok()) {
    return InvalidArgument("metrics_address: expected HOST:PORT (e.g. 127.0.0.1:9464; port 0 picks a free one), got \"" +
                           a + "\"");
  }
  return Status::Ok();
}

Status Validate(const ControllerConfig& c) {
  if (c.database_url.empty()) {
    return InvalidArgument("no database configured: set database_url in the config file, "
                           "KILN_DATABASE_URL, or --database-url");
  }
  if (c.listen.empty()) return InvalidArgument("listen: empty address");
  if (c.lease < 2 * c.heartbeat_interval) {
    return InvalidArgument("lease (" + std::to_string(c.lease.count()) + " ms) must be at least twice "
                           "heartbeat_interval (" + std::to_string(c.heartbeat_interval.count()) + " ms)");
  }
  if (c.heartbeat_interval.count() < 50) return InvalidArgument("heartbeat_interval must be at least 50ms");
  if (c.reap_interval.count() < 10) return InvalidArgument("reap_interval must be at least 10ms");
  if (c.dispatch_poll_interval.count() < 10) return InvalidArgument("dispatch_poll_interval must be at least 10ms");
  if (c.config_poll_interval.count() < 10) return InvalidArgument("config_poll_interval must be at least 10ms");
  if (c.cas_dir.empty()) return InvalidArgument("cas_dir: empty path");
  if (c.cas_max_blob_bytes < 1) return InvalidArgument("cas_max_blob_bytes must be at least 1 byte");
  if (c.cas_max_tree_files < 1) return InvalidArgument("cas_max_tree_files must be at least 1");
  if (c.cas_gc_interval.count() < 100) return InvalidArgument("cas_gc_interval must be at least 100ms");
  if (c.cas_max_age < c.cas_min_age) return InvalidArgument("cas_max_age must not be shorter than cas_min_age");
  if (c.log_retention.count() != 0 && c.log_retention.count() < 1000)
    return InvalidArgument("log_retention must be at least 1s (or 0: logs are kept for ever)");
  if (c.log_prune_interval.count() < 100) return InvalidArgument("log_prune_interval must be at least 100ms");
  if (c.autoscale_interval.count() != 0 && c.autoscale_interval.count() < 100)
    return InvalidArgument("autoscale_interval must be at least 100ms (or 0: no autoscaler)");
  if (c.sample_interval.count() != 0 && c.sample_interval.count() < 100)
    return InvalidArgument("sample_interval must be at least 100ms (or 0: no samples)");
  if (c.sample_retention.count() != 0 && c.sample_retention.count() < 1000)
    return InvalidArgument("sample_retention must be at least 1s (or 0: samples are kept for ever)");
  if (c.insecure && !c.insecure_remote && !IsLoopbackAddress(c.listen)) {
    return InvalidArgument("insecure = true serves plaintext, which is allowed only on a loopback address (listen = " +
                           c.listen + "): listen on 127.0.0.1 or a unix: socket, turn TLS on (kiln-controller certs "
                           "init), or set insecure_remote = true if the network is yours alone");
  }
  if (c.health_max_clock_skew.count() < 100) return InvalidArgument("health_max_clock_skew must be at least 100ms");
  if (c.worker_cert_validity < std::chrono::hours(1)) return InvalidArgument("worker_cert_validity must be at least 1h");
  if (!c.insecure && c.tls_dir.empty()) return InvalidArgument("tls_dir: empty path (or set insecure = true)");
  return CheckMetricsAddress(c.metrics_address);
}

Status Validate(const WorkerConfig& c) {
  if (c.controller.empty()) return InvalidArgument("controller: empty address");
  if (c.work_dir.empty()) return InvalidArgument("work_dir: empty path");
  if (c.cluster.empty()) return InvalidArgument("cluster: empty name");
  if (c.cache_max_bytes < (1 << 20)) return InvalidArgument("cache_max_bytes must be at least 1MiB");
  if (c.sandbox != "runc" && c.sandbox != "none") return InvalidArgument("sandbox: expected runc or none, got \"" + c.sandbox + "\"");
  if (c.sandbox_memory_max < (16 << 20)) return InvalidArgument("sandbox_memory_max must be at least 16MiB");
  if (c.disk_max < (16 << 20)) return InvalidArgument("disk_max must be at least 16MiB");
  if (c.max_log_bytes < (1 << 20)) return InvalidArgument("max_log_bytes must be at least 1MiB");
  if (c.health_check_interval.count() < 1000) return InvalidArgument("health_check_interval must be at least 1s");
  for (const auto& [k, v] : c.labels) {
    if (k == "arch" || k == "os" || k == "sandbox" || k == "plain") {
      return InvalidArgument("label." + k + ": \"" + k + "\" is reported by the worker itself and cannot be a label");
    }
  }
  return CheckMetricsAddress(c.metrics_address);
}

Result<ControllerConfig> LoadController(const std::string& path) {
  auto c = Load<ControllerConfig>(path);
  if (!c.ok()) return c;
  if (const char* url = std::getenv("KILN_DATABASE_URL"); url != nullptr && *url != '\0') c->database_url = url;
  return c;
}

Result<WorkerConfig> LoadWorker(const std::string& path) {
  auto c = Load<WorkerConfig>(path);
  if (!c.ok()) return c;
  if (const char* a = std::getenv("KILN_CONTROLLER"); a != nullptr && *a != '\0') c->controller = a;
  return c;
}

}  // namespace kiln::config
