// The compile cache on the controller (see compile_service.h). Handlers
// never throw.

#include <spdlog/spdlog.h>

#include "api/compile_convert.h"
#include "api/convert.h"
#include "cc/deps.h"
#include "cache/compile_store.h"
#include "cas/store.h"
#include "controller/compile_service.h"
#include "controller/guard.h"
#include "controller/project_cache.h"
#include "controller/request_checks.h"
#include "controller/submit_policy.h"

namespace kiln::controller {
namespace {

void ToProto(const cache::CompileCounts& n, v1::CompileStats* out) {
  out->set_units(static_cast<int32_t>(n.units));
  out->set_hits(static_cast<int32_t>(n.hits));
  out->set_hits_preprocessed(static_cast<int32_t>(n.hits_preprocessed));
  out->set_misses(static_cast<int32_t>(n.misses));
  out->set_fallbacks(static_cast<int32_t>(n.fallbacks));
  out->set_failed(static_cast<int32_t>(n.failed));
  out->set_saved_ms(n.saved_ms);
  out->set_compile_ms(n.compile_ms);
  out->set_bytes_served(n.bytes_served);
  out->set_bytes_stored(n.bytes_stored);
  out->set_remote(static_cast<int32_t>(n.remote));
  out->set_remote_ms(n.remote_ms);
}

class CacheServiceImpl final : public v1::CacheService::Service {
 public:
  explicit CacheServiceImpl(const CacheServiceDeps& d) : d_(d) {}

  grpc::Status CompileStats(grpc::ServerContext* ctx, const v1::CompileStatsRequest* req,
                            v1::CompileStatsResponse* resp) override {
    std::string project = req->project().empty() ? "default" : req->project();
    if (auto who = d_.guard.Require(ctx, auth::Role::kRead, project); !who.ok()) return api::ToGrpc(who.status());
    auto pc = d_.projects.Get(project);
    if (!pc.ok()) return api::ToGrpc(pc.status());
    const std::string scope = CacheScope(project, *pc);
    auto st = d_.compiles.Stats(project, scope, std::max<int64_t>(0, req->since_ms()));
    if (!st.ok()) return api::ToGrpc(st.status());
    resp->set_project(project);
    resp->set_scope(scope);
    resp->set_jobs(static_cast<int32_t>(st->jobs));
    ToProto(st->counts, resp->mutable_stats());
    for (const auto& r : st->reasons) {
      auto* rc = resp->add_reasons();
      rc->set_outcome(r.outcome);
      rc->set_reason(r.reason);
      rc->set_count(r.count);
    }
    resp->set_results(st->results);
    resp->set_manifests(st->manifests);
    resp->set_object_bytes(st->object_bytes);
    return grpc::Status::OK;
  }

  grpc::Status CompileImpact(grpc::ServerContext* ctx, const v1::CompileImpactRequest* req,
                             v1::CompileImpactResponse* resp) override {
    std::string project = req->project().empty() ? "default" : req->project();
    if (auto who = d_.guard.Require(ctx, auth::Role::kRead, project); !who.ok()) return api::ToGrpc(who.status());
    if (req->path().empty()) return grpc::Status(grpc::INVALID_ARGUMENT, "give the header's path");
    if (Status s = CheckCompileText(req->path(), kMaxCompilePath, "path"); !s.ok()) return api::ToGrpc(s);
    if (req->limit() < 0 || req->limit() > 100000) return grpc::Status(grpc::INVALID_ARGUMENT, "limit must be 0..100000");
    auto pc = d_.projects.Get(project);
    if (!pc.ok()) return api::ToGrpc(pc.status());
    // Paths are recorded as the sandbox sees them: the tree is at /src.
    const std::string path = cc::AbsolutePath(req->path(), "/src");
    const int limit = req->limit() > 0 ? req->limit() : 1000;
    auto units = d_.compiles.Impact(CacheScope(project, *pc), path, limit + 1);
    if (!units.ok()) return api::ToGrpc(units.status());
    resp->set_path(path);
    for (const auto& u : *units) {
      if (resp->units_size() == limit) {
        resp->set_truncated(true);
        break;
      }
      auto* out = resp->add_units();
      out->set_source(u.source);
      out->set_output(u.output);
      out->set_manifests(u.manifests);
      out->set_last_used_ms(u.last_used_ms);
    }
    return grpc::Status::OK;
  }

 private:
  CacheServiceDeps d_;
};

}  // namespace

grpc::Status LookupCompile(cache::CompileCacheStore& store, const std::string& worker_id,
                           const v1::LookupCompileRequest* req, v1::LookupCompileResponse* resp) {
  Status s = CheckJobRef(req->job_id(), req->attempt());
  if (s.ok()) s = CheckCompileKey(req->key(), "key");
  if (s.ok()) s = CheckCompileText(req->source(), kMaxCompilePath, "source");
  if (s.ok()) s = CheckCompileText(req->output(), kMaxCompilePath, "output");
  if (!s.ok()) return api::ToGrpc(s);
  auto found = store.Lookup({worker_id, req->job_id(), req->attempt()}, req->key(), req->source(), req->output());
  if (!found.ok()) return api::ToGrpc(found.status());
  for (auto& m : found->manifests) api::ToProto(std::move(m), resp->add_manifests());
  for (auto& p : found->previous) api::ToProto(std::move(p), resp->add_previous());
  resp->set_scope(found->scope);
  return grpc::Status::OK;
}

grpc::Status LookupCompileResult(cache::CompileCacheStore& store, const std::string& worker_id,
                                 const v1::LookupCompileResultRequest* req, v1::LookupCompileResultResponse* resp) {
  Status s = CheckJobRef(req->job_id(), req->attempt());
  if (s.ok()) s = CheckCompileKey(req->key(), "key");
  if (!s.ok()) return api::ToGrpc(s);
  auto found = store.LookupResult({worker_id, req->job_id(), req->attempt()}, req->key());
  if (!found.ok()) return api::ToGrpc(found.status());
  if (*found) {
    resp->set_found(true);
    api::ToProto(std::move(**found), resp->mutable_result());
  }
  return grpc::Status::OK;
}

grpc::Status StoreCompile(cache::CompileCacheStore& store, cas::BlobStore& blobs, const std::string& worker_id,
                          const v1::StoreCompileRequest* req, v1::StoreCompileResponse* resp) {
  cc::CompileEntry e = api::FromProto(*req);
  Status s = CheckJobRef(req->job_id(), req->attempt());
  if (s.ok()) s = CheckStoreCompile(e);
  // The worker uploads the object first; an entry never names a blob CAS lacks.
  if (s.ok() && !e.manifest_only && !blobs.Has(e.result.object))
    s = FailedPrecondition("object " + e.result.object.ToString() + " is not in CAS: upload it first");
  if (!s.ok()) return api::ToGrpc(s);
  e.result.compile_ms = std::max<int64_t>(0, e.result.compile_ms);
  auto fresh = store.Store({worker_id, req->job_id(), req->attempt()}, e);
  if (!fresh.ok()) return api::ToGrpc(fresh.status());
  resp->set_stored_result(*fresh);
  resp->set_stored_manifest(true);
  return grpc::Status::OK;
}

grpc::Status RecordCompiles(cache::CompileCacheStore& store, const std::string& worker_id,
                            const v1::RecordCompilesRequest* req, const CompileMetrics& m) {
  if (Status s = CheckJobRef(req->job_id(), req->attempt()); !s.ok()) return api::ToGrpc(s);
  cache::JobCompileStats rec;
  rec.job_id = req->job_id();
  rec.attempt = req->attempt();
  const auto& n = req->stats();
  rec.counts = {n.units(),      n.hits(),       n.hits_preprocessed(), n.misses(),       n.fallbacks(),
                n.failed(),     n.saved_ms(),   n.compile_ms(),        n.bytes_served(), n.bytes_stored(),
                std::max(0, n.remote()), std::max<int64_t>(0, n.remote_ms())};
  for (const auto& e : req->events()) {
    if (rec.events.size() == cache::CompileCacheStore::kMaxEventsPerJob) break;
    for (const std::string* t : {&e.source(), &e.output(), &e.outcome(), &e.reason(), &e.detail(), &e.remote_worker()})
      if (Status s = CheckCompileText(*t, kMaxCompilePath * 4, "a compile event"); !s.ok()) return api::ToGrpc(s);
    rec.events.push_back({e.source(), e.output(), e.outcome(), e.reason(), e.detail(), e.remote_worker(),
                          std::max<int64_t>(0, e.remote_ms()), std::max<int64_t>(0, e.remote_run_ms())});
  }
  for (const auto& k : req->hit_keys()) {
    if (Status s = CheckCompileKey(k, "hit key"); !s.ok()) return api::ToGrpc(s);
    rec.hit_keys.push_back(k);
  }
  rec.hit_manifests.assign(req->hit_manifests().begin(), req->hit_manifests().end());
  if (Status s = store.Record(worker_id, rec); !s.ok()) return api::ToGrpc(s);
  for (const auto& [outcome, count] : api::UnitsByOutcome(n))
    if (count > 0) m.units.With({{"outcome", outcome}}).Inc(static_cast<double>(count));
  if (n.bytes_served() > 0) m.bytes_served.Inc(static_cast<double>(n.bytes_served()));
  return grpc::Status::OK;
}

Status ExplainCompiles(cache::CompileCacheStore& store, int64_t job_id, size_t max_events, v1::Explanation* resp) {
  auto jc = store.ForJob(job_id, max_events);
  if (!jc.ok()) return jc.status();
  if (!jc->recorded) return Status::Ok();
  ToProto(jc->counts, resp->mutable_compile());
  for (const auto& e : jc->events) {
    auto* out = resp->add_compile_events();
    out->set_source(e.source);
    out->set_output(e.output);
    out->set_outcome(e.outcome);
    out->set_reason(e.reason);
    out->set_detail(e.detail);
    out->set_remote_worker(e.remote_worker);
  }
  resp->set_compile_events_truncated(jc->truncated);
  return Status::Ok();
}

std::unique_ptr<grpc::Service> MakeCacheService(const CacheServiceDeps& deps) {
  return std::make_unique<CacheServiceImpl>(deps);
}

}  // namespace kiln::controller
