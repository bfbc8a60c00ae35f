#pragma once
// The audit trail's table as a whole: listing it (kiln audit,
// AdminService.ListAudit) and its retention. Rows are written by the stores
// that make changes (audit/write.h), never here. None throws; Unavailable
// when the database cannot be reached, Internal otherwise.

#include <chrono>
#include <cstdint>
#include <vector>

#include "audit/entry.h"
#include "common/status.h"

namespace kiln::db {
class Pool;
}

namespace kiln::audit {

class AuditStore {
 public:
  // Registers its statements with the pool, which must outlive the store.
  explicit AuditStore(db::Pool& pool);

  // Rows matching `f`, newest first; limit is clamped to 1..kMaxLimit.
  Result<std::vector<Record>> List(const Filter& f);
  static constexpr int kMaxLimit = 1000;

  // Deletes rows older than `retention`; returns how many.
  Result<int64_t> Prune(std::chrono::milliseconds retention);

 private:
  db::Pool& pool_;
};

}  // namespace kiln::audit
