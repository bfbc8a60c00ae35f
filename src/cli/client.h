#pragma once
// Client side of the kiln API (JobService, AdminService). Every unary call
// has a deadline; errors come back as Status values with gRPC's code and the
// controller's message. grpc++ stays inside client.cc; tests build a Client
// over substituted stubs with MakeClient() from client_stubs.h.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::cas {
class CasClient;
}

namespace kiln::cli {

struct ClientOptions {
  std::string address = "127.0.0.1:7070";          // kiln-controller's host:port
  bool insecure = false;                            // plaintext (a controller with insecure = true)
  std::string ca_pem;                               // the farm's CA, to check the controller's certificate
  std::string server_name;                          // override of the name the certificate must carry
  std::string token;                                // API token, sent as a bearer token
  std::chrono::milliseconds timeout{30'000};        // deadline of each unary call
  std::chrono::milliseconds retry_backoff{250};     // first Submit retry delay, doubling
};

class Client {
 public:
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // A client for the controller at options.address. Never fails: the channel
  // connects lazily and an unreachable controller shows as UNAVAILABLE on the first call.
  static std::unique_ptr<Client> Connect(const ClientOptions& options);

  const ClientOptions& options() const;
  // The CasService client on the same channel; null for a Client made over
  // test stubs without one.
  cas::CasClient* Cas();

  // Submit, retried up to 3 times with backoff on UNAVAILABLE only, with the
  // same request: set request_id so that a retry cannot create a second job.
  Result<v1::SubmitResponse> Submit(const v1::SubmitRequest& req);
  Result<v1::Job> GetJob(int64_t job_id);
  Result<v1::Explanation> ExplainJob(int64_t job_id, int max_paths);
  Result<v1::Job> CancelJob(int64_t job_id, const std::string& reason);
  Result<v1::ListJobsResponse> ListJobs(const v1::ListJobsRequest& req);

  // Streams the job's events to on_event until the controller ends the stream
  // (Ok) or it fails (the call's status). A follow stream has no deadline;
  // others have the call timeout. on_event returns how long the stream may
  // then stay silent (zero: no limit); a stream silent for longer is cancelled
  // and WatchJob returns DEADLINE_EXCEEDED.
  Status WatchJob(const v1::WatchJobRequest& req,
                  const std::function<std::chrono::milliseconds(const v1::JobEvent&)>& on_event);

  Result<v1::ListWorkersResponse> ListWorkers(bool include_gone);
  Result<v1::ListProjectsResponse> ListProjects();
  Result<v1::Project> CreateProject(const std::string& name, const std::string& config_json);
  Result<v1::Project> GetProject(const std::string& name);
  Result<v1::Project> SetProjectConfig(const std::string& name, const std::string& config_json);
  Result<v1::ListClustersResponse> ListClusters();
  Result<v1::Cluster> CreateCluster(const std::string& name);
  Result<v1::Image> RegisterImage(const v1::RegisterImageRequest& req);
  Result<v1::ListImagesResponse> ListImages();
  Result<v1::Image> RemoveImage(const std::string& digest);
  Result<v1::CompileStatsResponse> CompileStats(const v1::CompileStatsRequest& req);
  Result<v1::CompileImpactResponse> CompileImpact(const v1::CompileImpactRequest& req);

  Result<v1::ListWorkspacesResponse> ListWorkspaces(const std::string& project);
  Result<v1::RemoveWorkspaceResponse> RemoveWorkspace(const std::string& project, const std::string& name);

  // Shared cache scopes (admin tokens).
  Result<v1::CacheScope> SetCacheScope(const std::string& name, const std::vector<std::string>& projects);
  Result<v1::ListCacheScopesResponse> ListCacheScopes();
  Result<v1::CacheScope> RemoveCacheScope(const std::string& name);

  // Trust (admin tokens).
  Result<v1::CreateTokenResponse> CreateToken(const v1::CreateTokenRequest& req);
  Result<v1::ListTokensResponse> ListTokens();
  Result<v1::ApiToken> RevokeToken(const std::string& id);
  Result<v1::CreateJoinTokenResponse> CreateJoinToken(int64_t ttl_s);
  Result<v1::RevokeWorkerResponse> RevokeWorker(const std::string& worker_id);
  Result<v1::ApiToken> WhoAmI();

  // The audit trail, newest first (an admin token, or a read token of req.project).
  Result<v1::ListAuditResponse> ListAudit(const v1::ListAuditRequest& req);
  // The farm's history for a window (an admin token, or a read token of req.project).
  Result<v1::Stats> GetStats(const v1::GetStatsRequest& req);

  // A cluster and its desired state (absent: not managed).
  Result<v1::Cluster> GetCluster(const std::string& name);
  // Changes the desired state fields req carries (an admin token).
  Result<v1::Cluster> SetClusterState(const v1::SetClusterStateRequest& req);

  // The deployer's plans (apply: carried out) of one cluster or, empty, every managed one.
  Result<v1::PlanClustersResponse> PlanClusters(const std::string& cluster, bool apply);
  Result<v1::ClusterHistoryResponse> ClusterHistory(const std::string& cluster, int limit);

  // Maps (or with unmap, unmaps) a project to a cluster.
  Result<v1::Cluster> MapProject(const std::string& cluster, const std::string& project, bool unmap);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::cli
