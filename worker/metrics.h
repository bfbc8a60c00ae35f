#pragma once
// The worker's metric families (docs/operations.md, "Metrics"). Worker::Create
// makes them; a job's run counts in RunMetrics (a copy in JobEnv: default-built,
// as in unit tests, it counts nothing).

#include "metrics/metrics.h"

namespace kiln::worker {

struct RunMetrics {
  metrics::CounterFamily jobs;               // kiln_worker_jobs_total{outcome}
  metrics::HistogramFamily phase;            // kiln_worker_phase_seconds{phase}
  metrics::Counter cas_hits, cas_misses;     // kiln_worker_cas_cache_files_total{outcome}
  metrics::CounterFamily compile_units;      // kiln_worker_compile_units_total{outcome}
  metrics::Counter sandbox_starts;           // kiln_worker_sandbox_starts_total
  metrics::Counter sandbox_failures;         // kiln_worker_sandbox_failures_total
};

// Remote actions this worker ran for the farm (ActionRunner). Per worker by
// nature: which worker ran what is each worker's own series.
struct ActionRunMetrics {
  metrics::CounterFamily actions;            // kiln_worker_actions_total{outcome}
  metrics::Histogram run_time;               // kiln_worker_action_run_seconds
};

struct WorkerMetrics {
  metrics::Registry registry;
  RunMetrics run;
  ActionRunMetrics actions;
  metrics::Gauge boxes;                      // kiln_worker_action_boxes
  metrics::Gauge slots, slots_busy;          // kiln_worker_slots, kiln_worker_slots_busy
  metrics::Gauge cas_cache_bytes;            // kiln_worker_cas_cache_bytes
  metrics::Gauge image_bytes;                // kiln_worker_image_store_bytes
  metrics::GaugeFamily disk_free_bytes;      // kiln_worker_disk_free_bytes{store}

  WorkerMetrics();
};

}  // namespace kiln::worker
