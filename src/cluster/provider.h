#pragma once
// What the deployer needs of a provider (issue 27, item 4): the instances it
// sees, and starting, draining and destroying one. Implementations:
// `process` (kiln-worker processes on this host, cluster/process_provider.h),
// `systemd` (instances of kiln-worker@.service) and `command` (an operator's
// executable speaking JSON). No database: the deployer keeps the rows.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace kiln::cluster {

struct Spec;

// Everything a new instance's worker needs, as the deployer computed it.
struct Launch {
  std::string id;        // letters, digits, '.', '_', '-'; unique in the farm
  std::string work_dir;  // the worker's work_dir: Provider::WorkDir(id)
  // kiln-worker settings ("controller", "cluster", "slots", "label.K", and
  // the cluster's worker_config), in order; never work_dir, ca_file or
  // join_token_file, which the provider sets where its worker finds them.
  std::vector<std::pair<std::string, std::string>> settings;
  std::string ca_file;     // the farm's CA certificate on this host; empty: an insecure farm
  std::string join_token;  // single use, for the worker's enrolment; empty: an insecure farm
};

// The settings, work_dir and the CA file as worker.conf lines ("key = value\n").
std::string RenderWorkerConf(const Launch& l);

class Provider {
 public:
  virtual ~Provider() = default;

  // An instance as the provider sees it.
  struct Seen {
    std::string id;
    bool alive = false;  // its worker process (unit, machine) runs
  };
  // Every instance the provider has, alive or not; an empty list when it has
  // none. Unavailable when the provider cannot be asked (try again later).
  virtual Result<std::vector<Seen>> List() = 0;
  // The work_dir instance `id`'s worker runs with: the deployer matches the
  // instance to the worker that registers with it.
  virtual std::string WorkDir(const std::string& id) const = 0;
  // Starts an instance. AlreadyExists while one of that id runs.
  virtual Status Create(const Launch& l) = 0;
  // Lets the worker drain (its jobs finish) and exit. NotFound if no such
  // instance runs.
  virtual Status Drain(const std::string& id) = 0;
  // Stops it at once if it still runs and removes what the provider kept of
  // it. OK if it is gone already.
  virtual Status Destroy(const std::string& id) = 0;
};

// Defaults a controller gives providers whose settings name none.
struct ProviderDefaults {
  std::string worker_binary;  // kiln-worker, absolute
  std::string root;           // state directories of instances on this host
};

// The provider of a cluster's spec (its `provider` and `provider_settings`).
// InvalidArgument for settings it cannot use, Unimplemented for a provider
// this build does not have.
Result<std::unique_ptr<Provider>> MakeProvider(const Spec& s, const ProviderDefaults& d);

}  // namespace kiln::cluster
