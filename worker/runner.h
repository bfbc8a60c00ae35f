#pragma once
// Runs one job's command as a child process in its own process group, in a
// fresh directory, streaming its merged stdout/stderr. This is the plain
// runner for trusted pools; the sandbox (runc) replaces it for images.

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "queue/types.h"

namespace kiln::worker {

// A job's limit: its request (`want`, 0 for none) within the worker's cap
// (`cap`, 0 for none).
inline int64_t CappedLimit(int64_t want, int64_t cap) { return want > 0 && (cap <= 0 || want < cap) ? want : cap; }

struct RunRequest {
  int64_t job_id = 0;
  int attempt = 0;
  queue::JobSpec spec;
  std::string job_dir;  // created before, removed after by the caller
  // A launcher (e.g. runc) run instead of spec.argv, in job_dir, with the
  // worker's own environment; `kill` stops what it started (default: the
  // process group).
  std::vector<std::string> launcher;
  std::function<void()> kill;
  // Set by the caller to end the run as FAILED with `abort_reason` (e.g. the
  // log grew past its cap).
  const std::atomic<bool>* abort = nullptr;
  std::string abort_reason;
  std::string abort_limit;
  // The compile cache (containers only): directories on the host bound at
  // /kiln/bin (kiln-cc and its links, put first on PATH) and /kiln/run
  // (its socket). Empty: no compile cache.
  std::string cc_wrapper_dir, cc_socket_dir;
};

// Why a sandbox could not start a job's command (RunOutcome::start_error).
enum class StartError {
  kNone,
  kSetup,    // it could not write what its runtime needs (a full disk): no
             // verdict on the runtime
  kRuntime,  // the runtime failed before the command ran, for no reason of
             // the job's that it names: the worker's (infrastructure) if
             // the worker's own containers fail to start too
  kCommand,  // the job's command could not be executed (missing from its
             // image, not executable): the job's
  kJob,      // the runtime could not start it for the job's own settings
             // (a memory or pids limit too low for its init, a working
             // directory that cannot be entered): the job's
};

struct RunOutcome {
  queue::JobStatus status = queue::JobStatus::kFailed;
  StartError start_error = StartError::kNone;
  queue::JobResult result;
  int64_t started_ms = 0;
  int64_t finished_ms = 0;
};

// Runs the request to completion. `on_output` gets the log in order, in
// chunks of at most 64 KiB, at most 100 ms after the bytes were written.
// Setting `cancel` (polled every few ms) kills the process group and yields
// CANCELLED; `hand_back` kills it and yields QUEUED. The timeout kills it
// and yields FAILED with timed_out. Never throws.
RunOutcome RunJob(const RunRequest& req, const std::function<void(int64_t started_ms)>& on_started,
                  const std::function<void(const std::string& chunk)>& on_output, const std::atomic<bool>& cancel,
                  const std::atomic<bool>& hand_back, std::atomic<int>* pgid_out = nullptr);

}  // namespace kiln::worker
