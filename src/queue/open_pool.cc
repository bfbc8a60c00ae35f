#include "queue/open_pool.h"

#include "db/pool.h"

namespace kiln::queue {

Result<std::shared_ptr<db::Pool>> OpenPool(const std::string& url, size_t pool_size) {
  // With LIMIT $3, a custom plan for a small limit looks far cheaper than the
  // generic one, so PostgreSQL would re-plan the claim on every execution.
  // The generic plan is the same ordered scan of build_jobs_queued (checked by
  // QueueTest.DequeueIsAnIndexScanWhateverTheHistory), so keep it.
  auto pool = std::make_shared<db::Pool>(url, pool_size, [](pqxx::connection& c) {
    pqxx::nontransaction tx(c);
    tx.exec0("SET plan_cache_mode = force_generic_plan");
  });
  // Fail early with a clear message if the database is unreachable.
  auto lease = pool->Acquire();
  if (!lease.ok()) return lease.status();
  return pool;
}

}  // namespace kiln::queue
