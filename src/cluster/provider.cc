#include "cluster/provider.h"

#include <nlohmann/json.hpp>

#include "cluster/command_provider.h"
#include "cluster/process_provider.h"
#include "cluster/spec.h"
#include "cluster/systemd_provider.h"
#include "common/text.h"

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

// A path setting that must be absolute (the controller's working directory
// is nobody's business).
Result<std::string> PathSetting(const nlohmann::json& j, const char* key, const std::string& fallback) {
  auto v = StringSetting(j, key, fallback);
  if (!v.ok()) return v;
  if (v->empty() || v->front() != '/' || HasControl(*v))
    return InvalidArgument(std::string("provider setting ") + key + " must be an absolute path, not \"" + Printable(*v) +
                           "\" (kiln clusters set NAME --provider-settings JSON)");
  return v;
}

Result<std::unique_ptr<Provider>> MakeSystemd(const nlohmann::json& j) {
  SystemdProvider::Options o;
  auto root = PathSetting(j, "root", o.root);
  if (!root.ok()) return root.status();
  auto systemctl = StringSetting(j, "systemctl", o.systemctl);
  if (!systemctl.ok()) return systemctl.status();
  auto unit = StringSetting(j, "unit", o.unit);
  if (!unit.ok()) return unit.status();
  if (Status st = CheckName("provider setting unit", *unit); !st.ok()) return st;
  if (systemctl->empty()) return InvalidArgument("provider setting systemctl must name systemctl, not be empty");
  return std::unique_ptr<Provider>(new SystemdProvider({*root, *systemctl, *unit}));
}

Result<std::unique_ptr<Provider>> MakeCommand(const Spec& s, const nlohmann::json& j) {
  CommandProvider::Options o;
  if (!j.contains("command"))
    return InvalidArgument("cluster " + s.cluster +
                           ": provider command needs provider setting command, the absolute path of the executable "
                           "to call (kiln clusters set NAME --provider-settings '{\"command\": \"/abs/path\"}')");
  auto command = PathSetting(j, "command", "");
  if (!command.ok()) return command.status();
  auto base = PathSetting(j, "work_dir_base", o.work_dir_base);
  if (!base.ok()) return base.status();
  if (j.contains("timeout_s")) {
    const auto& t = j["timeout_s"];
    if (!t.is_number_integer() || t.get<int64_t>() < 1 || t.get<int64_t>() > 3600)
      return InvalidArgument("provider setting timeout_s must be a whole number of seconds from 1 to 3600, not " +
                             Printable(t.dump()));
    o.timeout = std::chrono::seconds(t.get<int64_t>());
  }
  o.command = *command;
  o.work_dir_base = *base;
  o.cluster = s.cluster;
  o.provider_settings = j.dump();
  return std::unique_ptr<Provider>(new CommandProvider(std::move(o)));
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
  if (s.provider == "systemd") return MakeSystemd(j);
  if (s.provider == "command") return MakeCommand(s, j);
  return Status(Code::kUnimplemented, "cluster " + s.cluster + ": provider " + s.provider +
                                          " is not one this build has: process, systemd or command "
                                          "(docs/operations.md, \"Providers\")");
}

}  // namespace kiln::cluster
