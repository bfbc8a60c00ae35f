#pragma once
// The images table: which OCI images (by manifest digest) jobs may run in.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "audit/entry.h"
#include "cas/oci.h"

namespace kiln::db {
class Pool;
}

namespace kiln::cas {

struct ImageRow {
  std::string hash;  // manifest sha256
  int64_t manifest_size = 0;
  std::string name;
  oci::Manifest manifest;
  int64_t size = 0;
  int64_t imported_at_ms = 0;
};

class ImageStore {
 public:
  explicit ImageStore(std::string db_url, size_t pool_size = 2);
  ~ImageStore();
  // Records the image (again: updates the name if one is given), and in
  // the audit trail, in the same transaction, as `who`'s image.register
  // (nothing when registered again unchanged).
  Result<ImageRow> Put(const std::string& hash, int64_t manifest_size, const std::string& name,
                       const oci::Manifest& m, const audit::Who& who);
  // NotFound says how to import it.
  Result<ImageRow> Get(const std::string& hash);
  Result<std::vector<ImageRow>> List();
  // Refused while a job that has not ended names the image. Recorded as
  // image.remove.
  Result<ImageRow> Remove(const std::string& hash, const audit::Who& who);

 private:
  std::unique_ptr<db::Pool> pool_;
};

}  // namespace kiln::cas
