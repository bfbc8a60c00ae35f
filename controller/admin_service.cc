// AdminService: projects, clusters, workers and warm workspaces. Handlers
// never throw; every failure is a grpc::Status with a message saying what to do.

#include "controller/admin_service.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "api/convert.h"
#include "common/text.h"
#include "config/project_config.h"
#include "controller/workspace_name.h"
#include "controller/signal.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "queue/catalog_store.h"
#include "queue/worker_store.h"

namespace kiln::controller {
namespace {

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  explicit AdminServiceImpl(const AdminServiceDeps& d) : d_(d) {}

  grpc::Status ListWorkers(grpc::ServerContext*, const v1::ListWorkersRequest* req,
                           v1::ListWorkersResponse* resp) override {
    auto ws = d_.workers.List(req->include_gone());
    if (!ws.ok()) return api::ToGrpc(ws.status());
    for (const auto& w : *ws) api::ToProto(w, resp->add_workers());
    return grpc::Status::OK;
  }

  grpc::Status ListProjects(grpc::ServerContext*, const v1::Empty*, v1::ListProjectsResponse* resp) override {
    auto ps = d_.catalog.ListProjects();
    if (!ps.ok()) return api::ToGrpc(ps.status());
    for (const auto& p : *ps) api::ToProto(p, resp->add_projects());
    return grpc::Status::OK;
  }

  grpc::Status CreateProject(grpc::ServerContext*, const v1::CreateProjectRequest* req, v1::Project* resp) override {
    if (Status s = CheckName("project", req->name()); !s.ok()) return api::ToGrpc(s);
    auto cfg = Normalize(req->config_json().empty() ? "{}" : req->config_json());
    if (!cfg.ok()) return api::ToGrpc(cfg.status());
    auto p = d_.catalog.CreateProject(req->name(), *cfg);
    if (!p.ok()) return api::ToGrpc(p.status());
    spdlog::info("project created: {}", req->name());
    api::ToProto(*p, resp);
    return grpc::Status::OK;
  }

  grpc::Status GetProject(grpc::ServerContext*, const v1::GetProjectRequest* req, v1::Project* resp) override {
    if (Status s = CheckName("project", req->name()); !s.ok()) return api::ToGrpc(s);
    auto p = d_.catalog.GetProject(req->name());
    if (!p.ok()) return api::ToGrpc(p.status());
    api::ToProto(*p, resp);
    return grpc::Status::OK;
  }

  grpc::Status SetProjectConfig(grpc::ServerContext*, const v1::SetProjectConfigRequest* req,
                                v1::Project* resp) override {
    if (Status s = CheckName("project", req->name()); !s.ok()) return api::ToGrpc(s);
    auto cfg = Normalize(req->config_json());
    if (!cfg.ok()) return api::ToGrpc(cfg.status());
    auto p = d_.catalog.SetProjectConfig(req->name(), *cfg);
    if (!p.ok()) return api::ToGrpc(p.status());
    spdlog::info("project configuration changed: {}", req->name());
    d_.config_wake.Notify();
    api::ToProto(*p, resp);
    return grpc::Status::OK;
  }

  grpc::Status ListClusters(grpc::ServerContext*, const v1::Empty*, v1::ListClustersResponse* resp) override {
    auto cs = d_.catalog.ListClusters();
    if (!cs.ok()) return api::ToGrpc(cs.status());
    for (const auto& c : *cs) api::ToProto(c, resp->add_clusters());
    return grpc::Status::OK;
  }

  grpc::Status CreateCluster(grpc::ServerContext*, const v1::CreateClusterRequest* req, v1::Cluster* resp) override {
    if (Status s = CheckName("cluster", req->name()); !s.ok()) return api::ToGrpc(s);
    auto c = d_.catalog.CreateCluster(req->name());
    if (!c.ok()) return api::ToGrpc(c.status());
    api::ToProto(*c, resp);
    return grpc::Status::OK;
  }

  grpc::Status MapProject(grpc::ServerContext*, const v1::MapProjectRequest* req, v1::Cluster* resp) override {
    if (Status s = CheckName("cluster", req->cluster()); !s.ok()) return api::ToGrpc(s);
    if (Status s = CheckName("project", req->project()); !s.ok()) return api::ToGrpc(s);
    auto c = d_.catalog.MapProject(req->cluster(), req->project(), req->unmap());
    if (!c.ok()) return api::ToGrpc(c.status());
    d_.dispatch_wake.Notify();  // a new mapping may make queued jobs claimable
    api::ToProto(*c, resp);
    return grpc::Status::OK;
  }

  grpc::Status ListWorkspaces(grpc::ServerContext*, const v1::ListWorkspacesRequest* req,
                              v1::ListWorkspacesResponse* resp) override {
    if (!req->project().empty()) {
      if (Status s = CheckName("project", req->project()); !s.ok()) return api::ToGrpc(s);
    }
    auto rows = d_.workers.ListWorkspaces(req->project());
    if (!rows.ok()) return api::ToGrpc(rows.status());
    for (const auto& r : *rows) {
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

  grpc::Status RemoveWorkspace(grpc::ServerContext*, const v1::RemoveWorkspaceRequest* req,
                               v1::RemoveWorkspaceResponse* resp) override {
    std::string project = req->project().empty() ? "default" : req->project();
    if (req->name().empty()) return grpc::Status(grpc::INVALID_ARGUMENT, "give the workspace's name");
    if (Status s = CheckName("project", project); !s.ok()) return api::ToGrpc(s);
    if (Status s = CheckWorkspaceName(req->name()); !s.ok()) return api::ToGrpc(s);
    auto n = d_.workers.RemoveWorkspace(project, req->name());
    if (!n.ok()) return api::ToGrpc(n.status());
    resp->set_workers(*n);
    return grpc::Status::OK;
  }

 private:
  // Validates and re-serializes, so the stored document is canonical.
  static Result<std::string> Normalize(const std::string& text) {
    KILN_RETURN_IF_ERROR(config::CheckProjectConfigSize(text));
    auto parsed = config::ParseProjectConfig(text);
    if (!parsed.ok()) return parsed.status();
    return nlohmann::json::parse(text).dump();
  }

  AdminServiceDeps d_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeAdminService(const AdminServiceDeps& deps) {
  return std::make_unique<AdminServiceImpl>(deps);
}

}  // namespace kiln::controller
