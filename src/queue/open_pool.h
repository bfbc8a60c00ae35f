#pragma once
// The connection pool the queue's stores share (jobs, dispatch, workers,
// catalog, action cache), opened once by a daemon's composition root and
// handed to each store it builds. Keeps libpqxx out of the caller.

#include <cstddef>
#include <memory>
#include <string>

#include "common/status.h"

namespace kiln::db {
class Pool;
}

namespace kiln::queue {

// At most pool_size connections, each with the generic plan forced for
// prepared statements (see open_pool.cc). Unavailable, with libpq's reason,
// if the database cannot be reached now.
Result<std::shared_ptr<db::Pool>> OpenPool(const std::string& database_url, size_t pool_size);

}  // namespace kiln::queue
