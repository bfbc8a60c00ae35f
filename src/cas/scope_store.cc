#include "cas/scope_store.h"

#include "db/pool.h"

namespace kiln::cas {
namespace {

std::string Join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

// Scopes and hashes travel comma-joined: none may hold a comma.
Status CheckList(const std::vector<std::string>& v) {
  for (const auto& s : v) {
    if (s.empty() || s.find(',') != std::string::npos) return InvalidArgument("invalid scope or hash \"" + s + "\"");
  }
  return Status::Ok();
}

std::vector<db::Statement> Statements() {
  // Lists travel as one comma-joined text: hashes are hex, scopes are names
  // of [A-Za-z0-9._:-] (no commas).
  return {
      {"scope_add",
       "INSERT INTO cas_scope_members (scope, hash)"
       " SELECT s, h FROM unnest(string_to_array($1, ',')) s, unnest(string_to_array($2, ',')) h"
       " ON CONFLICT DO NOTHING"},
      {"scope_members",
       "SELECT DISTINCT hash FROM cas_scope_members"
       " WHERE scope = ANY (string_to_array($1, ',')) AND hash = ANY (string_to_array($2, ','))"},
      {"scope_worker",
       "SELECT DISTINCT v.s FROM build_jobs j JOIN projects p ON p.id = j.project_id,"
       " LATERAL (VALUES ('project:' || p.name), (j.cache_scope)) v(s)"
       " WHERE j.worker_id = $1 AND j.status IN ('setup', 'running') AND v.s IS NOT NULL"},
      {"scope_job",
       "SELECT 'project:' || p.name, coalesce(j.cache_scope, '') FROM build_jobs j JOIN projects p ON p.id = j.project_id"
       " WHERE j.id = $1 AND j.attempt = $2 AND j.worker_id = $3 AND j.status IN ('setup', 'running')"},
      {"scope_forget", "DELETE FROM cas_scope_members WHERE hash = ANY (string_to_array($1, ','))"},
  };
}

}  // namespace

ScopeStore::ScopeStore(db::Pool& pool) : pool_(pool) { pool_.AddStatements(Statements()); }

Status ScopeStore::Add(const std::vector<std::string>& scopes, const std::vector<std::string>& hashes) {
  if (scopes.empty() || hashes.empty()) return Status::Ok();
  KILN_RETURN_IF_ERROR(CheckList(scopes));
  KILN_RETURN_IF_ERROR(CheckList(hashes));
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        tx.exec_prepared("scope_add", Join(scopes), Join(hashes));
        return Status::Ok();
      },
      "cannot record content scopes");
}

Result<std::unordered_set<std::string>> ScopeStore::Members(const std::vector<std::string>& scopes,
                                                            const std::vector<std::string>& hashes) {
  std::unordered_set<std::string> out;
  if (scopes.empty() || hashes.empty()) return out;
  KILN_RETURN_IF_ERROR(CheckList(scopes));
  KILN_RETURN_IF_ERROR(CheckList(hashes));
  return pool_.Query("cannot read content scopes", [&](pqxx::connection& c) -> Result<std::unordered_set<std::string>> {
    pqxx::nontransaction tx(c);
    for (const auto& r : tx.exec_prepared("scope_members", Join(scopes), Join(hashes))) out.insert(r[0].as<std::string>());
    return out;
  });
}

Result<std::vector<std::string>> ScopeStore::WorkerScopes(const std::string& worker_id) {
  return pool_.Query("cannot read the scopes of worker " + worker_id,
                     [&](pqxx::connection& c) -> Result<std::vector<std::string>> {
                       pqxx::nontransaction tx(c);
                       std::vector<std::string> out{"worker:" + worker_id, "images"};
                       for (const auto& r : tx.exec_prepared("scope_worker", worker_id))
                         out.push_back(r[0].as<std::string>());
                       return out;
                     });
}

Result<std::vector<std::string>> ScopeStore::RunningJobScopes(int64_t job_id, int attempt,
                                                              const std::string& worker_id) {
  return pool_.Query("cannot read the scope of job " + std::to_string(job_id),
                     [&](pqxx::connection& c) -> Result<std::vector<std::string>> {
                       pqxx::nontransaction tx(c);
                       std::vector<std::string> out;
                       auto r = tx.exec_prepared("scope_job", job_id, attempt, worker_id);
                       if (r.empty()) return out;
                       out.push_back(r[0][0].as<std::string>());
                       if (!r[0][1].as<std::string>().empty()) out.push_back(r[0][1].as<std::string>());
                       return out;
                     });
}

Status ScopeStore::Forget(const std::vector<std::string>& hashes) {
  if (hashes.empty()) return Status::Ok();
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        tx.exec_prepared("scope_forget", Join(hashes));
        return Status::Ok();
      },
      "cannot forget removed content");
}

}  // namespace kiln::cas
