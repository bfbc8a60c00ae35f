#pragma once
// The `systemd` provider: instances of the template unit kiln-worker@.service
// (deploy/systemd/kiln-worker@.service) on this host, one state directory
// per instance under a root (`<root>/<id>/`: worker.conf, join.token,
// work/), which the unit's ExecStart names. systemd supervises the workers:
// they outlive the controller, come back after a reboot (enabled), and any
// controller finds them again from their directories and systemctl. Every
// systemctl call is an argv (no shell) with a timeout.

#include <map>
#include <string>
#include <vector>

#include "cluster/provider.h"
#include "common/status.h"

namespace kiln::cluster {

class SystemdProvider : public Provider {
 public:
  struct Options {
    std::string root = "/var/lib/kiln/instances";  // must match the unit's ExecStart
    std::string systemctl = "systemctl";           // a path, or a name on PATH
    std::string unit = "kiln-worker";              // the template: <unit>@<id>.service
  };
  explicit SystemdProvider(Options o);

  // Every instance directory under the root, by id; alive when its unit is
  // active, activating, reloading or deactivating (draining), from one
  // `systemctl list-units` call. An empty list when the root does not exist
  // yet; Unavailable with systemctl's message when it cannot be asked.
  Result<std::vector<Seen>> List() override;
  // Writes the instance's directory, then `systemctl enable --now --no-block
  // <unit>@<id>.service` (enabled: it comes back after a reboot; no-block:
  // the unit turns active only once the worker registered, which the
  // deployer's deadline watches). AlreadyExists while its unit runs. If
  // systemctl fails, what it did is undone (Destroy) and the error names
  // the command and its stderr.
  Status Create(const Launch& l) override;
  // `systemctl stop --no-block` (SIGTERM: the worker drains, its jobs
  // finish) and `systemctl disable` (a drained instance does not come back
  // at boot). NotFound if its unit does not run.
  Status Drain(const std::string& id) override;
  // `systemctl kill --signal=SIGKILL` if its unit runs, `stop`, `disable`,
  // then removes its directory. OK if it is gone already.
  Status Destroy(const std::string& id) override;

  std::string Dir(const std::string& id) const { return o_.root + "/" + id; }
  std::string WorkDir(const std::string& id) const override { return Dir(id) + "/work"; }
  std::string Unit(const std::string& id) const { return o_.unit + "@" + id + ".service"; }

 private:
  // The ACTIVE state of each loaded unit that matches `pattern`, by unit name.
  Result<std::map<std::string, std::string>> States(const std::string& pattern);
  // Whether `id`'s unit runs (any state but inactive or failed).
  Result<bool> Alive(const std::string& id);
  // Runs systemctl with `args`; its failure as a Status naming the command.
  Status Systemctl(const std::vector<std::string>& args, std::string* out = nullptr);
  Options o_;
};

}  // namespace kiln::cluster
