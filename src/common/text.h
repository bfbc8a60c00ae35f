#pragma once
// The rules for strings a client or a worker sends that reach SQL or a log
// line: names, ids, labels, reasons. libpqxx passes text as a C string, so
// PostgreSQL would see a name only up to a NUL byte, and a newline would
// start a new line in a log: such strings are refused, never cut or stored.

#include <cstddef>
#include <limits>
#include <string>
#include <string_view>

#include "common/status.h"

namespace kiln {

// True if `s` holds a NUL or another control character (a byte below 0x20,
// or 0x7f).
bool HasControl(std::string_view s);

// `s` fit to quote in a message or a log line: control bytes as \xNN, at
// most `max` bytes of it (then "...").
std::string Printable(std::string_view s, size_t max = 200);

// A string from the network (an id, a label, a reason): Ok, or
// InvalidArgument naming `field` when it holds a NUL or other control
// character, or is longer than `max_bytes`; the message says what is allowed.
Status CheckText(std::string_view s, std::string_view field,
                 size_t max_bytes = std::numeric_limits<size_t>::max());

// A project or cluster name: 1-63 letters, digits, '.', '_' or '-', starting
// with a letter or digit (the CHECK of sql/001_core.sql, so no other name
// can exist). `kind` ("project", "cluster") names it in the error.
Status CheckName(std::string_view kind, std::string_view name);

}  // namespace kiln
