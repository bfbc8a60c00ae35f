#pragma once
// Parsing and validation of command-line arguments that CLI11 cannot check
// itself. Failures are InvalidArgument with a message fit for the user.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::cli {

// A job id: a positive decimal integer. Fails with
// `invalid job id "abc": expected a positive number`.
Result<int64_t> ParseJobId(std::string_view text);

// "queued", "running", ... (case-insensitive). Fails naming the valid names.
Result<v1::JobStatus> ParseJobStatus(std::string_view text);

// KEY=VALUE items into a map (later ones win). `what` names the flag in errors.
Result<std::map<std::string, std::string>> ParseKeyValues(const std::vector<std::string>& items,
                                                          std::string_view what);

// A --since DUR as the unix ms it reaches back to; 0 for an empty one.
// Fails naming --since.
Result<int64_t> SinceMs(const std::string& since);

// A JSON document given as text, "@FILE" or "-" (stdin). Fails if the file
// cannot be read.
Result<std::string> ReadDocumentArg(const std::string& arg);

}  // namespace kiln::cli
