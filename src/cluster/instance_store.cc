#include "cluster/instance_store.h"

#include "audit/write.h"
#include "db/pool.h"

namespace kiln::cluster {

InstanceStore::InstanceStore(db::Pool& pool) : pool_(pool) {
  pool_.AddStatements({
      {"cluster_instances_list",
       "SELECT i.id, c.name, i.provider, i.config_hash, i.state, i.work_dir,"
       " coalesce((SELECT w.id FROM workers w WHERE w.work_dir = i.work_dir ORDER BY w.registered_at DESC LIMIT 1), ''),"
       " (extract(epoch FROM i.created_at) * 1000)::bigint, (extract(epoch FROM i.register_deadline) * 1000)::bigint"
       " FROM cluster_instances i JOIN clusters c ON c.id = i.cluster_id WHERE c.name = $1"
       " ORDER BY i.created_at, i.id"},
      {"cluster_workers",
       "SELECT w.id, CASE WHEN w.state IN ('connected', 'draining') AND w.lease_expires_at < now() THEN 'lost'"
       "   ELSE w.state END, w.health = 'healthy', w.health_reason,"
       " (SELECT count(*) FROM build_jobs j WHERE j.worker_id = w.id AND j.status IN ('setup', 'running')),"
       " (extract(epoch FROM greatest(w.registered_at, (SELECT max(j.finished_at) FROM build_jobs j"
       "   WHERE j.worker_id = w.id))) * 1000)::bigint"
       " FROM workers w JOIN clusters c ON c.id = w.cluster_id WHERE c.name = $1"},
      {"cluster_now", "SELECT (extract(epoch FROM now()) * 1000)::bigint"},
      {"cluster_instance_insert",
       "INSERT INTO cluster_instances (id, cluster_id, provider, config_hash, state, work_dir, register_deadline)"
       " SELECT $1, c.id, $3, $4, 'starting', $5, now() + $6 * interval '1 millisecond'"
       " FROM clusters c WHERE c.name = $2 RETURNING id"},
      {"cluster_instance_state", "UPDATE cluster_instances SET state = $2 WHERE id = $1"},
      {"cluster_instance_remove", "DELETE FROM cluster_instances WHERE id = $1"},
      audit::InsertStatement(),
  });
}

Result<std::vector<InstanceRow>> InstanceStore::List(const std::string& cluster) {
  return pool_.Query("cannot list cluster " + cluster + "'s instances",
                     [&](pqxx::connection& c) -> Result<std::vector<InstanceRow>> {
                       pqxx::read_transaction tx(c);
                       std::vector<InstanceRow> out;
                       for (const auto& r : tx.exec_prepared("cluster_instances_list", cluster)) {
                         InstanceRow i;
                         i.id = r[0].as<std::string>();
                         i.cluster = r[1].as<std::string>();
                         i.provider = r[2].as<std::string>();
                         i.config_hash = r[3].as<std::string>();
                         i.state = r[4].as<std::string>();
                         i.work_dir = r[5].as<std::string>();
                         i.worker_id = r[6].as<std::string>();
                         i.created_at_ms = r[7].as<int64_t>();
                         i.register_deadline_ms = r[8].as<int64_t>();
                         out.push_back(std::move(i));
                       }
                       return out;
                     });
}

Result<std::map<std::string, WorkerView>> InstanceStore::Workers(const std::string& cluster) {
  return pool_.Query("cannot read cluster " + cluster + "'s workers",
                     [&](pqxx::connection& c) -> Result<std::map<std::string, WorkerView>> {
                       pqxx::read_transaction tx(c);
                       std::map<std::string, WorkerView> out;
                       for (const auto& r : tx.exec_prepared("cluster_workers", cluster)) {
                         WorkerView w;
                         w.state = r[1].as<std::string>();
                         w.healthy = r[2].as<bool>();
                         w.health_reason = r[3].as<std::string>();
                         w.running = r[4].as<int>();
                         w.idle_since_ms = r[5].as<int64_t>();
                         out[r[0].as<std::string>()] = w;
                       }
                       return out;
                     });
}

Result<int64_t> InstanceStore::NowMs() {
  return pool_.Query("cannot read the database's clock", [&](pqxx::connection& c) -> Result<int64_t> {
    pqxx::nontransaction tx(c);
    return tx.exec_prepared("cluster_now")[0][0].as<int64_t>();
  });
}

Status InstanceStore::Insert(const InstanceRow& r, int64_t register_ms) {
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        if (tx.exec_prepared("cluster_instance_insert", r.id, r.cluster, r.provider, r.config_hash, r.work_dir,
                             register_ms)
                .empty())
          return NotFound("cluster \"" + r.cluster + "\" does not exist");
        return Status::Ok();
      },
      "cannot record instance " + r.id);
}

Status InstanceStore::SetState(const std::string& id, const std::string& state) {
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        tx.exec_prepared("cluster_instance_state", id, state);
        return Status::Ok();
      },
      "cannot change instance " + id);
}

Status InstanceStore::Remove(const std::string& id) {
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        tx.exec_prepared("cluster_instance_remove", id);
        return Status::Ok();
      },
      "cannot remove instance " + id);
}

Status InstanceStore::RecordApply(const std::string& cluster, const std::vector<std::string>& steps,
                                  const audit::Who& who) {
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::work tx(c);
        audit::Entry e(who, "cluster.apply", "", "cluster " + cluster);
        e.Set("steps", steps);
        audit::Write(tx, e);
        tx.commit();
        return Status::Ok();
      },
      "cannot record the apply of cluster " + cluster);
}

}  // namespace kiln::cluster
