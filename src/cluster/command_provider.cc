#include "cluster/command_provider.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <set>

#include "cluster/run_command.h"
#include "common/text.h"
#include "common/util.h"

namespace kiln::cluster {
namespace {

using Json = nlohmann::ordered_json;

constexpr int kExitNoSuchInstance = 3;
constexpr const char* kListShape =
    "it must print {\"instances\": [{\"id\": \"NAME\", \"alive\": true}, ...]} (docs/operations.md, \"Providers\")";

// The fields every call gets; instance and work_dir when there is one.
Json Base(const CommandProvider::Options& o, const std::string& id, const std::string& work_dir) {
  Json j;
  j["cluster"] = o.cluster;
  if (!id.empty()) {
    j["instance"] = id;
    j["work_dir"] = work_dir;
  }
  auto settings = Json::parse(o.provider_settings, nullptr, false);
  j["provider_settings"] = settings.is_object() ? settings : Json::object();
  return j;
}

}  // namespace

CommandProvider::CommandProvider(Options o) : o_(std::move(o)) {
  while (o_.work_dir_base.size() > 1 && o_.work_dir_base.back() == '/') o_.work_dir_base.pop_back();
}

Result<std::string> CommandProvider::Call(const std::string& op, const std::string& input) {
  const std::vector<std::string> argv{o_.command, op};
  CommandOptions co;
  co.input = input;
  co.timeout = o_.timeout;
  co.max_output = kMaxOutput;
  auto r = RunCommand(argv, co);
  if (!r.ok()) return Unavailable("provider command " + r.status().message());
  if (r->exit_code == kExitNoSuchInstance) return NotFound("provider command " + CommandFailure(argv, *r));
  if (r->exit_code != 0) return Unavailable("provider command " + CommandFailure(argv, *r));
  return std::move(r->out);
}

Result<std::vector<Provider::Seen>> CommandProvider::List() {
  auto out = Call("list", Base(o_, "", "").dump());
  if (!out.ok()) return Unavailable(out.status().message());
  const std::string what = "provider command " + CommandText({o_.command, "list"});
  auto bad = [&](const std::string& why) { return Unavailable(what + " answered " + why + "; " + kListShape); };
  auto j = Json::parse(*out, nullptr, false);
  if (j.is_discarded()) return bad("something that is not JSON (\"" + Printable(*out, 100) + "\")");
  if (!j.is_object() || !j.contains("instances") || !j["instances"].is_array()) return bad("no instances array");
  if (j["instances"].size() > kMaxInstances)
    return bad(std::to_string(j["instances"].size()) + " instances, more than " + std::to_string(kMaxInstances));
  std::vector<Seen> seen;
  std::set<std::string> ids;
  for (const auto& e : j["instances"]) {
    if (!e.is_object() || !e.contains("id") || !e["id"].is_string() || !e.contains("alive") || !e["alive"].is_boolean())
      return bad("an instance without a string id and a boolean alive (" + Printable(e.dump(), 100) + ")");
    Seen s{e["id"].get<std::string>(), e["alive"].get<bool>()};
    if (Status st = CheckName("instance", s.id); !st.ok()) return bad("a bad instance id: " + st.message());
    if (!ids.insert(s.id).second) return bad("instance " + s.id + " twice");
    seen.push_back(std::move(s));
  }
  return seen;
}

Status CommandProvider::Create(const Launch& l) {
  KILN_RETURN_IF_ERROR(CheckName("instance", l.id));
  Launch lines = l;
  if (lines.work_dir.empty()) lines.work_dir = WorkDir(l.id);
  // A remote machine cannot read this host's CA file: its contents travel,
  // and the command puts them where its worker reads them.
  std::string ca_pem;
  if (!l.ca_file.empty()) {
    auto text = ReadWholeFile(l.ca_file);
    if (!text.ok())
      return Internal("cannot read the farm's CA certificate for instance " + l.id + ": " + text.status().message());
    ca_pem = std::move(*text);
  }
  lines.ca_file.clear();
  Json j = Base(o_, l.id, lines.work_dir);
  Json settings = Json::object();
  for (const auto& [k, v] : l.settings) settings[k] = v;
  j["worker_settings"] = std::move(settings);
  j["worker_conf"] = RenderWorkerConf(lines);
  j["ca_pem"] = ca_pem;
  j["join_token"] = l.join_token;
  auto out = Call("create", j.dump());
  if (!out.ok()) return Unavailable(out.status().message());
  spdlog::info("provider command created instance={} command={}", l.id, o_.command);
  return Status::Ok();
}

Status CommandProvider::Drain(const std::string& id) {
  KILN_RETURN_IF_ERROR(CheckName("instance", id));
  auto out = Call("drain", Base(o_, id, WorkDir(id)).dump());
  if (!out.ok()) return out.status();
  spdlog::info("provider command draining instance={} command={}", id, o_.command);
  return Status::Ok();
}

Status CommandProvider::Destroy(const std::string& id) {
  KILN_RETURN_IF_ERROR(CheckName("instance", id));
  auto out = Call("destroy", Base(o_, id, WorkDir(id)).dump());
  if (!out.ok() && out.status().code() != Code::kNotFound) return out.status();
  spdlog::info("provider command destroyed instance={} command={}", id, o_.command);
  return Status::Ok();
}

}  // namespace kiln::cluster
