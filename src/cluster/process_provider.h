#pragma once
// The `process` provider: kiln-worker processes on this host, one state
// directory per instance under a root (`<root>/<id>/`: worker.conf, pid,
// worker.log, work/). A worker runs in a session of its own, so it outlives
// the controller that started it; any controller finds the instances again
// from their directories (the pid file, kill(pid, 0) and /proc/PID/cmdline
// naming the instance's config), so a new leader adopts them and never
// starts duplicates. No database.

#include <string>
#include <vector>

#include "cluster/provider.h"
#include "common/status.h"

namespace kiln::cluster {

class ProcessProvider : public Provider {
 public:
  struct Options {
    std::string root;           // the instances' state directories
    std::string worker_binary;  // kiln-worker (absolute)
  };
  explicit ProcessProvider(Options o);

  // Every instance under the root, by id (alive: its process runs
  // kiln-worker with its config); an empty list when the root does not
  // exist yet. Reaps the instances this process started that exited.
  Result<std::vector<Seen>> List() override;

  // Starts instance `l.id`: writes its worker.conf (RenderWorkerConf, and
  // join_token_file naming a join.token file created 0600 beside it) and
  // starts `worker_binary --config <dir>/worker.conf` in <dir> (relative
  // paths of its settings land there), its output appended to worker.log. AlreadyExists while the instance runs; Internal (with
  // errno's text) when the directory or the process cannot be made.
  Status Create(const Launch& l) override;
  // Sends SIGTERM: the worker drains (its jobs finish) and exits.
  // NotFound if no such instance runs.
  Status Drain(const std::string& id) override;
  // SIGKILL if it still runs, then removes its directory; its worker.log
  // is kept as <root>/<id>.log (the newest kKeptLogs such logs stay). OK
  // if it is gone.
  Status Destroy(const std::string& id) override;
  static constexpr size_t kKeptLogs = 20;

  std::string Dir(const std::string& id) const { return o_.root + "/" + id; }
  std::string WorkDir(const std::string& id) const override;
  // The pid of the instance's worker if it runs; 0 otherwise.
  int Pid(const std::string& id) { return LivePid(id); }

 private:
  // The instance's pid if its process runs and is ours; 0 otherwise.
  int LivePid(const std::string& id);
  // Removes all but the newest kKeptLogs logs of destroyed instances.
  void PruneKeptLogs();
  Options o_;
};

}  // namespace kiln::cluster
