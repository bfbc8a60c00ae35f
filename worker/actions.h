#pragma once
// Remote actions on the worker that runs them (docs/architecture.md,
// "Remote actions"): each RunAction from the controller runs in a
// long-lived sandbox of its project and image (a "box": a runc container
// whose init is kiln-cc's launcher, so an action costs a process start, not
// a container start). The box's /src holds exactly the action's inputs,
// copied from the local CAS cache; the declared outputs are read back
// (never through a symlink) and /src is emptied for the next action.

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "config/config.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "worker/metrics.h"

namespace kiln::cas {
class CasClient;
}

namespace kiln::worker {

class CompileCacheSetup;
class ImageStore;
class LocalCas;
class Sandbox;

// What the action runner uses of its worker; none owned, all outlive it.
struct ActionEnv {
  const config::WorkerConfig* cfg = nullptr;
  std::string worker_id;
  cas::CasClient* cas = nullptr;
  LocalCas* local_cas = nullptr;
  v1::ImageService::Stub* image_stub = nullptr;
  ImageStore* images = nullptr;
  Sandbox* sandbox = nullptr;
  CompileCacheSetup* cc = nullptr;  // its kiln-cc is the launcher
  // Sends an ActionDone (not kept across reconnects: the requester has
  // given up on an action whose stream broke, and runs it itself).
  std::function<void(const v1::WorkerMessage&)> send;
  const std::atomic<bool>* draining = nullptr;  // set: new actions are refused
  ActionRunMetrics metrics;                     // default-built: counts nothing
};

// The answer to an action this worker does not run, saying why.
v1::WorkerMessage ActionRefused(const std::string& action_id, const std::string& why);

class ActionRunner {
 public:
  // `slots` actions at once; boxes live in cfg->work_dir/boxes.
  ActionRunner(ActionEnv env, int slots);
  ~ActionRunner();  // stops every box
  ActionRunner(const ActionRunner&) = delete;
  ActionRunner& operator=(const ActionRunner&) = delete;

  // Runs the action on a thread of its own and sends its ActionDone
  // (ActionResult.error when it could not run it: draining, no free slot,
  // a bad action, the box or the inputs failed).
  void Start(const v1::RunAction& a);
  // Runs it here and now (tests, and Start's thread).
  v1::ActionResult Run(const v1::RunAction& a);
  // Boxes alive now (kiln_worker_action_boxes).
  int Boxes() const;

  struct Impl;

 private:
  v1::ActionResult RunOnce(const v1::RunAction& a);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kiln::worker
