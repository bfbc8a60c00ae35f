#include "worker/metrics.h"

namespace kiln::worker {

WorkerMetrics::WorkerMetrics() {
  auto& r = registry;
  run.jobs = r.Counters("kiln_worker_jobs_total",
                        "Jobs this worker ran to their end, by outcome (succeeded, failed, cancelled, queued: handed "
                        "back).");
  run.phase = r.Histograms("kiln_worker_phase_seconds",
                           "Time of each phase of a job on this worker: fetch_inputs, image_unpack, workspace_sync, "
                           "run, upload_outputs.",
                           metrics::SecondsBuckets());
  auto files = r.Counters("kiln_worker_cas_cache_files_total",
                          "Files of input trees placed from the local CAS cache (hit) or fetched from the controller "
                          "(miss).");
  run.cas_hits = files.With({{"outcome", "hit"}});
  run.cas_misses = files.With({{"outcome", "miss"}});
  run.compile_units = r.Counters("kiln_worker_compile_units_total",
                                 "Translation units kiln-cc reported from this worker's containers, by outcome (hit, "
                                 "hit_preprocessed, miss, fallback, failed).");
  run.sandbox_starts = r.Counters("kiln_worker_sandbox_starts_total", "Containers this worker started jobs in.").With();
  run.sandbox_failures =
      r.Counters("kiln_worker_sandbox_failures_total", "Containers that failed before their job could start.").With();
  slots = r.Gauges("kiln_worker_slots", "Jobs this worker runs at once.").With();
  slots_busy = r.Gauges("kiln_worker_slots_busy", "Jobs this worker runs now.").With();
  cas_cache_bytes = r.Gauges("kiln_worker_cas_cache_bytes", "Bytes in the local CAS cache (work_dir/cas).").With();
  disk_free_bytes = r.Gauges("kiln_worker_disk_free_bytes",
                             "Free bytes of the file system of each store (work_dir, images, cas), as the health "
                             "checker sees them.");
  image_bytes = r.Gauges("kiln_worker_image_store_bytes", "Bytes of unpacked images (work_dir/images).").With();
}

}  // namespace kiln::worker
