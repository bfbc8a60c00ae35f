#include "cli/client.h"

#include "api/channel.h"

#include "cas/client.h"

#include "api/convert.h"

#include <grpcpp/grpcpp.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>

#include "cli/client_stubs.h"

namespace kiln::cli {

struct Client::Impl {
  ClientOptions options;
  std::unique_ptr<v1::JobService::StubInterface> jobs;
  std::unique_ptr<v1::AdminService::StubInterface> admin;
  std::unique_ptr<cas::CasClient> cas;
  std::unique_ptr<v1::ImageService::Stub> images;
  std::unique_ptr<v1::CacheService::Stub> cache;
};

namespace {

using api::FromGrpc;

// One unary call with the configured deadline.
template <typename Resp, typename Fn>
Result<Resp> Call(const ClientOptions& o, Fn&& fn) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + o.timeout);
  Resp resp;
  grpc::Status s = fn(&ctx, &resp);
  if (!s.ok()) return FromGrpc(s);
  return resp;
}

Status NoStub(const char* service) {
  return {Code::kUnimplemented, std::string("this client has no ") + service + " stub"};
}

}  // namespace

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

std::unique_ptr<Client> MakeClient(const ClientOptions& options,
                                   std::unique_ptr<v1::JobService::StubInterface> jobs,
                                   std::unique_ptr<v1::AdminService::StubInterface> admin) {
  auto impl = std::make_unique<Client::Impl>();
  impl->options = options;
  impl->jobs = std::move(jobs);
  impl->admin = std::move(admin);
  return std::make_unique<Client>(std::move(impl));
}

std::unique_ptr<Client> Client::Connect(const ClientOptions& options) {
  grpc::ChannelArguments args;
  // A directory node of a very large directory may pass gRPC's default 4 MiB.
  args.SetMaxReceiveMessageSize(32 << 20);
  // Reconnect quickly after a controller restart (Submit retries, follow resumes).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 4000);
  // Notice a dead controller host during a long, quiet follow. Five minutes is
  // the server's default minimum ping interval, so no "too many pings".
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 300'000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  api::ChannelOptions co;
  co.address = options.address;
  co.insecure = options.insecure;
  co.ca_pem = options.ca_pem;
  co.server_name = options.server_name;
  co.token = options.token;
  auto channel = api::MakeChannel(co, args);
  auto c = MakeClient(options, v1::JobService::NewStub(channel), v1::AdminService::NewStub(channel));
  c->impl_->cas = std::make_unique<cas::CasClient>(channel);
  c->impl_->images = v1::ImageService::NewStub(channel);
  c->impl_->cache = v1::CacheService::NewStub(channel);
  return c;
}

cas::CasClient* Client::Cas() { return impl_->cas.get(); }

const ClientOptions& Client::options() const { return impl_->options; }

Result<v1::SubmitResponse> Client::Submit(const v1::SubmitRequest& req) {
  if (!impl_->jobs) return NoStub("JobService");
  constexpr int kRetries = 3;
  auto backoff = impl_->options.retry_backoff;
  std::optional<Status> first_failure;  // usually the clearest ("connection refused")
  for (int attempt = 0;; ++attempt) {
    auto r = Call<v1::SubmitResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::SubmitResponse* resp) {
      return impl_->jobs->Submit(ctx, req, resp);
    });
    if (r.ok() || r.status().code() != Code::kUnavailable) return r;
    if (!first_failure) first_failure = r.status();
    if (attempt == kRetries) {
      return Status(Code::kUnavailable, first_failure->message() + " (tried " + std::to_string(kRetries + 1) + " times)");
    }
    std::this_thread::sleep_for(backoff);
    backoff *= 2;
  }
}

Result<v1::Job> Client::GetJob(int64_t job_id) {
  if (!impl_->jobs) return NoStub("JobService");
  v1::GetJobRequest req;
  req.set_job_id(job_id);
  return Call<v1::Job>(impl_->options, [&](grpc::ClientContext* ctx, v1::Job* resp) {
    return impl_->jobs->GetJob(ctx, req, resp);
  });
}

Result<v1::Explanation> Client::ExplainJob(int64_t job_id, int max_paths) {
  if (!impl_->jobs) return NoStub("JobService");
  v1::ExplainJobRequest req;
  req.set_job_id(job_id);
  req.set_max_paths(max_paths);
  return Call<v1::Explanation>(impl_->options, [&](grpc::ClientContext* ctx, v1::Explanation* resp) {
    return impl_->jobs->ExplainJob(ctx, req, resp);
  });
}

Result<v1::CompileStatsResponse> Client::CompileStats(const v1::CompileStatsRequest& req) {
  if (!impl_->cache) return NoStub("CacheService");
  return Call<v1::CompileStatsResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::CompileStatsResponse* resp) {
    return impl_->cache->CompileStats(ctx, req, resp);
  });
}

Result<v1::CompileImpactResponse> Client::CompileImpact(const v1::CompileImpactRequest& req) {
  if (!impl_->cache) return NoStub("CacheService");
  return Call<v1::CompileImpactResponse>(impl_->options,
                                         [&](grpc::ClientContext* ctx, v1::CompileImpactResponse* resp) {
                                           return impl_->cache->CompileImpact(ctx, req, resp);
                                         });
}

Result<v1::Job> Client::CancelJob(int64_t job_id, const std::string& reason) {
  if (!impl_->jobs) return NoStub("JobService");
  v1::CancelJobRequest req;
  req.set_job_id(job_id);
  req.set_reason(reason);
  return Call<v1::Job>(impl_->options, [&](grpc::ClientContext* ctx, v1::Job* resp) {
    return impl_->jobs->CancelJob(ctx, req, resp);
  });
}

Result<v1::ListJobsResponse> Client::ListJobs(const v1::ListJobsRequest& req) {
  if (!impl_->jobs) return NoStub("JobService");
  return Call<v1::ListJobsResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::ListJobsResponse* resp) {
    return impl_->jobs->ListJobs(ctx, req, resp);
  });
}

Status Client::WatchJob(const v1::WatchJobRequest& req,
                        const std::function<std::chrono::milliseconds(const v1::JobEvent&)>& on_event) {
  using Clock = std::chrono::steady_clock;
  if (!impl_->jobs) return NoStub("JobService");
  grpc::ClientContext ctx;
  if (!req.follow()) ctx.set_deadline(std::chrono::system_clock::now() + impl_->options.timeout);

  // Silence watchdog: cancels the call once the limit on_event set has passed.
  std::mutex mu;
  std::condition_variable cv;
  bool done = false, silent = false;
  std::optional<Clock::time_point> give_up_at;
  std::thread watchdog([&] {
    std::unique_lock lock(mu);
    while (!done) {
      if (!give_up_at) {
        cv.wait(lock);
      } else if (cv.wait_until(lock, *give_up_at) == std::cv_status::timeout && give_up_at &&
                 Clock::now() >= *give_up_at) {
        silent = true;
        ctx.TryCancel();
        return;
      }
    }
  });

  auto reader = impl_->jobs->WatchJob(&ctx, req);
  v1::JobEvent ev;
  while (reader->Read(&ev)) {
    std::chrono::milliseconds limit = on_event(ev);
    std::lock_guard lock(mu);
    give_up_at = limit.count() > 0 ? std::optional(Clock::now() + limit) : std::nullopt;
    cv.notify_one();
  }
  grpc::Status status = reader->Finish();
  {
    std::lock_guard lock(mu);
    done = true;
    cv.notify_one();
  }
  watchdog.join();
  if (silent) return Status(Code::kDeadlineExceeded, "the log stream went silent");
  return FromGrpc(status);
}

Result<v1::ListWorkersResponse> Client::ListWorkers(bool include_gone) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::ListWorkersRequest req;
  req.set_include_gone(include_gone);
  return Call<v1::ListWorkersResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::ListWorkersResponse* resp) {
    return impl_->admin->ListWorkers(ctx, req, resp);
  });
}

Result<v1::CreateTokenResponse> Client::CreateToken(const v1::CreateTokenRequest& req) {
  if (!impl_->admin) return NoStub("AdminService");
  return Call<v1::CreateTokenResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::CreateTokenResponse* resp) {
    return impl_->admin->CreateToken(ctx, req, resp);
  });
}

Result<v1::CacheScope> Client::SetCacheScope(const std::string& name, const std::vector<std::string>& projects) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::SetCacheScopeRequest req;
  req.set_name(name);
  for (const auto& p : projects) req.add_projects(p);
  return Call<v1::CacheScope>(impl_->options, [&](grpc::ClientContext* ctx, v1::CacheScope* resp) {
    return impl_->admin->SetCacheScope(ctx, req, resp);
  });
}

Result<v1::ListCacheScopesResponse> Client::ListCacheScopes() {
  if (!impl_->admin) return NoStub("AdminService");
  v1::Empty req;
  return Call<v1::ListCacheScopesResponse>(impl_->options,
                                           [&](grpc::ClientContext* ctx, v1::ListCacheScopesResponse* resp) {
                                             return impl_->admin->ListCacheScopes(ctx, req, resp);
                                           });
}

Result<v1::CacheScope> Client::RemoveCacheScope(const std::string& name) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::RemoveCacheScopeRequest req;
  req.set_name(name);
  return Call<v1::CacheScope>(impl_->options, [&](grpc::ClientContext* ctx, v1::CacheScope* resp) {
    return impl_->admin->RemoveCacheScope(ctx, req, resp);
  });
}

Result<v1::ListTokensResponse> Client::ListTokens() {
  if (!impl_->admin) return NoStub("AdminService");
  v1::Empty req;
  return Call<v1::ListTokensResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::ListTokensResponse* resp) {
    return impl_->admin->ListTokens(ctx, req, resp);
  });
}

Result<v1::ApiToken> Client::RevokeToken(const std::string& id) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::RevokeTokenRequest req;
  req.set_id(id);
  return Call<v1::ApiToken>(impl_->options, [&](grpc::ClientContext* ctx, v1::ApiToken* resp) {
    return impl_->admin->RevokeToken(ctx, req, resp);
  });
}

Result<v1::CreateJoinTokenResponse> Client::CreateJoinToken(int64_t ttl_s) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::CreateJoinTokenRequest req;
  req.set_ttl_s(ttl_s);
  return Call<v1::CreateJoinTokenResponse>(impl_->options,
                                           [&](grpc::ClientContext* ctx, v1::CreateJoinTokenResponse* resp) {
                                             return impl_->admin->CreateJoinToken(ctx, req, resp);
                                           });
}

Result<v1::RevokeWorkerResponse> Client::RevokeWorker(const std::string& worker_id) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::RevokeWorkerRequest req;
  req.set_worker_id(worker_id);
  return Call<v1::RevokeWorkerResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::RevokeWorkerResponse* resp) {
    return impl_->admin->RevokeWorker(ctx, req, resp);
  });
}

Result<v1::ApiToken> Client::WhoAmI() {
  if (!impl_->admin) return NoStub("AdminService");
  v1::Empty req;
  return Call<v1::ApiToken>(impl_->options, [&](grpc::ClientContext* ctx, v1::ApiToken* resp) {
    return impl_->admin->WhoAmI(ctx, req, resp);
  });
}

Result<v1::ListAuditResponse> Client::ListAudit(const v1::ListAuditRequest& req) {
  if (!impl_->admin) return NoStub("AdminService");
  return Call<v1::ListAuditResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::ListAuditResponse* resp) {
    return impl_->admin->ListAudit(ctx, req, resp);
  });
}

Result<v1::Stats> Client::GetStats(const v1::GetStatsRequest& req) {
  if (!impl_->admin) return NoStub("AdminService");
  return Call<v1::Stats>(impl_->options, [&](grpc::ClientContext* ctx, v1::Stats* resp) {
    return impl_->admin->GetStats(ctx, req, resp);
  });
}

Result<v1::Image> Client::RegisterImage(const v1::RegisterImageRequest& req) {
  if (!impl_->images) return NoStub("ImageService");
  return Call<v1::Image>(impl_->options, [&](grpc::ClientContext* ctx, v1::Image* resp) {
    return impl_->images->RegisterImage(ctx, req, resp);
  });
}

Result<v1::ListImagesResponse> Client::ListImages() {
  if (!impl_->images) return NoStub("ImageService");
  return Call<v1::ListImagesResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::ListImagesResponse* resp) {
    return impl_->images->ListImages(ctx, v1::Empty(), resp);
  });
}

Result<v1::Image> Client::RemoveImage(const std::string& digest) {
  if (!impl_->images) return NoStub("ImageService");
  v1::GetImageRequest req;
  req.set_digest(digest);
  return Call<v1::Image>(impl_->options, [&](grpc::ClientContext* ctx, v1::Image* resp) {
    return impl_->images->RemoveImage(ctx, req, resp);
  });
}

Result<v1::ListProjectsResponse> Client::ListProjects() {
  if (!impl_->admin) return NoStub("AdminService");
  return Call<v1::ListProjectsResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::ListProjectsResponse* resp) {
    return impl_->admin->ListProjects(ctx, v1::Empty(), resp);
  });
}

Result<v1::Project> Client::CreateProject(const std::string& name, const std::string& config_json) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::CreateProjectRequest req;
  req.set_name(name);
  req.set_config_json(config_json);
  return Call<v1::Project>(impl_->options, [&](grpc::ClientContext* ctx, v1::Project* resp) {
    return impl_->admin->CreateProject(ctx, req, resp);
  });
}

Result<v1::Project> Client::GetProject(const std::string& name) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::GetProjectRequest req;
  req.set_name(name);
  return Call<v1::Project>(impl_->options, [&](grpc::ClientContext* ctx, v1::Project* resp) {
    return impl_->admin->GetProject(ctx, req, resp);
  });
}

Result<v1::Project> Client::SetProjectConfig(const std::string& name, const std::string& config_json) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::SetProjectConfigRequest req;
  req.set_name(name);
  req.set_config_json(config_json);
  return Call<v1::Project>(impl_->options, [&](grpc::ClientContext* ctx, v1::Project* resp) {
    return impl_->admin->SetProjectConfig(ctx, req, resp);
  });
}

Result<v1::ListClustersResponse> Client::ListClusters() {
  if (!impl_->admin) return NoStub("AdminService");
  return Call<v1::ListClustersResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::ListClustersResponse* resp) {
    return impl_->admin->ListClusters(ctx, v1::Empty(), resp);
  });
}

Result<v1::Cluster> Client::CreateCluster(const std::string& name) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::CreateClusterRequest req;
  req.set_name(name);
  return Call<v1::Cluster>(impl_->options, [&](grpc::ClientContext* ctx, v1::Cluster* resp) {
    return impl_->admin->CreateCluster(ctx, req, resp);
  });
}

Result<v1::Cluster> Client::GetCluster(const std::string& name) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::GetClusterStateRequest req;
  req.set_cluster(name);
  return Call<v1::Cluster>(impl_->options, [&](grpc::ClientContext* ctx, v1::Cluster* resp) {
    return impl_->admin->GetCluster(ctx, req, resp);
  });
}

Result<v1::Cluster> Client::SetClusterState(const v1::SetClusterStateRequest& req) {
  if (!impl_->admin) return NoStub("AdminService");
  return Call<v1::Cluster>(impl_->options, [&](grpc::ClientContext* ctx, v1::Cluster* resp) {
    return impl_->admin->SetClusterState(ctx, req, resp);
  });
}

Result<v1::PlanClustersResponse> Client::PlanClusters(const std::string& cluster, bool apply) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::PlanClustersRequest req;
  req.set_cluster(cluster);
  return Call<v1::PlanClustersResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::PlanClustersResponse* resp) {
    return apply ? impl_->admin->ApplyClusters(ctx, req, resp) : impl_->admin->PlanClusters(ctx, req, resp);
  });
}

Result<v1::ClusterHistoryResponse> Client::ClusterHistory(const std::string& cluster, int limit) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::ClusterHistoryRequest req;
  req.set_cluster(cluster);
  req.set_limit(limit);
  return Call<v1::ClusterHistoryResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::ClusterHistoryResponse* resp) {
    return impl_->admin->ClusterHistory(ctx, req, resp);
  });
}

Result<v1::ListWorkspacesResponse> Client::ListWorkspaces(const std::string& project) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::ListWorkspacesRequest req;
  req.set_project(project);
  return Call<v1::ListWorkspacesResponse>(impl_->options, [&](grpc::ClientContext* ctx, v1::ListWorkspacesResponse* resp) {
    return impl_->admin->ListWorkspaces(ctx, req, resp);
  });
}

Result<v1::RemoveWorkspaceResponse> Client::RemoveWorkspace(const std::string& project, const std::string& name) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::RemoveWorkspaceRequest req;
  req.set_project(project);
  req.set_name(name);
  return Call<v1::RemoveWorkspaceResponse>(impl_->options,
                                           [&](grpc::ClientContext* ctx, v1::RemoveWorkspaceResponse* resp) {
                                             return impl_->admin->RemoveWorkspace(ctx, req, resp);
                                           });
}

Result<v1::Cluster> Client::MapProject(const std::string& cluster, const std::string& project, bool unmap) {
  if (!impl_->admin) return NoStub("AdminService");
  v1::MapProjectRequest req;
  req.set_cluster(cluster);
  req.set_project(project);
  req.set_unmap(unmap);
  return Call<v1::Cluster>(impl_->options, [&](grpc::ClientContext* ctx, v1::Cluster* resp) {
    return impl_->admin->MapProject(ctx, req, resp);
  });
}

}  // namespace kiln::cli
