#pragma once
// Blob storage behind a small interface, so that another backend (an object
// store) can replace the local directory later.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cas/digest.h"

namespace kiln::cas {

// An upload in progress, resumable by its id: bytes are appended to a
// temporary file that is verified and renamed into place by Commit. Until
// then nothing is visible under the blob's name.
class BlobWriter {
 public:
  virtual ~BlobWriter() = default;
  virtual int64_t committed() const = 0;  // bytes written so far
  virtual Status Append(std::string_view data) = 0;
  // Verifies size and sha256 against the digest; on a mismatch the
  // temporary file is removed and nothing becomes visible.
  virtual Status Commit() = 0;
};

struct BlobInfo {
  Digest digest;
  int64_t last_used_s = 0;  // unix seconds
};

class BlobStore {
 public:
  virtual ~BlobStore() = default;
  // Whether the blob is present (with the right size); marks it used.
  virtual bool Has(const Digest& d) = 0;
  // Stores the blob after checking `data` against `d`.
  virtual Status Put(const Digest& d, std::string_view data) = 0;
  // Stores many blobs with one flush to disk; one status per blob.
  virtual std::vector<Status> PutMany(const std::vector<std::pair<Digest, std::string_view>>& blobs) = 0;
  // Reads up to `limit` bytes (0: all) from `offset`.
  virtual Result<std::string> Read(const Digest& d, int64_t offset, int64_t limit) = 0;
  // Opens (or resumes, for the same upload id) a streamed upload.
  virtual Result<std::unique_ptr<BlobWriter>> OpenWriter(const Digest& d, const std::string& upload_id) = 0;
  // Bytes a resumable upload already holds (0 if none).
  virtual int64_t PendingSize(const Digest& d, const std::string& upload_id) = 0;
  virtual void ForEach(const std::function<void(const BlobInfo&)>& fn) = 0;
  // Removes the blob if it was not used since `unused_since_s`; true if removed.
  virtual bool RemoveIfUnused(const Digest& d, int64_t unused_since_s) = 0;
  // Removes abandoned uploads older than `older_than_s` (unix seconds).
  virtual int RemoveStaleUploads(int64_t older_than_s) = 0;
};

// Blobs in `<root>/blobs/<hash[0:2]>/<hash>`, uploads in `<root>/uploads/`.
// Last use is the file's mtime, refreshed by Has() when older than
// `touch_after_s` (keep it at most a quarter of the collector's minimum
// age); Has() remembers a blob it found for that long.
Result<std::unique_ptr<BlobStore>> OpenDirStore(const std::string& root, int64_t touch_after_s = 600);

}  // namespace kiln::cas
