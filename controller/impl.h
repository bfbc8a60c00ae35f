#pragma once
// Internals of the controller shared by its translation units.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <thread>

#include "cache/compile_store.h"
#include "controller/cas.h"
#include "controller/controller.h"
#include "controller/state.h"
#include "queue/listener.h"

namespace kiln::controller {

// An update or log chunk from a worker, waiting to be written.
struct Event {
  enum Kind { kUpdate, kLog, kDrop } kind = kUpdate;
  std::shared_ptr<Session> session;
  queue::Update update;
  queue::LogAppend log;
  std::string why;  // kDrop: why the stream closed
};

struct Controller::Impl {
  config::ControllerConfig cfg;
  std::string controller_id;
  std::unique_ptr<queue::Queue> queue;
  std::unique_ptr<ProjectCache> projects;
  std::unique_ptr<Cas> cas;
  std::unique_ptr<cache::CompileCacheStore> compile_cache;
  Registry registry;
  std::atomic<bool> stopping{false};

  Signal dispatch_wake;  // new jobs or freed slots
  Signal job_events;     // something about some job changed (for WatchJob)
  Signal config_wake;    // NOTIFY kiln_config
  Signal shutdown_wake;  // Shutdown() was called
  Signal remote_wake;    // jobs were submitted here: tell the other controllers

  // Worker updates are applied by one thread in batches.
  std::mutex events_mu;
  std::condition_variable events_cv;
  std::deque<Event> events;

  std::unique_ptr<grpc::Service> job_service, admin_service, worker_service, cas_service, image_service, cache_service;
  std::unique_ptr<grpc::Server> server;
  std::string bound_address;
  std::unique_ptr<queue::Listener> listener;
  std::vector<std::thread> threads;

  void Enqueue(Event e);
  void DispatchLoop();
  void ApplyLoop();
  void ApplyDrop(const Event& drop);
  void ReapLoop();
  void ConfigLoop();
  void NotifyLoop();
  void GcLoop();
  void OnNotify(const std::string& channel, const std::string& payload);
};

std::unique_ptr<grpc::Service> MakeJobService(Controller::Impl* c);
std::unique_ptr<grpc::Service> MakeAdminService(Controller::Impl* c);
std::unique_ptr<grpc::Service> MakeWorkerService(Controller::Impl* c);
std::unique_ptr<grpc::Service> MakeCacheService(Controller::Impl* c);

// A workspace name (a branch, say): 1-128 of letters, digits, '.', '_', '-',
// '/', '+', not starting with '/' or '.', no "..". Empty is valid (none given).
Status CheckWorkspaceName(const std::string& n);

// Tells a worker to delete one of its warm workspaces.
v1::ControllerMessage DropMessage(const std::string& project, const std::string& name);

// The action and compile cache scope of a project's jobs: "project:<name>",
// or "shared:<cache_scope>" for projects that trust each other.
std::string CacheScope(const std::string& project, const config::ProjectConfig& pc);

// The compile cache's worker RPCs (compile_service.cc).
grpc::Status LookupCompile(Controller::Impl* c, const v1::LookupCompileRequest* req, v1::LookupCompileResponse* resp);
grpc::Status LookupCompileResult(Controller::Impl* c, const v1::LookupCompileResultRequest* req,
                                 v1::LookupCompileResultResponse* resp);
grpc::Status StoreCompile(Controller::Impl* c, const v1::StoreCompileRequest* req, v1::StoreCompileResponse* resp);
grpc::Status RecordCompiles(Controller::Impl* c, const v1::RecordCompilesRequest* req);
// Adds the job's compile cache record to an explanation.
Status ExplainCompiles(Controller::Impl* c, int64_t job_id, size_t max_events, v1::Explanation* resp);

}  // namespace kiln::controller
