#include "queue/gauge_store.h"

#include "db/pool.h"

namespace kiln::queue {

GaugeStore::GaugeStore(db::Pool& pool) : pool_(pool) {
  pool_.AddStatements({
      // A project without queued jobs is one row (project, '(any)', 0).
      {"gauge_queue_depth",
       "SELECT p.name, coalesce(c.name, '(any)'), count(j.id) FROM projects p"
       " LEFT JOIN build_jobs j ON j.project_id = p.id AND j.status = 'queued'"
       " LEFT JOIN clusters c ON c.id = j.cluster_id GROUP BY 1, 2"},
      {"gauge_cluster_slots",
       "SELECT c.name,"
       "  (SELECT count(*) FROM workers w WHERE w.cluster_id = c.id AND w.state = 'connected'),"
       "  (SELECT coalesce(sum(w.slots), 0) FROM workers w WHERE w.cluster_id = c.id AND w.state = 'connected'),"
       "  (SELECT count(*) FROM build_jobs j JOIN workers w ON w.id = j.worker_id"
       "    WHERE w.cluster_id = c.id AND j.status IN ('setup', 'running')),"
       "  (SELECT count(*) FROM workers w WHERE w.cluster_id = c.id AND w.state IN ('connected', 'draining')"
       "    AND w.health = 'unhealthy')"
       " FROM clusters c"},
  });
}

Result<FarmGauges> GaugeStore::Read() {
  return pool_.Query("cannot read the farm's gauges", [](pqxx::connection& c) -> Result<FarmGauges> {
    pqxx::read_transaction tx(c);
    FarmGauges g;
    for (const auto& row : tx.exec_prepared("gauge_queue_depth")) {
      g.queued.push_back({row[0].as<std::string>(), row[1].as<std::string>(), row[2].as<int64_t>()});
    }
    for (const auto& row : tx.exec_prepared("gauge_cluster_slots")) {
      g.clusters.push_back(
          {row[0].as<std::string>(), row[1].as<int64_t>(), row[2].as<int64_t>(), row[3].as<int64_t>(),
           row[4].as<int64_t>()});
    }
    return g;
  });
}

}  // namespace kiln::queue
