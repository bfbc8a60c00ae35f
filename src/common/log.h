#pragma once
// Logging setup for the daemons: spdlog to stderr (journald adds timestamps
// when run under systemd), PostgreSQL-style short lower-case messages with
// fields such as job_id=12 attempt=2.

#include <string>

namespace kiln {

// level: trace, debug, info, warn, error. Returns false for an unknown level.
bool InitLogging(const std::string& program, const std::string& level);

}  // namespace kiln
