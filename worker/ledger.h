#pragma once
// The worker's account of its jobs: those running here, and the final
// reports the controller has not acknowledged yet. A job moves from the one
// to the other in one step, so a registration never leaves out a job the
// worker still holds (the controller would think it lost and run it again).
// Thread-safe.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "kiln/v1/kiln.pb.h"

namespace kiln::worker {

// One job running here: the flags its run polls.
struct JobState {
  int64_t id = 0;
  int attempt = 0;
  std::atomic<bool> cancel{false};
  std::atomic<bool> hand_back{false};
  std::atomic<int> pgid{0};  // a plain run's process group, for a hard stop
  std::atomic<bool> log_overflow{false};
};

class JobLedger {
 public:
  // Admit's answer: run `job` (set), hand the assignment back saying
  // `refuse` (non-empty), or neither: a repeat of what already runs.
  struct Admission {
    std::shared_ptr<JobState> job;
    std::string refuse;
    bool older_stopping = false;  // with refuse: kept as the older attempt's successor
  };
  // Takes an assignment if a slot is free and the worker is not draining.
  // A newer attempt of a job that runs here stops the older one and is
  // kept (`wire`, if given) as its successor, with older_stopping: it takes
  // the older one's slot once that has stopped (TakeSuccessor), instead of
  // going back to the controller, which would give it straight back here.
  // Until then registrations name the successor's attempt.
  // A cancel that overtook the assignment marks the job cancelled at once.
  // An admitted job counts as a live run until RunEnded.
  Admission Admit(int64_t job_id, int attempt, int slots, bool draining, const v1::Assign* wire = nullptr);
  // The run of an admitted job is over (its thread is done).
  void RunEnded();
  // The newer attempt that waits for the job's run here to stop, if any
  // (taken: the caller starts it, before its RunEnded).
  std::optional<v1::Assign> TakeSuccessor(int64_t job_id);

  // Keeps a final report until Ack. With ran_here, the job also leaves the
  // running set in the same step.
  void Finish(const v1::JobUpdate& u, bool ran_here);
  // The controller acknowledged the final report of (job, attempt).
  void Ack(int64_t job_id, int attempt);

  enum class CancelResult { kCancelled, kRemembered, kIgnored };
  // Cancels the attempt if it runs here; else remembers it for an
  // assignment it may have overtaken (unless its final report is pending,
  // or 10,000 are remembered already).
  CancelResult Cancel(int64_t job_id, int attempt);

  // What a registration must say: the jobs held here (running, or with
  // their final report unacknowledged), and those reports, to send again.
  struct Held {
    std::vector<std::pair<int64_t, int>> running;
    std::vector<v1::JobUpdate> reports;
  };
  Held Snapshot() const;

  size_t running() const;
  size_t unacked() const;

  // Draining: waits until no job runs and no run is live; false on timeout.
  bool WaitIdle(std::chrono::milliseconds timeout);
  void WaitIdle();
  // Asks every running job to stop and be handed back; returns how many.
  size_t HandBackAll();
  // Waits until every final report is acknowledged; false on timeout.
  bool WaitAcked(std::chrono::milliseconds timeout);
  // SIGKILLs the process groups of running plain jobs (a hard stop).
  void KillAll();

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, std::shared_ptr<JobState>> jobs_;
  std::map<std::pair<int64_t, int>, v1::JobUpdate> unacked_;  // final reports until acknowledged
  std::set<std::pair<int64_t, int>> early_cancels_;          // cancels that overtook their assignment
  std::map<int64_t, v1::Assign> successors_;                 // newer attempts waiting for a run here to stop
  int live_runs_ = 0;                                        // runs not yet finished
};

}  // namespace kiln::worker
