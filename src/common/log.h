#pragma once
// Logging setup for the daemons: spdlog to stderr (journald adds timestamps
// when run under systemd), PostgreSQL-style short lower-case messages with
// fields such as job_id=12 attempt=2. A record is always one line: control
// bytes of the message (a newline or NUL a client sent) are written as \xNN.

#include <spdlog/formatter.h>

#include <memory>
#include <string>

namespace kiln {

// level: trace, debug, info, warn, error. Returns false for an unknown level.
bool InitLogging(const std::string& program, const std::string& level);

// The daemons' line format: time, program[pid], level, the escaped message.
std::unique_ptr<spdlog::formatter> LogFormatter();

}  // namespace kiln
