// AdminService: projects, clusters, workers, warm workspaces and trust. Handlers
// never throw; every failure is a grpc::Status with a message saying what to do.

#include "controller/admin_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <nlohmann/json.hpp>

#include "api/convert.h"
#include "audit/audit_store.h"
#include "auth/trust_store.h"
#include "cluster/instance_store.h"
#include "cluster/state_store.h"
#include "common/util.h"
#include "controller/deployer.h"
#include "controller/guard.h"
#include "common/text.h"
#include "config/project_config.h"
#include "controller/workspace_name.h"
#include "controller/signal.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "queue/catalog_store.h"
#include "queue/stats_store.h"
#include "queue/worker_store.h"

namespace kiln::controller {
namespace {

double Rate(int64_t part, int64_t whole) {
  return whole > 0 ? static_cast<double>(part) / static_cast<double>(whole) : 0.0;
}

void MillisToProto(const std::optional<int64_t>& ms, v1::Millis* out) {
  out->set_has(ms.has_value());
  out->set_ms(ms.value_or(0));
}

void StatsToProto(const queue::StatsReport& r, v1::Stats* out) {
  out->set_from_ms(r.from_ms);
  out->set_to_ms(r.to_ms);
  out->set_jobs(r.jobs);
  out->set_succeeded(r.succeeded);
  out->set_failed(r.failed);
  out->set_cancelled(r.cancelled);
  out->set_lost(r.lost);
  out->set_cached(r.cached);
  out->set_success_rate(Rate(r.succeeded + r.cached, r.jobs - r.cancelled));
  MillisToProto(r.wait_p50_ms, out->mutable_queue_wait_p50());
  MillisToProto(r.wait_p95_ms, out->mutable_queue_wait_p95());
  MillisToProto(r.wait_p99_ms, out->mutable_queue_wait_p99());
  MillisToProto(r.run_p50_ms, out->mutable_run_p50());
  MillisToProto(r.run_p95_ms, out->mutable_run_p95());
  out->set_queue_waits(r.waits);
  out->set_runs(r.runs);
  out->set_action_cache_lookups(r.cacheable);
  out->set_action_cache_hit_rate(Rate(r.cached, r.cacheable));
  const int64_t units = r.cc_hits + r.cc_misses + r.cc_failed;
  out->set_compile_units(units);
  out->set_compile_hits(r.cc_hits);
  out->set_compile_cache_hit_rate(Rate(r.cc_hits, units));
  out->set_action_cache_saved_ms(r.action_saved_ms);
  out->set_compile_cache_saved_ms(r.compile_saved_ms);
  for (const auto& c : r.clusters) {
    auto* u = out->add_clusters();
    u->set_cluster(c.cluster);
    u->set_samples(c.samples);
    u->set_slots_avg(c.slots_avg);
    u->set_busy_avg(c.busy_avg);
    u->set_has_utilisation(c.utilisation.has_value());
    u->set_utilisation(c.utilisation.value_or(0));
  }
  for (const auto& s : r.slowest) {
    auto* u = out->add_slowest_units();
    u->set_source(s.source);
    u->set_output(s.output);
    u->set_project(s.project);
    u->set_compile_ms(s.compile_ms);
  }
  for (const auto& m : r.most_missed) {
    auto* u = out->add_most_missed_units();
    u->set_source(m.source);
    u->set_misses(m.misses);
    u->set_last_reason(m.last_reason);
  }
}

void StateToProto(const cluster::Spec& s, v1::ClusterState* out) {
  out->set_cluster(s.cluster);
  out->set_min_workers(s.min_workers);
  out->set_max_workers(s.max_workers);
  out->set_slots_per_worker(s.slots_per_worker);
  for (const auto& [k, v] : s.labels) (*out->mutable_labels())[k] = v;
  out->set_worker_config_json(s.worker_config);
  out->set_provider(s.provider);
  out->set_provider_settings_json(s.provider_settings);
  auto* p = out->mutable_policy();
  p->set_target_queue_wait_ms(s.policy.target_queue_wait_ms);
  p->set_jobs_per_slot(s.policy.jobs_per_slot);
  p->set_scale_up_step(s.policy.scale_up_step);
  p->set_scale_up_cooldown_ms(s.policy.scale_up_cooldown_ms);
  p->set_scale_down_cooldown_ms(s.policy.scale_down_cooldown_ms);
  p->set_scale_in_delay_ms(s.policy.scale_in_delay_ms);
  out->set_updated_by(s.updated_by);
  out->set_updated_at_ms(s.updated_at_ms);
}

void PlanToProto(const cluster::Plan& p, v1::ClusterPlan* out) {
  out->set_cluster(p.cluster);
  out->set_desired(p.desired);
  out->set_serving(p.serving);
  for (const auto& s : p.steps) {
    auto* st = out->add_steps();
    st->set_op(cluster::OpName(s.op));
    st->set_instance(s.instance);
    st->set_reason(s.reason);
  }
  out->set_text(cluster::Render(p));
}

// Applies the fields a request carries to `s`; the others stay.
void ApplyRequest(const v1::SetClusterStateRequest& r, cluster::Spec& s) {
  if (r.has_min_workers()) s.min_workers = r.min_workers();
  if (r.has_max_workers()) s.max_workers = r.max_workers();
  if (r.has_slots_per_worker()) s.slots_per_worker = r.slots_per_worker();
  if (r.has_labels()) s.labels = {r.labels().values().begin(), r.labels().values().end()};
  if (r.has_worker_config_json()) s.worker_config = r.worker_config_json();
  if (r.has_provider()) s.provider = r.provider();
  if (r.has_provider_settings_json()) s.provider_settings = r.provider_settings_json();
  if (r.has_target_queue_wait_ms()) s.policy.target_queue_wait_ms = r.target_queue_wait_ms();
  if (r.has_jobs_per_slot()) s.policy.jobs_per_slot = r.jobs_per_slot();
  if (r.has_scale_up_step()) s.policy.scale_up_step = r.scale_up_step();
  if (r.has_scale_up_cooldown_ms()) s.policy.scale_up_cooldown_ms = r.scale_up_cooldown_ms();
  if (r.has_scale_down_cooldown_ms()) s.policy.scale_down_cooldown_ms = r.scale_down_cooldown_ms();
  if (r.has_scale_in_delay_ms()) s.policy.scale_in_delay_ms = r.scale_in_delay_ms();
}

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  explicit AdminServiceImpl(const AdminServiceDeps& d) : d_(d) {}

  grpc::Status ListWorkers(grpc::ServerContext* ctx, const v1::ListWorkersRequest* req,
                           v1::ListWorkersResponse* resp) override {
    if (auto who = d_.guard.Require(ctx, auth::Role::kRead); !who.ok()) return api::ToGrpc(who.status());
    auto ws = d_.workers.List(req->include_gone());
    if (!ws.ok()) return api::ToGrpc(ws.status());
    for (const auto& w : *ws) api::ToProto(w, resp->add_workers());
    return grpc::Status::OK;
  }

  // A read or submit token sees its own projects; an admin token, all.
  grpc::Status ListProjects(grpc::ServerContext* ctx, const v1::Empty*, v1::ListProjectsResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kRead);
    if (!who.ok()) return api::ToGrpc(who.status());
    auto ps = d_.catalog.ListProjects();
    if (!ps.ok()) return api::ToGrpc(ps.status());
    for (const auto& p : *ps) {
      if (who->Covers(p.name)) api::ToProto(p, resp->add_projects());
    }
    return grpc::Status::OK;
  }

  grpc::Status CreateProject(grpc::ServerContext* ctx, const v1::CreateProjectRequest* req, v1::Project* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (Status s = CheckName("project", req->name()); !s.ok()) return api::ToGrpc(s);
    auto cfg = Normalize(req->name(), req->config_json().empty() ? "{}" : req->config_json(), /*exists=*/false);
    if (!cfg.ok()) return api::ToGrpc(cfg.status());
    auto p = d_.catalog.CreateProject(req->name(), *cfg, who->Audit(*ctx));
    if (!p.ok()) return api::ToGrpc(p.status());
    spdlog::info("project created: {}", req->name());
    api::ToProto(*p, resp);
    return grpc::Status::OK;
  }

  grpc::Status GetProject(grpc::ServerContext* ctx, const v1::GetProjectRequest* req, v1::Project* resp) override {
    if (auto who = d_.guard.Require(ctx, auth::Role::kRead, req->name()); !who.ok()) return api::ToGrpc(who.status());
    if (Status s = CheckName("project", req->name()); !s.ok()) return api::ToGrpc(s);
    auto p = d_.catalog.GetProject(req->name());
    if (!p.ok()) return api::ToGrpc(p.status());
    api::ToProto(*p, resp);
    return grpc::Status::OK;
  }

  grpc::Status SetProjectConfig(grpc::ServerContext* ctx, const v1::SetProjectConfigRequest* req,
                                v1::Project* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (Status s = CheckName("project", req->name()); !s.ok()) return api::ToGrpc(s);
    auto cfg = Normalize(req->name(), req->config_json(), /*exists=*/true);
    if (!cfg.ok()) return api::ToGrpc(cfg.status());
    auto p = d_.catalog.SetProjectConfig(req->name(), *cfg, who->Audit(*ctx));
    if (!p.ok()) return api::ToGrpc(p.status());
    spdlog::info("project configuration changed: {}", req->name());
    d_.config_wake.Notify();
    api::ToProto(*p, resp);
    return grpc::Status::OK;
  }

  grpc::Status ListClusters(grpc::ServerContext* ctx, const v1::Empty*, v1::ListClustersResponse* resp) override {
    if (auto who = d_.guard.Require(ctx, auth::Role::kRead); !who.ok()) return api::ToGrpc(who.status());
    auto cs = d_.catalog.ListClusters();
    if (!cs.ok()) return api::ToGrpc(cs.status());
    std::vector<cluster::Spec> states;
    if (d_.cluster_state != nullptr) {
      auto st = d_.cluster_state->List();
      if (!st.ok()) return api::ToGrpc(st.status());
      states = std::move(*st);
    }
    for (const auto& c : *cs) {
      auto* out = resp->add_clusters();
      api::ToProto(c, out);
      for (const auto& s : states)
        if (s.cluster == c.name) StateToProto(s, out->mutable_state());
    }
    return grpc::Status::OK;
  }

  grpc::Status PlanClusters(grpc::ServerContext* ctx, const v1::PlanClustersRequest* req,
                            v1::PlanClustersResponse* resp) override {
    if (auto who = d_.guard.Require(ctx, auth::Role::kRead); !who.ok()) return api::ToGrpc(who.status());
    auto plans = Plans(req->cluster());
    if (!plans.ok()) return api::ToGrpc(plans.status());
    for (const auto& p : *plans) PlanToProto(p, resp->add_plans());
    return grpc::Status::OK;
  }

  // Admin only. Each cluster's plan is made and carried out at once; a step
  // that fails is reported in the plan's error and retried at the next apply.
  grpc::Status ApplyClusters(grpc::ServerContext* ctx, const v1::PlanClustersRequest* req,
                             v1::PlanClustersResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (d_.deployer == nullptr) return grpc::Status(grpc::UNIMPLEMENTED, "this server keeps no cluster state");
    Deployer::Serial serial = d_.deployer->Serialize();
    if (!serial.status.ok()) return api::ToGrpc(serial.status);
    auto plans = Plans(req->cluster());
    if (!plans.ok()) return api::ToGrpc(plans.status());
    for (const auto& p : *plans) {
      auto* out = resp->add_plans();
      PlanToProto(p, out);
      auto done = d_.deployer->Apply(p, who->Audit(*ctx), serial);
      for (const auto& s : done.steps) out->add_applied(s);
      if (!done.error.ok()) out->set_error(done.error.message());
    }
    return grpc::Status::OK;
  }

  grpc::Status ClusterHistory(grpc::ServerContext* ctx, const v1::ClusterHistoryRequest* req,
                              v1::ClusterHistoryResponse* resp) override {
    if (auto who = d_.guard.Require(ctx, auth::Role::kRead); !who.ok()) return api::ToGrpc(who.status());
    if (Status s = CheckName("cluster", req->cluster()); !s.ok()) return api::ToGrpc(s);
    if (req->limit() < 0 || req->limit() > 1000)
      return api::ToGrpc(InvalidArgument("limit " + std::to_string(req->limit()) + " is out of range: give 1 to 1000"));
    if (d_.deployer == nullptr) return grpc::Status(grpc::UNIMPLEMENTED, "this server keeps no cluster state");
    auto rows = d_.deployer->History(req->cluster(), req->limit() == 0 ? 20 : req->limit());
    if (!rows.ok()) return api::ToGrpc(rows.status());
    for (const auto& r : *rows) {
      auto* d = resp->add_decisions();
      d->set_id(r.id);
      d->set_at_ms(r.at_ms);
      d->set_controller(r.controller);
      d->set_queued_jobs(r.seen.queued_jobs);
      d->set_running_jobs(r.seen.running_jobs);
      d->set_queued_actions(r.seen.queued_actions);
      d->set_oldest_wait_ms(r.seen.oldest_wait_ms);
      d->set_slots(r.seen.slots);
      d->set_serving(r.seen.serving);
      d->set_previous(r.previous);
      d->set_desired(r.desired);
      d->set_action(r.action);
      d->set_reason(r.reason);
      for (const auto& s : r.steps) d->add_steps(s);
      d->set_error(r.error);
    }
    return grpc::Status::OK;
  }

  grpc::Status GetCluster(grpc::ServerContext* ctx, const v1::GetClusterStateRequest* req, v1::Cluster* resp) override {
    if (auto who = d_.guard.Require(ctx, auth::Role::kRead); !who.ok()) return api::ToGrpc(who.status());
    return api::ToGrpc(FillCluster(req->cluster(), resp));
  }

  // Admin only. The merged spec is validated as a whole in the store's
  // transaction: an error changes nothing.
  grpc::Status SetClusterState(grpc::ServerContext* ctx, const v1::SetClusterStateRequest* req,
                               v1::Cluster* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (Status s = CheckName("cluster", req->cluster()); !s.ok()) return api::ToGrpc(s);
    if (d_.cluster_state == nullptr) return grpc::Status(grpc::UNIMPLEMENTED, "this server keeps no cluster state");
    auto spec = d_.cluster_state->Update(
        req->cluster(),
        [&](cluster::Spec& s) {
          ApplyRequest(*req, s);
          return Status::Ok();
        },
        who->Audit(*ctx));
    if (!spec.ok()) return api::ToGrpc(spec.status());
    spdlog::info("cluster state set cluster={} min={} max={} provider={} by={}", spec->cluster, spec->min_workers,
                 spec->max_workers, spec->provider, who->Name());
    return api::ToGrpc(FillCluster(req->cluster(), resp));
  }

  grpc::Status CreateCluster(grpc::ServerContext* ctx, const v1::CreateClusterRequest* req, v1::Cluster* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (Status s = CheckName("cluster", req->name()); !s.ok()) return api::ToGrpc(s);
    auto c = d_.catalog.CreateCluster(req->name(), who->Audit(*ctx));
    if (!c.ok()) return api::ToGrpc(c.status());
    api::ToProto(*c, resp);
    return grpc::Status::OK;
  }

  grpc::Status MapProject(grpc::ServerContext* ctx, const v1::MapProjectRequest* req, v1::Cluster* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (Status s = CheckName("cluster", req->cluster()); !s.ok()) return api::ToGrpc(s);
    if (Status s = CheckName("project", req->project()); !s.ok()) return api::ToGrpc(s);
    auto c = d_.catalog.MapProject(req->cluster(), req->project(), req->unmap(), who->Audit(*ctx));
    if (!c.ok()) return api::ToGrpc(c.status());
    d_.dispatch_wake.Notify();  // a new mapping may make queued jobs claimable
    api::ToProto(*c, resp);
    return grpc::Status::OK;
  }

  grpc::Status ListWorkspaces(grpc::ServerContext* ctx, const v1::ListWorkspacesRequest* req,
                              v1::ListWorkspacesResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kRead, req->project());
    if (!who.ok()) return api::ToGrpc(who.status());
    if (!req->project().empty()) {
      if (Status s = CheckName("project", req->project()); !s.ok()) return api::ToGrpc(s);
    }
    auto rows = d_.workers.ListWorkspaces(req->project());
    if (!rows.ok()) return api::ToGrpc(rows.status());
    for (const auto& r : *rows) {
      if (!who->Covers(r.project)) continue;
      auto* w = resp->add_workspaces();
      w->set_project(r.project);
      w->set_name(r.name);
      w->set_worker_id(r.worker_id);
      w->set_worker_state(r.removed ? "removing" : r.worker_state);
      if (!r.root.empty()) api::DigestToProto(r.root, w->mutable_root());
      w->set_bytes(r.bytes);
      w->set_updated_at_ms(r.updated_ms);
    }
    return grpc::Status::OK;
  }

  grpc::Status RemoveWorkspace(grpc::ServerContext* ctx, const v1::RemoveWorkspaceRequest* req,
                               v1::RemoveWorkspaceResponse* resp) override {
    std::string project = req->project().empty() ? "default" : req->project();
    auto who = d_.guard.Require(ctx, auth::Role::kSubmit, project);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (req->name().empty()) return grpc::Status(grpc::INVALID_ARGUMENT, "give the workspace's name");
    if (Status s = CheckName("project", project); !s.ok()) return api::ToGrpc(s);
    if (Status s = CheckWorkspaceName(req->name()); !s.ok()) return api::ToGrpc(s);
    auto n = d_.workers.RemoveWorkspace(project, req->name(), who->Audit(*ctx));
    if (!n.ok()) return api::ToGrpc(n.status());
    resp->set_workers(*n);
    return grpc::Status::OK;
  }

  // ---- shared cache scopes ----

  grpc::Status ListCacheScopes(grpc::ServerContext* ctx, const v1::Empty*,
                               v1::ListCacheScopesResponse* resp) override {
    if (auto who = d_.guard.Require(ctx, auth::Role::kAdmin); !who.ok()) return api::ToGrpc(who.status());
    auto rows = d_.catalog.ListCacheScopes();
    if (!rows.ok()) return api::ToGrpc(rows.status());
    for (const auto& r : *rows) api::ToProto(r, resp->add_scopes());
    return grpc::Status::OK;
  }

  grpc::Status SetCacheScope(grpc::ServerContext* ctx, const v1::SetCacheScopeRequest* req,
                             v1::CacheScope* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (Status s = CheckName("cache scope", req->name()); !s.ok()) return api::ToGrpc(s);
    if (req->projects().empty())
      return grpc::Status(grpc::INVALID_ARGUMENT, "cache scope " + req->name() +
                                                      ": give the projects that share it (--project P, repeated)");
    auto row = d_.catalog.SetCacheScope(req->name(), {req->projects().begin(), req->projects().end()},
                                        who->Audit(*ctx));
    if (!row.ok()) return api::ToGrpc(row.status());
    spdlog::info("cache scope set scope={} projects={} by={}", row->name, Join(row->projects), who->Name());
    d_.config_wake.Notify();  // the scope its members' jobs use
    api::ToProto(*row, resp);
    return grpc::Status::OK;
  }

  grpc::Status RemoveCacheScope(grpc::ServerContext* ctx, const v1::RemoveCacheScopeRequest* req,
                                v1::CacheScope* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (Status s = CheckName("cache scope", req->name()); !s.ok()) return api::ToGrpc(s);
    auto row = d_.catalog.RemoveCacheScope(req->name(), who->Audit(*ctx));
    if (!row.ok()) return api::ToGrpc(row.status());
    spdlog::info("cache scope removed scope={} projects={} by={}", row->name, Join(row->projects), who->Name());
    d_.config_wake.Notify();
    api::ToProto(*row, resp);
    return grpc::Status::OK;
  }

  // ---- trust ----

  grpc::Status CreateToken(grpc::ServerContext* ctx, const v1::CreateTokenRequest* req,
                           v1::CreateTokenResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    auto role = auth::ParseRole(req->role());
    if (!role.ok()) return api::ToGrpc(role.status());
    if (req->ttl_s() < 0 || req->ttl_s() > int64_t{10} * 365 * 86400)
      return grpc::Status(grpc::INVALID_ARGUMENT, "ttl_s must be between 0 (never expires) and ten years");
    auth::NewApiToken t;
    t.role = *role;
    t.projects.assign(req->projects().begin(), req->projects().end());
    t.description = req->description();
    t.created_by = who->Name();
    t.ttl_ms = req->ttl_s() * 1000;
    auto text = d_.trust.CreateToken(t, who->Audit(*ctx));
    if (!text.ok()) return api::ToGrpc(text.status());
    auto parsed = auth::ParseToken(auth::TokenKind::kApi, *text);
    auto row = d_.trust.FindToken(parsed->id);
    if (!row.ok() || !*row) return grpc::Status(grpc::INTERNAL, "the new token vanished");
    spdlog::info("token created token_id={} role={} by={}", parsed->id, req->role(), who->Name());
    ToProto(**row, resp->mutable_token());
    resp->set_secret(*text);
    return grpc::Status::OK;
  }

  grpc::Status ListTokens(grpc::ServerContext* ctx, const v1::Empty*, v1::ListTokensResponse* resp) override {
    if (auto who = d_.guard.Require(ctx, auth::Role::kAdmin); !who.ok()) return api::ToGrpc(who.status());
    auto rows = d_.trust.ListTokens();
    if (!rows.ok()) return api::ToGrpc(rows.status());
    for (const auto& r : *rows) ToProto(r, resp->add_tokens());
    return grpc::Status::OK;
  }

  grpc::Status RevokeToken(grpc::ServerContext* ctx, const v1::RevokeTokenRequest* req, v1::ApiToken* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (Status s = d_.trust.RevokeToken(req->id(), who->Audit(*ctx)); !s.ok()) return api::ToGrpc(s);
    d_.guard.Forget("token " + req->id());
    spdlog::info("token revoked token_id={} by={}", req->id(), who->Name());
    auto row = d_.trust.FindToken(req->id());
    if (row.ok() && *row) ToProto(**row, resp);
    return grpc::Status::OK;
  }

  grpc::Status CreateJoinToken(grpc::ServerContext* ctx, const v1::CreateJoinTokenRequest* req,
                               v1::CreateJoinTokenResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (req->ttl_s() < 0 || req->ttl_s() > 30 * 86400)
      return grpc::Status(grpc::INVALID_ARGUMENT, "ttl_s must be between 0 (one hour) and 30 days");
    int64_t ttl_ms = (req->ttl_s() > 0 ? req->ttl_s() : 3600) * 1000;
    auto text = d_.trust.CreateJoinToken(who->Name(), ttl_ms, who->Audit(*ctx));
    if (!text.ok()) return api::ToGrpc(text.status());
    spdlog::info("join token created by={}", who->Name());
    resp->set_token(*text);
    resp->set_expires_at_ms(NowUnixMs() + ttl_ms);
    return grpc::Status::OK;
  }

  grpc::Status RevokeWorker(grpc::ServerContext* ctx, const v1::RevokeWorkerRequest* req,
                            v1::RevokeWorkerResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    auto n = d_.trust.RevokeWorker(req->worker_id(), who->Audit(*ctx));
    if (!n.ok()) return api::ToGrpc(n.status());
    // Every controller (this one too) hears NOTIFY kiln_revoke and closes
    // the worker's stream; its jobs go back in line.
    d_.guard.Forget("worker " + req->worker_id());
    spdlog::info("worker revoked worker_id={} certificates={} by={}", req->worker_id(), *n, who->Name());
    resp->set_certificates(*n);
    resp->set_disconnected(d_.disconnect(req->worker_id()));
    return grpc::Status::OK;
  }

  grpc::Status WhoAmI(grpc::ServerContext* ctx, const v1::Empty*, v1::ApiToken* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kRead);
    if (!who.ok()) return api::ToGrpc(who.status());
    auto row = d_.trust.FindToken(who->token_id);
    if (!row.ok()) return api::ToGrpc(row.status());
    if (*row) ToProto(**row, resp);
    return grpc::Status::OK;
  }

  // ---- the farm's history ----

  // An admin asks for every project; a read (or stronger) token for one of
  // its projects, and must name it.
  grpc::Status GetStats(grpc::ServerContext* ctx, const v1::GetStatsRequest* req, v1::Stats* resp) override {
    constexpr int64_t kMaxWindowS = 400LL * 86400;
    if (Status s = RequireProjectOrAdmin(ctx, req->project(), "every project's figures",
                                         "ask for one project's with kiln stats --project");
        !s.ok())
      return api::ToGrpc(s);
    if (req->window_s() < 0 || req->window_s() > kMaxWindowS)
      return grpc::Status(grpc::INVALID_ARGUMENT, "window_s must be 0 (one day) to " + std::to_string(kMaxWindowS) +
                                                      " (400 days)");
    queue::StatsQuery q;
    q.project = req->project();
    if (req->window_s() > 0) q.window = std::chrono::seconds(req->window_s());
    auto r = d_.stats.Read(q);
    if (!r.ok()) return api::ToGrpc(r.status());
    StatsToProto(*r, resp);
    resp->set_project(req->project());
    return grpc::Status::OK;
  }

  // ---- audit trail ----

  // An admin lists every row; a read (or stronger) token one of its
  // projects' rows, and must name it.
  grpc::Status ListAudit(grpc::ServerContext* ctx, const v1::ListAuditRequest* req,
                         v1::ListAuditResponse* resp) override {
    if (Status s = RequireProjectOrAdmin(ctx, req->project(), "the whole audit trail",
                                         "list one project's rows with kiln audit --project");
        !s.ok())
      return api::ToGrpc(s);
    if (req->limit() < 0 || req->limit() > audit::AuditStore::kMaxLimit)
      return grpc::Status(grpc::INVALID_ARGUMENT, "limit must be 0 (100) to " +
                                                      std::to_string(audit::AuditStore::kMaxLimit));
    if (req->since_ms() < 0 || req->before_id() < 0)
      return grpc::Status(grpc::INVALID_ARGUMENT, "since_ms and before_id must not be negative");
    audit::Filter f;
    f.project = req->project();
    f.since_ms = req->since_ms();
    if (req->limit() > 0) f.limit = req->limit();  // else the Filter's default
    f.before_id = req->before_id();
    auto rows = d_.audit.List(f);
    if (!rows.ok()) return api::ToGrpc(rows.status());
    for (const auto& r : *rows) {
      auto* e = resp->add_entries();
      e->set_id(r.id);
      e->set_at_ms(r.at_ms);
      e->set_actor(r.actor);
      e->set_address(r.address);
      e->set_action(r.action);
      e->set_project(r.project);
      e->set_target(r.target);
      e->set_change_json(r.change);
    }
    return grpc::Status::OK;
  }

 private:
  Result<std::vector<cluster::Plan>> Plans(const std::string& cluster) {
    if (d_.deployer == nullptr) return Status(Code::kUnimplemented, "this server deploys no workers");
    if (cluster.empty()) return d_.deployer->PlanAll();
    KILN_RETURN_IF_ERROR(CheckName("cluster", cluster));
    auto p = d_.deployer->MakePlan(cluster);
    if (!p.ok()) return p.status();
    return std::vector<cluster::Plan>{std::move(*p)};
  }

  // The cluster's row and its desired state, if managed. NotFound if there
  // is no such cluster.
  Status FillCluster(const std::string& name, v1::Cluster* out) {
    KILN_RETURN_IF_ERROR(CheckName("cluster", name));
    auto cs = d_.catalog.ListClusters();
    if (!cs.ok()) return cs.status();
    auto it = std::find_if(cs->begin(), cs->end(), [&](const queue::ClusterRow& c) { return c.name == name; });
    if (it == cs->end()) return NotFound("cluster \"" + name + "\" does not exist (see kiln clusters list)");
    api::ToProto(*it, out);
    if (d_.cluster_state == nullptr) return Status::Ok();
    auto st = d_.cluster_state->Get(name);
    if (!st.ok()) return st.status();
    if (*st) StateToProto(**st, out->mutable_state());
    return Status::Ok();
  }

  // A read (or stronger) token of `project` (a valid name), or with no
  // project an admin token. PermissionDenied otherwise, naming `every` (what
  // every project's answer is) and `hint` (how to ask for one project's):
  // "the whole audit trail: this call needs an admin token; token 1a2b.. is
  // a read token for project a (list one project's rows with kiln audit
  // --project a)".
  Status RequireProjectOrAdmin(grpc::ServerContext* ctx, const std::string& project, const std::string& every,
                               const std::string& hint) {
    auto who = d_.guard.Require(ctx, auth::Role::kRead, project);
    if (!who.ok()) return who.status();
    if (!project.empty()) return CheckName("project", project);
    if (Status s = who->May(auth::Role::kAdmin, ""); !s.ok())
      return PermissionDenied(every + ": " + s.message() + " (" + hint + " " +
                              (who->projects.empty() ? std::string("P") : who->projects[0]) + ")");
    return Status::Ok();
  }

  static void ToProto(const auth::TokenRow& r, v1::ApiToken* out) {
    out->set_id(r.id);
    out->set_role(auth::RoleName(r.role));
    for (const auto& p : r.projects) out->add_projects(p);
    out->set_description(r.description);
    out->set_created_by(r.created_by);
    out->set_created_at_ms(r.created_at_ms);
    out->set_expires_at_ms(r.expires_at_ms);
    out->set_revoked_at_ms(r.revoked_at_ms);
    out->set_last_used_at_ms(r.last_used_at_ms);
  }

  static std::string Join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
    return out;
  }

  // Validates and re-serializes, so the stored document is canonical. A
  // cache_scope must name a scope an admin created that lists the project
  // (which, for a project not created yet (`exists` false), none can).
  Result<std::string> Normalize(const std::string& project, const std::string& text, bool exists) {
    KILN_RETURN_IF_ERROR(config::CheckProjectConfigSize(text));
    auto parsed = config::ParseProjectConfig(text);
    if (!parsed.ok()) return parsed.status();
    if (!parsed->cache_scope.empty()) KILN_RETURN_IF_ERROR(CheckScope(project, parsed->cache_scope, exists));
    return nlohmann::json::parse(text).dump();
  }

  Status CheckScope(const std::string& project, const std::string& scope, bool exists) {
    auto row = d_.catalog.GetCacheScope(scope);
    if (!row.ok() && row.status().code() == Code::kInvalidArgument)
      return InvalidArgument("cache scope " + scope + " cannot exist: " + row.status().message());
    if (!row.ok() && row.status().code() != Code::kNotFound) return row.status();
    const bool listed =
        row.ok() && std::find(row->projects.begin(), row->projects.end(), project) != row->projects.end();
    if (listed) return Status::Ok();
    // The command that would make it so: the scope's members and this project.
    std::string set = "kiln cache scopes set " + scope;
    for (const auto& p : row.ok() ? row->projects : std::vector<std::string>{}) set += " --project " + p;
    set += " --project " + project + (row.ok() ? "" : " --project OTHER");
    const std::string what = row.ok() ? "cache scope " + scope + " does not list project " + project +
                                            ": only the projects it lists share its entries"
                                      : "cache scope " + scope + " does not exist";
    const std::string sep = row.ok() ? "; " : ": ";
    if (exists) {
      return InvalidArgument(what + sep + "an admin " + (row.ok() ? "adds it" : "creates it") + " with " + set);
    }
    return InvalidArgument(what + sep + "create the project without cache_scope, have an admin list it with " + set +
                           ", then set its configuration");
  }

  AdminServiceDeps d_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeAdminService(const AdminServiceDeps& deps) {
  return std::make_unique<AdminServiceImpl>(deps);
}

}  // namespace kiln::controller
