#include "cluster/spec.h"

#include <nlohmann/json.hpp>

#include <array>
#include <string_view>

#include "cluster/provider.h"
#include "common/text.h"
#include "config/config.h"

namespace kiln::cluster {
namespace {

// Worker settings the deployer writes itself, from the spec and the farm.
// (insecure and ca_file follow the farm's TLS: a worker told otherwise could
// never register, and would be replaced on every apply.)
constexpr std::array<std::string_view, 8> kDeployerKeys = {"controller", "work_dir", "cluster",  "slots",
                                                           "join_token_file", "hostname", "insecure", "ca_file"};

Status CheckMs(const char* flag, int64_t ms) {
  if (ms < 0 || ms > kMaxPolicyMs)
    return InvalidArgument(std::string(flag) + " " + std::to_string(ms) + "ms is out of bounds: 0 to 1 day");
  return Status::Ok();
}

Result<nlohmann::json> ParseObject(const char* what, const std::string& text) {
  if (text.size() > kMaxDocumentBytes)
    return InvalidArgument(std::string(what) + " is " + std::to_string(text.size()) + " bytes: at most " +
                           std::to_string(kMaxDocumentBytes));
  auto j = nlohmann::json::parse(text.empty() ? "{}" : text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument(std::string(what) + " is not valid JSON");
  if (!j.is_object()) return InvalidArgument(std::string(what) + " must be a JSON object, e.g. {\"key\": \"value\"}");
  return j;
}

// A worker_config value as its config file line would hold it.
Result<std::string> ScalarText(const std::string& key, const nlohmann::json& v) {
  if (v.is_string()) {
    // The value becomes a line of the worker's configuration file: a newline
    // would add lines after the deployer's own, a '#' cut it short.
    std::string t = v.get<std::string>();
    for (unsigned char c : t)
      if (c < 0x20 || c == 0x7f || c == '#')
        return InvalidArgument("--worker-config: " + key + ": control characters and '#' are not allowed in a value");
    return t;
  }
  if (v.is_boolean()) return std::string(v.get<bool>() ? "true" : "false");
  if (v.is_number()) return v.dump();
  return InvalidArgument("--worker-config: " + key + " must be a string, number or boolean");
}

Status CheckWorkerConfig(const Spec& s) {
  auto j = ParseObject("--worker-config", s.worker_config);
  if (!j.ok()) return j.status();
  config::WorkerConfig probe;
  for (const auto& [k, v] : j->items()) {
    for (auto owned : kDeployerKeys) {
      if (k == owned)
        return InvalidArgument("--worker-config: " + k + " is set by the deployer for each worker it starts" +
                               (k == "slots" ? std::string(" (use --slots)") : std::string()));
    }
    if (k.rfind("label.", 0) == 0) return InvalidArgument("--worker-config: " + k + ": give labels with --label K=V");
    auto text = ScalarText(k, v);
    if (!text.ok()) return text.status();
    if (Status st = config::Apply(probe, k, *text); !st.ok())
      return InvalidArgument("--worker-config: " + st.message());
  }
  for (const auto& [k, v] : s.labels) {
    if (k.empty()) return InvalidArgument("--label: empty key (expected K=V)");
    if (Status st = config::Apply(probe, "label." + k, v); !st.ok()) return InvalidArgument("--label: " + st.message());
  }
  if (Status st = config::Validate(probe); !st.ok()) return InvalidArgument("--worker-config: " + st.message());
  return Status::Ok();
}

Status CheckProviderSettings(const Spec& s) {
  auto j = ParseObject("--provider-settings", s.provider_settings);
  if (!j.ok()) return j.status();
  for (const auto& [k, v] : j->items()) {
    if (!v.is_string() && !v.is_number() && !v.is_boolean())
      return InvalidArgument("--provider-settings: " + k + " must be a string, number or boolean");
  }
  if (s.provider == "command") {
    auto it = j->find("command");
    if (it == j->end() || !it->is_string() || it->get<std::string>().empty() || it->get<std::string>()[0] != '/')
      return InvalidArgument(
          "provider command needs the executable to call: --provider-settings '{\"command\": \"/abs/path\"}' "
          "(docs/operations.md, \"Providers\")");
  }
  // What the provider itself checks (absolute paths, timeout_s's range), so
  // a set refuses what plan and apply could not use.
  if (s.provider == "systemd" || s.provider == "command") {
    auto made = MakeProvider(s, {});
    if (!made.ok()) return made.status();
  }
  return Status::Ok();
}

}  // namespace

bool KnownProvider(const std::string& name) { return name == "process" || name == "systemd" || name == "command"; }

Status Validate(const Spec& s) {
  KILN_RETURN_IF_ERROR(CheckName("cluster", s.cluster));
  if (s.min_workers < 0 || s.min_workers > kMaxWorkers)
    return InvalidArgument("--min " + std::to_string(s.min_workers) + " is out of bounds: 0 to " +
                           std::to_string(kMaxWorkers));
  if (s.max_workers < 0 || s.max_workers > kMaxWorkers)
    return InvalidArgument("--max " + std::to_string(s.max_workers) + " is out of bounds: 0 to " +
                           std::to_string(kMaxWorkers));
  if (s.min_workers > s.max_workers)
    return InvalidArgument("--min " + std::to_string(s.min_workers) + " is above --max " +
                           std::to_string(s.max_workers) + ": give a --max at least as large");
  if (s.slots_per_worker < 1 || s.slots_per_worker > kMaxSlots)
    return InvalidArgument("--slots " + std::to_string(s.slots_per_worker) + " is out of bounds: 1 to " +
                           std::to_string(kMaxSlots));
  if (!KnownProvider(s.provider))
    return InvalidArgument("--provider \"" + s.provider + "\" is not a provider kiln knows: process, systemd or command");
  const Policy& p = s.policy;
  KILN_RETURN_IF_ERROR(CheckMs("--target-queue-wait", p.target_queue_wait_ms));
  if (!(p.jobs_per_slot > 0 && p.jobs_per_slot <= 100))
    return InvalidArgument("--jobs-per-slot " + std::to_string(p.jobs_per_slot) + " is out of bounds: above 0, up to 100");
  if (p.scale_up_step < 1 || p.scale_up_step > kMaxStep)
    return InvalidArgument("--scale-up-step " + std::to_string(p.scale_up_step) + " is out of bounds: 1 to " +
                           std::to_string(kMaxStep));
  KILN_RETURN_IF_ERROR(CheckMs("--scale-up-cooldown", p.scale_up_cooldown_ms));
  KILN_RETURN_IF_ERROR(CheckMs("--scale-down-cooldown", p.scale_down_cooldown_ms));
  KILN_RETURN_IF_ERROR(CheckMs("--scale-in-delay", p.scale_in_delay_ms));
  KILN_RETURN_IF_ERROR(CheckWorkerConfig(s));
  return CheckProviderSettings(s);
}

Status Canonicalize(Spec& s) {
  auto w = ParseObject("--worker-config", s.worker_config);
  if (!w.ok()) return w.status();
  auto p = ParseObject("--provider-settings", s.provider_settings);
  if (!p.ok()) return p.status();
  s.worker_config = w->dump();
  s.provider_settings = p->dump();
  return Status::Ok();
}

std::string ToJson(const Spec& s) {
  nlohmann::json j;
  j["min_workers"] = s.min_workers;
  j["max_workers"] = s.max_workers;
  j["slots_per_worker"] = s.slots_per_worker;
  j["labels"] = s.labels;
  j["worker_config"] = nlohmann::json::parse(s.worker_config, nullptr, false);
  j["provider"] = s.provider;
  j["provider_settings"] = nlohmann::json::parse(s.provider_settings, nullptr, false);
  j["target_queue_wait_ms"] = s.policy.target_queue_wait_ms;
  j["jobs_per_slot"] = s.policy.jobs_per_slot;
  j["scale_up_step"] = s.policy.scale_up_step;
  j["scale_up_cooldown_ms"] = s.policy.scale_up_cooldown_ms;
  j["scale_down_cooldown_ms"] = s.policy.scale_down_cooldown_ms;
  j["scale_in_delay_ms"] = s.policy.scale_in_delay_ms;
  return j.dump();
}

}  // namespace kiln::cluster
