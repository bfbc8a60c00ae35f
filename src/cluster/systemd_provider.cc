#include "cluster/systemd_provider.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "cluster/instance_dir.h"
#include "cluster/run_command.h"
#include "common/text.h"

namespace kiln::cluster {
namespace fs = std::filesystem;
namespace {

// A unit that is any of these has a process running: deactivating is a
// worker draining.
bool Running(const std::string& active) {
  return active == "active" || active == "activating" || active == "deactivating" || active == "reloading" ||
         active == "refreshing";
}

}  // namespace

SystemdProvider::SystemdProvider(Options o) : o_(std::move(o)) {
  while (o_.root.size() > 1 && o_.root.back() == '/') o_.root.pop_back();
}

Status SystemdProvider::Systemctl(const std::vector<std::string>& args, std::string* out) {
  std::vector<std::string> argv{o_.systemctl};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RunCommand(argv);
  if (!r.ok()) return Unavailable(r.status().message());
  if (r->exit_code != 0) return Unavailable(CommandFailure(argv, *r));
  if (out != nullptr) *out = std::move(r->out);
  return Status::Ok();
}

Result<std::map<std::string, std::string>> SystemdProvider::States(const std::string& pattern) {
  std::string text;
  KILN_RETURN_IF_ERROR(
      Systemctl({"list-units", "--all", "--plain", "--no-legend", "--no-pager", "--full", pattern}, &text));
  // "UNIT LOAD ACTIVE SUB DESCRIPTION...", one a line; some versions put a
  // marker ("●") before a failed unit.
  std::map<std::string, std::string> states;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string unit, load, active;
    words >> unit;
    if (unit.find(".service") == std::string::npos) words >> unit;
    if (words >> load >> active) states[unit] = active;
  }
  return states;
}

Result<bool> SystemdProvider::Alive(const std::string& id) {
  auto states = States(Unit(id));
  if (!states.ok()) return states.status();
  auto it = states->find(Unit(id));
  return it != states->end() && Running(it->second);
}

Result<std::vector<Provider::Seen>> SystemdProvider::List() {
  std::vector<Seen> out;
  std::error_code ec;
  if (!fs::exists(o_.root, ec)) return out;
  for (const auto& e : fs::directory_iterator(o_.root, ec)) {
    const std::string id = e.path().filename().string();
    // Only what could be an instance: a unit name is made from it.
    if (!e.is_directory() || !CheckName("instance", id).ok()) continue;
    out.push_back({id, false});
  }
  if (ec) return Unavailable("cannot list " + o_.root + ": " + ec.message());
  if (out.empty()) return out;
  auto states = States(o_.unit + "@*.service");
  if (!states.ok()) return states.status();
  for (auto& s : out) {
    auto it = states->find(Unit(s.id));
    s.alive = it != states->end() && Running(it->second);
  }
  std::sort(out.begin(), out.end(), [](const Seen& a, const Seen& b) { return a.id < b.id; });
  return out;
}

Status SystemdProvider::Create(const Launch& l) {
  KILN_RETURN_IF_ERROR(CheckName("instance", l.id));
  auto alive = Alive(l.id);
  if (!alive.ok()) return alive.status();
  if (*alive) return AlreadyExists("instance " + l.id + " runs already (" + Unit(l.id) + ")");
  Launch with_dir = l;
  if (with_dir.work_dir.empty()) with_dir.work_dir = WorkDir(l.id);
  std::error_code ec;
  fs::create_directories(with_dir.work_dir, ec);
  Status st = ec ? Internal("cannot create " + with_dir.work_dir + ": " + ec.message())
                 : WriteInstanceDir(Dir(l.id), with_dir);
  if (!st.ok()) {
    fs::remove_all(Dir(l.id), ec);  // no unit was touched: the directory is all there is
    return st;
  }
  if (st = Systemctl({"enable", "--now", "--no-block", Unit(l.id)}); !st.ok()) {
    // Perhaps enabled, perhaps started: neither may stay, nor the directory.
    if (Status undo = Destroy(l.id); !undo.ok())
      spdlog::warn("systemd instance left behind instance={} unit={} error=\"{}\"", l.id, Unit(l.id), undo.message());
    return st;
  }
  spdlog::info("systemd instance started instance={} unit={} dir={}", l.id, Unit(l.id), Dir(l.id));
  return Status::Ok();
}

Status SystemdProvider::Drain(const std::string& id) {
  KILN_RETURN_IF_ERROR(CheckName("instance", id));
  auto alive = Alive(id);
  if (!alive.ok()) return alive.status();
  if (!*alive) return NotFound("instance " + id + " does not run (" + Unit(id) + ")");
  // The stop job sends SIGTERM (KillMode=mixed: to the worker only) and
  // waits up to TimeoutStopSec for the drain; --no-block: not this call.
  KILN_RETURN_IF_ERROR(Systemctl({"stop", "--no-block", Unit(id)}));
  KILN_RETURN_IF_ERROR(Systemctl({"disable", Unit(id)}));
  spdlog::info("systemd instance draining instance={} unit={}", id, Unit(id));
  return Status::Ok();
}

Status SystemdProvider::Destroy(const std::string& id) {
  KILN_RETURN_IF_ERROR(CheckName("instance", id));
  auto alive = Alive(id);
  if (!alive.ok()) return alive.status();
  // SIGKILL first: a plain stop would be SIGTERM, a drain of up to
  // TimeoutStopSec. The stop then cancels the restart Restart=on-failure
  // schedules for the killed worker, and waits until the unit is down, so
  // the directory is never removed under a running worker.
  if (*alive) KILN_RETURN_IF_ERROR(Systemctl({"kill", "--signal=SIGKILL", Unit(id)}));
  KILN_RETURN_IF_ERROR(Systemctl({"stop", Unit(id)}));
  KILN_RETURN_IF_ERROR(Systemctl({"disable", Unit(id)}));
  std::error_code ec;
  fs::remove_all(Dir(id), ec);
  if (ec) return Internal("cannot remove " + Dir(id) + ": " + ec.message());
  spdlog::info("systemd instance destroyed instance={} unit={}", id, Unit(id));
  return Status::Ok();
}

}  // namespace kiln::cluster
