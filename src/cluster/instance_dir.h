#pragma once
// An instance's state directory on this host, as the `process` and
// `systemd` providers keep it: `<dir>/worker.conf` and, on a TLS farm,
// `<dir>/join.token` (0600) that worker.conf names.

#include <string>

#include "cluster/provider.h"
#include "common/status.h"

namespace kiln::cluster {

// Writes `text` to `path` through a temporary beside it and a rename, so a
// reader never sees half of it. Internal naming the file on failure.
Status WriteFileAtomic(const std::string& path, const std::string& text);

// Creates `dir` and writes its join.token (when l.join_token is set; created
// 0600, never readable by others even for a moment) and worker.conf
// (RenderWorkerConf(l), then join_token_file). l.work_dir must be set; the
// caller creates it. Internal naming the file and errno's text on failure.
Status WriteInstanceDir(const std::string& dir, const Launch& l);

}  // namespace kiln::cluster
