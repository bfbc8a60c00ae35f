#pragma once
// What a worker measures of itself for the controller's health checker
// (docs/operations.md, "Health"): free disk of work_dir, the image store and
// the CAS cache, the load average, its clock and, on an interval of its own
// (the costly part), whether runc starts a container. The controller judges;
// the worker only reports. Thread-safe.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::worker {

class Sandbox;

// Free and total bytes of the file system holding `path` (statvfs: what an
// unprivileged writer may use); false if it cannot be read.
bool FreeDisk(const std::string& path, int64_t& free_bytes, int64_t& total_bytes);

// Starts a container in `sandbox` whose init is the static `kiln_cc` (copied
// into a rootfs of its own under `dir`, removed after) run as
// `kiln-cc --kiln-probe`, and checks that it ran: OK, FailedPrecondition
// saying what runc or the container did, or Unavailable when the probe
// could not be set up (its files cannot be written: the disk checks say
// why) or was cancelled (no verdict on runc). At most `timeout_s`.
// `n` tells concurrent probes apart: the container is job 0's attempt n
// (no job's: job ids start at 1).
Status ProbeContainer(Sandbox& sandbox, const std::string& dir, const std::string& kiln_cc, int timeout_s = 30,
                      const std::atomic<bool>* cancel = nullptr, int n = 0);

class HealthProbe {
 public:
  // stores: (name, directory) pairs, e.g. ("work_dir", "/var/lib/kiln-worker").
  // sandbox may be null (no containers here: no runc check). start_container
  // (may be empty: runc's own checks only) starts a real container, and
  // gives up when its argument becomes true (the probe is being destroyed).
  using StartContainer = std::function<Status(const std::atomic<bool>& cancel)>;
  HealthProbe(std::vector<std::pair<std::string, std::string>> stores, Sandbox* sandbox,
              std::chrono::milliseconds check_interval, StartContainer start_container = {});
  // Cancels a runc check under way and waits for it.
  ~HealthProbe();

  // Measures now. The runc check (runc's version and cgroups, then
  // start_container) runs on a thread of its own once check_interval has
  // passed since the last one began, never two at a time: a hung runc never
  // holds up a heartbeat. The last outcome is reported meanwhile (none
  // before the first ends). runc is reported failing only after two checks
  // in a row fail (one failure may be the host's moment: memory, pids, a
  // slow disk); the second comes kRecheckAfter after the first (or at the
  // interval, if shorter), at the first Measure after that.
  // Unavailable from start_container is no verdict either way.
  v1::HealthReport Measure();
  // The runc check's interval from now on (SIGHUP).
  void SetInterval(std::chrono::milliseconds check_interval);

 private:
  static constexpr std::chrono::milliseconds kRecheckAfter{5000};

  std::vector<std::pair<std::string, std::string>> stores_;
  Sandbox* sandbox_;
  StartContainer start_container_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;  // guards the interval, the last runc check and the thread
  std::chrono::milliseconds check_interval_;
  v1::RuncCheck runc_;
  std::chrono::steady_clock::time_point runc_at_{};
  bool started_ = false;  // a check began once
  bool probing_ = false;  // one runs now
  int failures_ = 0;      // runc checks failed in a row
  std::thread probe_;
};

}  // namespace kiln::worker
