#pragma once
// The action cache's table on the controller's side: its expiry. Entries
// are written by the dispatch store (a cacheable success, in the statement
// that stores the report) and read by the job store (a submit that hits);
// this store drops those unused for too long.

#include <chrono>
#include <cstdint>

#include "common/status.h"

namespace kiln::db {
class Pool;
}

namespace kiln::cache {

class ActionCacheStore {
 public:
  // Registers its statements with the pool, which must outlive the store.
  explicit ActionCacheStore(db::Pool& pool);

  // Drops entries not used for max_age (their outputs then go with the CAS
  // collection); returns how many. Unavailable if the database is away.
  Result<int64_t> Expire(std::chrono::milliseconds max_age);

 private:
  db::Pool& pool_;
};

}  // namespace kiln::cache
