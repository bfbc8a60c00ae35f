#pragma once
// Limits of the CasService protocol, shared by the service and its client so
// that a client's batches always fit what the service accepts.

#include <cstdint>

namespace kiln::cas {

constexpr int kMaxDigestsPerCall = 10000;            // FindMissing, BatchRead
constexpr int64_t kMaxBatchUploadBytes = 4 << 20;    // BatchUpload, blob data
constexpr int64_t kMaxBatchReadBytes = 3 << 20;      // BatchRead response, data plus per-blob overhead:
constexpr int64_t kBatchReadOverheadPerBlob = 128;   //   (digest and framing) so it stays under gRPC's 4 MiB

}  // namespace kiln::cas
