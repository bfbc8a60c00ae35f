#include "cluster/provider.h"

#include <nlohmann/json.hpp>

#include "cluster/process_provider.h"
#include "cluster/spec.h"

namespace kiln::cluster {

std::string RenderWorkerConf(const Launch& l) {
  std::string out;
  for (const auto& [k, v] : l.settings) out += k + " = " + v + "\n";
  out += "work_dir = " + l.work_dir + "\n";
  if (!l.ca_file.empty()) out += "ca_file = " + l.ca_file + "\n";
  return out;
}

namespace {

// A string setting of the provider's, or `fallback` when it names none.
// InvalidArgument when it is there but not a string.
Result<std::string> StringSetting(const nlohmann::json& j, const char* key, const std::string& fallback) {
  if (!j.contains(key)) return fallback;
  if (!j[key].is_string())
    return InvalidArgument(std::string("provider setting ") + key + " must be a string (kiln clusters set NAME --provider-settings JSON)");
  return j[key].get<std::string>();
}

}  // namespace

Result<std::unique_ptr<Provider>> MakeProvider(const Spec& s, const ProviderDefaults& d) {
  auto j = nlohmann::json::parse(s.provider_settings, nullptr, false);
  if (!j.is_object()) return InvalidArgument("cluster " + s.cluster + ": provider settings are not a JSON object");
  if (s.provider == "process") {
    auto root = StringSetting(j, "root", d.root);
    if (!root.ok()) return root.status();
    auto bin = StringSetting(j, "worker_binary", d.worker_binary);
    if (!bin.ok()) return bin.status();
    return std::unique_ptr<Provider>(new ProcessProvider({*root, *bin}));
  }
  return Status(Code::kUnimplemented, "cluster " + s.cluster + ": provider " + s.provider +
                                          " is not built yet; only the process provider deploys today "
                                          "(docs/operations.md, \"Cluster state\")");
}

}  // namespace kiln::cluster
