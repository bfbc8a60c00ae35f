#pragma once
// Length-prefixed messages on a stream socket (see proto/kiln/cc/v1/cc.proto).

#include <cstddef>
#include <string>

#include "common/status.h"

namespace kiln::cc {

// Writes a 4-byte big-endian length and the payload. Unavailable if the
// peer went away.
Status WriteFrame(int fd, const std::string& payload);

// Reads one frame. OutOfRange on a clean end of stream before a frame,
// InvalidArgument for a frame longer than max_bytes, Unavailable otherwise.
Result<std::string> ReadFrame(int fd, size_t max_bytes);

}  // namespace kiln::cc
