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
  actions.actions = r.Counters("kiln_worker_actions_total",
                               "Remote actions this worker was given, by outcome (succeeded: exit code 0; failed: "
                               "another exit code or a signal; refused: not run here, e.g. draining, no free slot, "
                               "the box or its inputs failed; the controller then tries another worker).");
  actions.run_time = r.Histograms("kiln_worker_action_run_seconds",
                                  "Time the remote actions this worker ran took in their box (the process alone).",
                                  metrics::SecondsBuckets())
                         .With();
  boxes = r.Gauges("kiln_worker_action_boxes",
                   "Action sandboxes (long-lived containers per project and image) alive on this worker.")
              .With();
  slots = r.Gauges("kiln_worker_slots", "Jobs this worker runs at once.").With();
  slots_busy = r.Gauges("kiln_worker_slots_busy", "Jobs this worker runs now.").With();
  cas_cache_bytes = r.Gauges("kiln_worker_cas_cache_bytes", "Bytes in the local CAS cache (work_dir/cas).").With();
  disk_free_bytes = r.Gauges("kiln_worker_disk_free_bytes",
                             "Free bytes of the file system of each store (work_dir, images, cas), as the health "
                             "checker sees them.");
  image_bytes = r.Gauges("kiln_worker_image_store_bytes", "Bytes of unpacked images (work_dir/images).").With();
}

}  // namespace kiln::worker
