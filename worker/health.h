#pragma once
// What a worker measures of itself for the controller's health checker
// (docs/operations.md, "Health"): free disk of work_dir, the image store and
// the CAS cache, the load average, its clock and, on an interval of its own
// (the costly part), whether runc answers. The controller judges; the worker
// only reports. Thread-safe.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "kiln/v1/kiln.pb.h"

namespace kiln::worker {

class Sandbox;

// Free and total bytes of the file system holding `path` (statvfs: what an
// unprivileged writer may use); false if it cannot be read.
bool FreeDisk(const std::string& path, int64_t& free_bytes, int64_t& total_bytes);

class HealthProbe {
 public:
  // stores: (name, directory) pairs, e.g. ("work_dir", "/var/lib/kiln-worker").
  // sandbox may be null (no containers here: no runc check).
  HealthProbe(std::vector<std::pair<std::string, std::string>> stores, Sandbox* sandbox,
              std::chrono::milliseconds check_interval);

  // Measures now; the runc check runs again only once check_interval has
  // passed since the last one (its last outcome is reported meanwhile).
  v1::HealthReport Measure();
  // The runc check's interval from now on (SIGHUP).
  void SetInterval(std::chrono::milliseconds check_interval);

 private:
  std::vector<std::pair<std::string, std::string>> stores_;
  Sandbox* sandbox_;
  std::mutex mu_;  // guards the interval and the last runc check
  std::chrono::milliseconds check_interval_;
  v1::RuncCheck runc_;
  std::chrono::steady_clock::time_point runc_at_{};
};

}  // namespace kiln::worker
