#pragma once
// Unpacking tar archives (image layers, OCI image archives) safely: nothing is
// written outside the destination, no symlink is followed, no device node is
// made.

#include <cstdint>
#include <string>

#include "common/status.h"

namespace kiln::cas {

struct UnpackOptions {
  bool whiteouts = true;     // OCI layer semantics: ".wh.NAME" deletes, ".wh..wh..opq" empties a directory
  int64_t max_bytes = 0;     // 0: no cap on the bytes written
};

struct UnpackStats {
  int64_t entries = 0;
  int64_t bytes = 0;
};

// Applies the archive (tar, plain or gzip/zstd/xz compressed) onto `dest`,
// which must exist. Refuses, naming the entry: absolute paths and ".."
// components, entries whose parent is a symlink (or not a directory),
// hardlinks that leave the archive's tree, device nodes and fifos.
Result<UnpackStats> Unpack(const std::string& archive_path, const std::string& dest, const UnpackOptions& o);

}  // namespace kiln::cas
