#include "cache/action_store.h"

#include "db/pool.h"

namespace kiln::cache {

ActionCacheStore::ActionCacheStore(db::Pool& pool) : pool_(pool) {
  pool_.AddStatements(
      {{"expire_action_cache", "DELETE FROM action_cache WHERE last_used < now() - make_interval(secs => $1)"}});
}

Result<int64_t> ActionCacheStore::Expire(std::chrono::milliseconds max_age) {
  return db::DeleteUnused(pool_, "expire_action_cache", max_age, "cannot expire action cache entries");
}

}  // namespace kiln::cache
