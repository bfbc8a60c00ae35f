#pragma once
// The run of one job on a worker, from its assignment to its final report:
// the job's directory or warm workspace, its input tree, the run itself (a
// container when it names an image, else a plain process where allowed),
// the compile cache around it, its log, its declared outputs, and what is
// left to remove afterwards.

#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "config/config.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "worker/assignment.h"
#include "worker/ledger.h"
#include "worker/metrics.h"
#include "worker/runner.h"

namespace kiln::cas {
class CasClient;
}

namespace kiln::worker {

class Checkouts;
class CompileCacheSetup;
class ImageStore;
class LocalCas;
class Sandbox;
class WorkspaceStore;

// What a job's run uses of its worker. Pointers are not owned and outlive
// every run; sandbox and cc may be null (no containers, no compile cache).
struct JobEnv {
  const config::WorkerConfig* cfg = nullptr;
  std::string worker_id;
  v1::WorkerService::StubInterface* stub = nullptr;
  cas::CasClient* cas = nullptr;
  LocalCas* local_cas = nullptr;
  v1::ImageService::Stub* image_stub = nullptr;
  ImageStore* images = nullptr;
  WorkspaceStore* workspaces = nullptr;
  Checkouts* checkouts = nullptr;
  Sandbox* sandbox = nullptr;
  std::string no_sandbox_why;  // why sandbox is null
  CompileCacheSetup* cc = nullptr;
  // Starts a container of the worker's own (ProbeContainer) after runc
  // failed to start a job's for no reason of the job's it named: OK means
  // runc works here, so the failure is the job's (its image, its
  // settings), not the worker's. Empty: such failures are the worker's.
  std::function<Status()> runc_check;
  // Sends a message to the controller, kept until it can go (log chunks,
  // RUNNING, workspace records).
  std::function<void(const v1::WorkerMessage&)> send;
  // Reports the final update; the job leaves the running set with it.
  std::function<void(const v1::JobUpdate&)> finish;
  RunMetrics metrics;  // phase times, outcomes, cache use
};

// Runs the job to its end, reports it (env.finish) and removes what it
// left. Blocks: call it on the job's own thread. `js` is polled for cancel,
// hand back and the log's overflow.
void RunAssignment(const JobEnv& env, const Assignment& a, const std::shared_ptr<JobState>& js);

// Whether a warm workspace is kept after its job: not when its sync failed
// or the run ended in a way that may leave it half written (killed,
// cancelled, handed back, timed out, over a limit).
bool KeepWorkspace(const Status& setup, const RunOutcome& out);

// Whether a setup error (the input tree, a warm workspace, the image) is
// the worker's (infrastructure: a full disk, a fetch or unpack error; the
// job is retried elsewhere) rather than the job's (an invalid digest, an
// input larger than its disk cap: it fails). UNAVAILABLE is neither: the
// job is handed back as before.
bool InfrastructureError(const Status& setup);

// Captures the declared outputs under job_dir into CAS (UNAVAILABLE retried);
// returns the key of their tree's root and adds the bytes it uploaded to
// *uploaded (if not null). NotFound for an output the build did not produce,
// ResourceExhausted over max_bytes.
Result<std::string> CaptureOutputs(cas::CasClient& cas, const Assignment& a, const std::string& job_dir,
                                   int64_t max_bytes, int64_t* uploaded = nullptr);

}  // namespace kiln::worker
