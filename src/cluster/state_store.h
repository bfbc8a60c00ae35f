#pragma once
// The clusters' desired state in PostgreSQL (sql/021_cluster_state.sql).
// None throws. Failures: Unavailable when the database cannot be reached,
// NotFound for a cluster that does not exist, InvalidArgument for a spec
// that does not validate (cluster/spec.h), Internal otherwise.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "audit/entry.h"
#include "cluster/spec.h"
#include "common/status.h"

namespace kiln::db {
class Pool;
}

namespace kiln::cluster {

class StateStore {
 public:
  // Registers its statements with the pool, which must outlive the store.
  explicit StateStore(db::Pool& pool);

  // Every managed cluster's spec, by name.
  Result<std::vector<Spec>> List();
  // The cluster's spec; nullopt if it exists but is not managed. NotFound
  // if there is no such cluster.
  Result<std::optional<Spec>> Get(const std::string& cluster);

  // Changes a cluster's spec in one transaction: `edit` gets the current
  // spec (the defaults of cluster/spec.h for a cluster not managed yet),
  // changes it, and the result is validated and written with its audit row
  // (cluster.set: the old and the new spec, by `who`). Nothing is written
  // when `edit` or the validation fails, nor when nothing changed. Returns
  // the spec as stored.
  Result<Spec> Update(const std::string& cluster, const std::function<Status(Spec&)>& edit, const audit::Who& who);

 private:
  db::Pool& pool_;
};

}  // namespace kiln::cluster
