#include "audit/write.h"

namespace kiln::audit {

db::Statement InsertStatement() {
  return {"audit_insert",
          "INSERT INTO audit_log (actor, address, action, project, target, change)"
          " VALUES ($1, $2, $3, nullif($4, ''), $5, $6::jsonb)"};
}

void Write(pqxx::transaction_base& tx, const Entry& e) {
  tx.exec_prepared("audit_insert", e.who.actor, e.who.address, e.action, e.project, e.target, e.change());
}

}  // namespace kiln::audit
