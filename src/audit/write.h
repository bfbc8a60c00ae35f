#pragma once
// Writing the audit trail's row of a change inside the transaction (or
// statement) that makes it. Includes libpqxx: for the stores' own sources
// (src/queue, src/cas, src/auth), like db/pool.h.

#include "audit/entry.h"
#include "db/pool.h"

namespace kiln::audit {

// The statement Write runs ("audit_insert"): a store that calls Write adds
// it to its pool in its constructor.
db::Statement InsertStatement();

// Writes `e` in `tx`, the transaction of the change it records: committed
// with the change or rolled back with it. Throws what libpqxx throws (the
// store's Pool::Query turns it into a Status).
void Write(pqxx::transaction_base& tx, const Entry& e);

}  // namespace kiln::audit
