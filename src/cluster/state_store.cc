#include "cluster/state_store.h"

#include <nlohmann/json.hpp>

#include "audit/write.h"
#include "common/text.h"
#include "db/pool.h"

namespace kiln::cluster {
namespace {

constexpr const char* kSelect =
    "SELECT c.name, s.min_workers, s.max_workers, s.slots_per_worker, s.labels::text, s.worker_config::text,"
    " s.provider, s.provider_settings::text, s.target_queue_wait_ms, s.jobs_per_slot, s.scale_up_step,"
    " s.scale_up_cooldown_ms, s.scale_down_cooldown_ms, s.scale_in_delay_ms, s.updated_by,"
    " (extract(epoch FROM s.updated_at) * 1000)::bigint"
    " FROM cluster_state s JOIN clusters c ON c.id = s.cluster_id ";

Spec RowToSpec(const pqxx::row& r) {
  Spec s;
  s.cluster = r[0].as<std::string>();
  s.min_workers = r[1].as<int>();
  s.max_workers = r[2].as<int>();
  s.slots_per_worker = r[3].as<int>();
  const auto labels = nlohmann::json::parse(r[4].as<std::string>());
  for (const auto& [k, v] : labels.items()) s.labels[k] = v.is_string() ? v.get<std::string>() : v.dump();
  // jsonb's own text orders keys by length: shown canonical, as stored.
  s.worker_config = nlohmann::json::parse(r[5].as<std::string>()).dump();
  s.provider = r[6].as<std::string>();
  s.provider_settings = nlohmann::json::parse(r[7].as<std::string>()).dump();
  s.policy.target_queue_wait_ms = r[8].as<int64_t>();
  s.policy.jobs_per_slot = r[9].as<double>();
  s.policy.scale_up_step = r[10].as<int>();
  s.policy.scale_up_cooldown_ms = r[11].as<int64_t>();
  s.policy.scale_down_cooldown_ms = r[12].as<int64_t>();
  s.policy.scale_in_delay_ms = r[13].as<int64_t>();
  s.updated_by = r[14].as<std::string>();
  s.updated_at_ms = r[15].as<int64_t>();
  return s;
}

Status ClusterNotFound(const std::string& name) {
  return NotFound("cluster \"" + name + "\" does not exist (create it with kiln clusters create " + name + ")");
}

}  // namespace

StateStore::StateStore(db::Pool& pool) : pool_(pool) {
  pool_.AddStatements({
      {"cluster_state_list", std::string(kSelect) + "ORDER BY c.name"},
      {"cluster_state_get", std::string(kSelect) + "WHERE c.name = $1"},
      {"cluster_state_exists", "SELECT id FROM clusters WHERE name = $1"},
      {"cluster_state_lock", "SELECT id FROM clusters WHERE name = $1 FOR UPDATE"},
      {"cluster_state_upsert",
       "INSERT INTO cluster_state (cluster_id, min_workers, max_workers, slots_per_worker, labels, worker_config,"
       " provider, provider_settings, target_queue_wait_ms, jobs_per_slot, scale_up_step, scale_up_cooldown_ms,"
       " scale_down_cooldown_ms, scale_in_delay_ms, updated_by)"
       " VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8::jsonb, $9, $10, $11, $12, $13, $14, $15)"
       " ON CONFLICT (cluster_id) DO UPDATE SET min_workers = EXCLUDED.min_workers,"
       " max_workers = EXCLUDED.max_workers, slots_per_worker = EXCLUDED.slots_per_worker,"
       " labels = EXCLUDED.labels, worker_config = EXCLUDED.worker_config, provider = EXCLUDED.provider,"
       " provider_settings = EXCLUDED.provider_settings, target_queue_wait_ms = EXCLUDED.target_queue_wait_ms,"
       " jobs_per_slot = EXCLUDED.jobs_per_slot, scale_up_step = EXCLUDED.scale_up_step,"
       " scale_up_cooldown_ms = EXCLUDED.scale_up_cooldown_ms, scale_down_cooldown_ms = EXCLUDED.scale_down_cooldown_ms,"
       " scale_in_delay_ms = EXCLUDED.scale_in_delay_ms, updated_by = EXCLUDED.updated_by"},
      audit::InsertStatement(),
  });
}

Result<std::vector<Spec>> StateStore::List() {
  return pool_.Query("cannot list the clusters' desired state", [&](pqxx::connection& c) -> Result<std::vector<Spec>> {
    pqxx::read_transaction tx(c);
    std::vector<Spec> out;
    for (const auto& r : tx.exec_prepared("cluster_state_list")) out.push_back(RowToSpec(r));
    return out;
  });
}

Result<std::optional<Spec>> StateStore::Get(const std::string& cluster) {
  KILN_RETURN_IF_ERROR(CheckName("cluster", cluster));
  return pool_.Query("cannot read cluster " + cluster + "'s desired state",
                     [&](pqxx::connection& c) -> Result<std::optional<Spec>> {
                       pqxx::read_transaction tx(c);
                       auto r = tx.exec_prepared("cluster_state_get", cluster);
                       if (!r.empty()) return std::optional<Spec>(RowToSpec(r[0]));
                       if (tx.exec_prepared("cluster_state_exists", cluster).empty()) return ClusterNotFound(cluster);
                       return std::optional<Spec>();
                     });
}

Result<Spec> StateStore::Update(const std::string& cluster, const std::function<Status(Spec&)>& edit,
                                const audit::Who& who) {
  KILN_RETURN_IF_ERROR(CheckName("cluster", cluster));
  return pool_.Query("cannot change cluster " + cluster + "'s desired state", [&](pqxx::connection& c) -> Result<Spec> {
    pqxx::work tx(c);
    // The cluster's row, locked: concurrent edits apply one after the other.
    auto id = tx.exec_prepared("cluster_state_lock", cluster);
    if (id.empty()) return ClusterNotFound(cluster);
    auto cur = tx.exec_prepared("cluster_state_get", cluster);
    Spec old;
    old.cluster = cluster;
    const bool existed = !cur.empty();
    if (existed) old = RowToSpec(cur[0]);
    Spec next = old;
    KILN_RETURN_IF_ERROR(edit(next));
    next.cluster = cluster;
    KILN_RETURN_IF_ERROR(Canonicalize(next));
    KILN_RETURN_IF_ERROR(Validate(next));
    const std::string before = ToJson(old), after = ToJson(next);
    if (existed && before == after) return old;  // nothing changed: nothing recorded
    tx.exec_prepared("cluster_state_upsert", id[0][0].as<int64_t>(), next.min_workers, next.max_workers,
                     next.slots_per_worker, nlohmann::json(next.labels).dump(), next.worker_config, next.provider,
                     next.provider_settings, next.policy.target_queue_wait_ms, next.policy.jobs_per_slot,
                     next.policy.scale_up_step, next.policy.scale_up_cooldown_ms, next.policy.scale_down_cooldown_ms,
                     next.policy.scale_in_delay_ms, who.actor);
    audit::Entry e(who, "cluster.set", "", "cluster " + cluster);
    if (existed) e.SetJson("old", before);
    e.SetJson("new", after);
    audit::Write(tx, e);
    auto out = RowToSpec(tx.exec_prepared("cluster_state_get", cluster)[0]);
    tx.commit();
    return out;
  });
}

}  // namespace kiln::cluster
