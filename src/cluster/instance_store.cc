#include "cluster/instance_store.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

#include "audit/write.h"
#include "db/leader.h"
#include "db/pool.h"

namespace kiln::cluster {

struct InstanceStore::LockConn {
  std::mutex mu;
  std::unique_ptr<pqxx::connection> c;
};

InstanceStore::~InstanceStore() = default;

InstanceStore::InstanceStore(db::Pool& pool) : pool_(pool), lock_(std::make_unique<LockConn>()) {
  pool_.AddStatements({
      {"cluster_instances_list",
       "SELECT i.id, c.name, i.provider, i.config_hash, i.state, i.work_dir,"
       " coalesce((SELECT w.id FROM workers w WHERE w.work_dir = i.work_dir ORDER BY w.registered_at DESC LIMIT 1), ''),"
       " (extract(epoch FROM i.created_at) * 1000)::bigint, (extract(epoch FROM i.register_deadline) * 1000)::bigint"
       " FROM cluster_instances i JOIN clusters c ON c.id = i.cluster_id WHERE c.name = $1"
       " ORDER BY i.created_at, i.id"},
      {"cluster_workers",
       // Lost as the reaper says it (a minute past its lease), before the reaper's next pass.
       "SELECT w.id, CASE WHEN w.lease_expires_at < now() - interval '1 minute' THEN 'lost'"
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
      // A cluster's queue as its workers see it (the claim's project mapping
      // and pin), and its workers' slots.
      // A queued job counts for one managed cluster only: of those serving
      // its project (and the cluster it names, if any) whose live workers
      // meet its requirements (with no live worker: whose labels do, the
      // properties a worker reports of itself — arch, os, sandbox, plain —
      // taken as met), the first created. Not a job waiting for an
      // identical one's result: it will not run. (The first filter is
      // this cluster's own jobs; the rest runs for those alone.)
      {"cluster_seen",
       "WITH c AS (SELECT id FROM clusters WHERE name = $1),"
       " q AS (SELECT j.queue_start_time FROM build_jobs j, c WHERE j.status = 'queued'"
       "   AND j.project_id IN (SELECT cp.project_id FROM cluster_projects cp WHERE cp.cluster_id = c.id)"
       "   AND (j.cluster_id IS NULL OR j.cluster_id = c.id)"
       "   AND (j.waits_for IS NULL OR NOT EXISTS (SELECT 1 FROM build_jobs f WHERE f.id = j.waits_for"
       "                                           AND f.status IN ('queued', 'setup', 'running')))"
       "   AND c.id = (SELECT m.cluster_id FROM cluster_projects cp JOIN cluster_state m ON m.cluster_id = cp.cluster_id"
       "     WHERE cp.project_id = j.project_id AND (j.cluster_id IS NULL OR j.cluster_id = m.cluster_id)"
       "       AND (EXISTS (SELECT 1 FROM workers w WHERE w.cluster_id = m.cluster_id"
       "                      AND w.state IN ('connected', 'draining') AND w.properties @> j.requirements)"
       "            OR (NOT EXISTS (SELECT 1 FROM workers w WHERE w.cluster_id = m.cluster_id"
       "                              AND w.state IN ('connected', 'draining'))"
       "                AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(j.requirements) r"
       "                                WHERE r.key NOT IN ('arch', 'os', 'sandbox', 'plain')"
       "                                  AND (m.labels->>r.key) IS DISTINCT FROM r.value)))"
       "     ORDER BY m.cluster_id LIMIT 1))"
       " SELECT (SELECT count(*) FROM q),"
       "  coalesce((SELECT (extract(epoch FROM now() - min(queue_start_time)) * 1000)::bigint FROM q), 0),"
       "  (SELECT count(*) FROM build_jobs j JOIN workers w ON w.id = j.worker_id, c"
       "    WHERE w.cluster_id = c.id AND j.status IN ('setup', 'running')),"
       "  (SELECT coalesce(sum(w.slots), 0) FROM workers w, c WHERE w.cluster_id = c.id AND w.state = 'connected'"
       "    AND w.health = 'healthy')"
       " FROM c"},
      {"cluster_decision_insert",
       "INSERT INTO cluster_decisions (cluster_id, controller, queued_jobs, running_jobs, queued_actions,"
       " oldest_wait_ms, slots, serving, previous, desired, action, reason, steps, error)"
       " SELECT c.id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14 FROM clusters c WHERE c.name = $1"
       " RETURNING id"},
      {"cluster_decision_finish", "UPDATE cluster_decisions SET steps = $2::jsonb, error = $3 WHERE id = $1"},
      {"cluster_decision_last",
       "SELECT d.desired, coalesce((SELECT (extract(epoch FROM max(x.decided_at)) * 1000)::bigint"
       "   FROM cluster_decisions x WHERE x.cluster_id = d.cluster_id AND x.action IN ('scale_up', 'scale_down')), 0)"
       " FROM cluster_decisions d JOIN clusters c ON c.id = d.cluster_id WHERE c.name = $1 ORDER BY d.id DESC LIMIT 1"},
      {"cluster_decisions",
       "SELECT d.id, (extract(epoch FROM d.decided_at) * 1000)::bigint, d.controller, d.queued_jobs, d.running_jobs,"
       " d.queued_actions, d.oldest_wait_ms, d.slots, d.serving, d.previous, d.desired, d.action, d.reason,"
       " d.steps::text, d.error"
       " FROM cluster_decisions d JOIN clusters c ON c.id = d.cluster_id WHERE c.name = $1 ORDER BY d.id DESC LIMIT $2"},
      // Older than the retention, but never a cluster's newest (its desired count).
      {"cluster_decisions_prune",
       "DELETE FROM cluster_decisions d WHERE d.decided_at < now() - make_interval(secs => $1)"
       " AND d.id < (SELECT max(x.id) FROM cluster_decisions x WHERE x.cluster_id = d.cluster_id)"},
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

namespace {

// The apply lock: the two-key form, (1802071150 = "kiln", 2), apart from
// the farm leader's one-key lock.
class PgApplyLock final : public InstanceStore::ApplyLock {
 public:
  // `c` (held under `g`) is the store's lock connection, kept open across
  // applies; it is dropped when it fails, and opened again by the next.
  PgApplyLock(std::unique_lock<std::mutex> g, std::unique_ptr<pqxx::connection>& c) : g_(std::move(g)), c_(c) {}
  ~PgApplyLock() override {
    try {
      pqxx::nontransaction tx(*c_);
      tx.exec("SELECT pg_advisory_unlock(1802071150, 2)");
    } catch (const std::exception&) {
      c_.reset();  // closing the session releases it
    }
  }
  Status Held() override {
    try {
      pqxx::nontransaction tx(*c_);
      if (tx.exec("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 1802071150"
                  " AND objid = 2 AND objsubid = 2 AND pid = pg_backend_pid() AND granted)")[0][0]
              .as<bool>())
        return Status::Ok();
      return Unavailable("the farm's apply lock is no longer held by this controller; the steps left are for the "
                         "next apply (kiln clusters apply, or the autoscaler's next pass)");
    } catch (const std::exception& e) {
      return Unavailable(std::string("the farm's apply lock was lost with its connection (") + e.what() +
                         "); the steps left are for the next apply (kiln clusters apply, or the autoscaler's next pass)");
    }
  }

 private:
  std::unique_lock<std::mutex> g_;
  std::unique_ptr<pqxx::connection>& c_;
};

}  // namespace

Result<std::unique_ptr<InstanceStore::ApplyLock>> InstanceStore::HoldApplyLock() {
  // A connection of its own (a pooled one could be replaced behind the
  // holder's back; keepalives notice a dead peer on both sides), opened once
  // and kept for the next apply.
  std::unique_lock<std::mutex> g(lock_->mu);
  std::unique_ptr<pqxx::connection>& conn = lock_->c;
  // Tried, not waited on in the server: a bounded wait, and a connection
  // that broke meanwhile is seen at once. A kept connection that broke
  // since the last apply (the server restarted) is opened again, once.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int tries = 0;; ++tries) {
    const bool reused = conn != nullptr && conn->is_open();
    if (!reused) {
      conn.reset();
      auto opened = db::Connect(db::WithKeepalives(pool_.url()));
      if (!opened.ok()) return Unavailable("cannot take the farm's apply lock: " + opened.status().message());
      conn = std::move(*opened);
    }
    try {
      for (;;) {
        pqxx::nontransaction tx(*conn);
        if (tx.exec("SELECT pg_try_advisory_lock(1802071150, 2)")[0][0].as<bool>()) break;
        if (std::chrono::steady_clock::now() > deadline)
          return Unavailable("another apply has held the farm's apply lock for 60 s (a slow provider?); try again");
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      break;
    } catch (const std::exception& e) {
      conn.reset();
      if (!reused || tries > 0) return Unavailable(std::string("cannot take the farm's apply lock: ") + e.what());
    }
  }
  return std::unique_ptr<ApplyLock>(std::make_unique<PgApplyLock>(std::move(g), conn));
}

Result<Signals> InstanceStore::Seen(const std::string& cluster) {
  return pool_.Query("cannot read cluster " + cluster + "'s queue", [&](pqxx::connection& c) -> Result<Signals> {
    pqxx::read_transaction tx(c);
    auto r = tx.exec_prepared("cluster_seen", cluster);
    if (r.empty()) return NotFound("cluster \"" + cluster + "\" does not exist");
    Signals g;
    g.queued_jobs = r[0][0].as<int64_t>();
    g.oldest_wait_ms = std::max<int64_t>(0, r[0][1].as<int64_t>());
    g.running_jobs = r[0][2].as<int64_t>();
    g.slots = r[0][3].as<int64_t>();
    return g;
  });
}

Result<int64_t> InstanceStore::RecordDecision(const std::string& cluster, const DecisionRow& d) {
  return pool_.Query("cannot record a decision of cluster " + cluster, [&](pqxx::connection& c) -> Result<int64_t> {
    pqxx::nontransaction tx(c);
    auto r = tx.exec_prepared("cluster_decision_insert", cluster, d.controller, d.seen.queued_jobs, d.seen.running_jobs,
                              d.seen.queued_actions, d.seen.oldest_wait_ms, d.seen.slots, d.seen.serving, d.previous,
                              d.desired, d.action, d.reason, nlohmann::json(d.steps).dump(), d.error);
    if (r.empty()) return NotFound("cluster \"" + cluster + "\" does not exist");
    return r[0][0].as<int64_t>();
  });
}

Status InstanceStore::FinishDecision(int64_t id, const std::vector<std::string>& steps, const std::string& error) {
  return pool_.Run(
      [&](pqxx::connection& c) -> Status {
        pqxx::nontransaction tx(c);
        tx.exec_prepared("cluster_decision_finish", id, nlohmann::json(steps).dump(), error);
        return Status::Ok();
      },
      "cannot record the steps of decision " + std::to_string(id));
}

Result<std::optional<LastDecision>> InstanceStore::Last(const std::string& cluster) {
  return pool_.Query("cannot read cluster " + cluster + "'s last decision",
                     [&](pqxx::connection& c) -> Result<std::optional<LastDecision>> {
                       pqxx::read_transaction tx(c);
                       auto r = tx.exec_prepared("cluster_decision_last", cluster);
                       if (r.empty()) return std::optional<LastDecision>();
                       return std::optional<LastDecision>(LastDecision{r[0][0].as<int>(), r[0][1].as<int64_t>()});
                     });
}

Result<std::vector<DecisionRow>> InstanceStore::Decisions(const std::string& cluster, int limit) {
  return pool_.Query("cannot read cluster " + cluster + "'s decisions",
                     [&](pqxx::connection& c) -> Result<std::vector<DecisionRow>> {
                       pqxx::read_transaction tx(c);
                       std::vector<DecisionRow> out;
                       for (const auto& r : tx.exec_prepared("cluster_decisions", cluster, limit)) {
                         DecisionRow d;
                         d.id = r[0].as<int64_t>();
                         d.at_ms = r[1].as<int64_t>();
                         d.controller = r[2].as<std::string>();
                         d.seen.queued_jobs = r[3].as<int64_t>();
                         d.seen.running_jobs = r[4].as<int64_t>();
                         d.seen.queued_actions = r[5].as<int64_t>();
                         d.seen.oldest_wait_ms = r[6].as<int64_t>();
                         d.seen.slots = r[7].as<int64_t>();
                         d.seen.serving = r[8].as<int>();
                         d.previous = r[9].as<int>();
                         d.desired = r[10].as<int>();
                         d.action = r[11].as<std::string>();
                         d.reason = r[12].as<std::string>();
                         auto steps = nlohmann::json::parse(r[13].as<std::string>(), nullptr, false);
                         if (steps.is_array())
                           for (const auto& s : steps)
                             if (s.is_string()) d.steps.push_back(s.get<std::string>());
                         d.error = r[14].as<std::string>();
                         out.push_back(std::move(d));
                       }
                       return out;
                     });
}

Result<int64_t> InstanceStore::PruneDecisions(std::chrono::milliseconds retention) {
  return db::DeleteUnused(pool_, "cluster_decisions_prune", retention, "cannot prune the autoscaler's decisions");
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
