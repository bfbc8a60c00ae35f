#pragma once
// How busy a db::Pool is, for metrics; free of libpqxx, so that the
// composition roots can read it.

#include <cstddef>
#include <cstdint>

namespace kiln::db {

class Pool;

struct PoolStats {
  size_t size = 0, open = 0, in_use = 0, waiting = 0;  // connections; threads waiting for one
  uint64_t errors = 0;  // statements the database failed (or connections it refused), since the pool opened
};

// A snapshot of the pool's counters.
PoolStats StatsOf(const Pool& pool);

}  // namespace kiln::db
