#include "controller/metrics.h"

namespace kiln::controller {

void CountEnded(const JobMetrics& m, const std::vector<queue::EndedJob>& ended) {
  for (const auto& e : ended) {
    const char* outcome = e.status == queue::JobStatus::kSucceeded ? "cached" : queue::ToString(e.status);
    m.finished.With({{"project", e.project}, {"outcome", outcome}}).Inc();
  }
}

ControllerMetrics::ControllerMetrics() {
  auto& r = registry;
  jobs.submitted = r.Counters("kiln_jobs_submitted_total", "Jobs submitted (not counting repeats of a request id), by project.");
  jobs.finished = r.Counters("kiln_jobs_finished_total",
                             "Jobs that ended, by project and outcome (succeeded, failed, cancelled (also before they "
                             "ran), lost (their worker gone with no attempts left), cached: served from the action "
                             "cache at submit or completed by the identical job they waited for).");
  jobs.queue_wait = r.Histograms("kiln_job_queue_wait_seconds",
                                 "Time from a job's submit to its assignment to the worker that runs it, by project.",
                                 metrics::SecondsBuckets());
  jobs.run_time = r.Histograms("kiln_job_run_seconds", "Time a job ran on its worker (start to end), by project.",
                               metrics::SecondsBuckets());
  jobs.dispatch_latency =
      r.Histograms("kiln_job_dispatch_latency_seconds",
                   "Time from a job entering the queue (its submit, or its requeue) to its claim by a worker.",
                   metrics::SecondsBuckets())
          .With();
  auto action = r.Counters("kiln_action_cache_lookups_total",
                           "Action cache lookups at submit of cacheable jobs, by outcome (hit, miss).");
  jobs.action_cache_hits = action.With({{"outcome", "hit"}});
  jobs.action_cache_misses = action.With({{"outcome", "miss"}});

  compiles.units = r.Counters("kiln_compile_cache_lookups_total",
                              "Translation units seen by kiln-cc on the workers, by outcome (hit, hit_preprocessed, "
                              "miss, fallback, failed), as their jobs' records report them.");
  compiles.bytes_served =
      r.Counters("kiln_compile_cache_served_bytes_total", "Bytes of objects served from the compile cache.").With();

  cas.uploads = r.Counters("kiln_cas_uploads_total", "Blobs uploaded to CAS.").With();
  cas.upload_bytes = r.Counters("kiln_cas_upload_bytes_total", "Bytes of blobs uploaded to CAS.").With();
  cas.reads = r.Counters("kiln_cas_reads_total", "Blobs read from CAS.").With();
  cas.read_bytes = r.Counters("kiln_cas_read_bytes_total", "Bytes of blobs read from CAS.").With();

  grpc.calls = r.Counters("kiln_grpc_calls_total", "gRPC calls served, by method and status code.");

  actions.queued = r.Gauges("kiln_actions_queued",
                            "Remote actions waiting for an action slot in this controller, by cluster and project.");
  actions.dispatched = r.Counters("kiln_actions_dispatched_total",
                                  "Remote actions handed to a worker, by cluster, project and host (other: not the "
                                  "requester's worker; requester: its own). A retry counts again.");
  actions.finished = r.Counters("kiln_actions_finished_total",
                                "Remote actions answered to their requester, by cluster and outcome (ran: a worker "
                                "ran it, whatever its exit code; failed: workers could not run it; expired: no slot "
                                "in time or past its deadline; no_worker: no worker of the cluster runs actions). "
                                "Every outcome but ran means the unit compiled on the requester's host.");
  actions.queue_wait = r.Histograms("kiln_action_queue_wait_seconds",
                                    "Time a remote action waited for an action slot, by cluster.",
                                    metrics::SecondsBuckets());
  actions.overhead = r.Histograms("kiln_action_overhead_seconds",
                                  "Time the farm added to a remote action that ran (the requester's wait minus its "
                                  "run time on the worker: queueing, transfer, the box), by cluster.",
                                  metrics::SecondsBuckets());

  pool.size = r.Gauges("kiln_db_pool_connections", "Connections the controller's database pool may open.").With();
  pool.in_use = r.Gauges("kiln_db_pool_in_use", "Connections of the pool leased to a statement now.").With();
  pool.waiting = r.Gauges("kiln_db_pool_waiting", "Threads waiting for a connection of the pool.").With();
  pool.errors = r.Counters("kiln_db_errors_total",
                           "Statements (or connections) the database failed, on the controller's pool.")
                    .With();

  farm_gauges.leader =
      r.Gauges("kiln_controller_leader", "1 on the controller that leads the farm (exports the farm's gauges).")
          .With();
  auto& f = farm;
  farm_gauges.queued = f.Gauges("kiln_queue_depth", "Queued jobs, by project and cluster ((any): not pinned to one).");
  farm_gauges.workers = f.Gauges("kiln_cluster_workers_connected", "Connected workers, by cluster.");
  farm_gauges.slots = f.Gauges("kiln_cluster_slots", "Slots of connected workers, by cluster.");
  farm_gauges.unhealthy = f.Gauges("kiln_cluster_workers_unhealthy",
                                   "Connected workers the health checker marked unhealthy (no new jobs), by cluster.");
  farm_gauges.slots_busy = f.Gauges("kiln_cluster_slots_busy", "Slots running a job (setup or running), by cluster.");
  farm_gauges.cas_blobs = f.Gauges("kiln_cas_blobs", "Blobs in CAS, as of the last collection.");
  farm_gauges.cas_bytes = f.Gauges("kiln_cas_stored_bytes", "Bytes of blobs in CAS, as of the last collection.");

  clusters.decisions = r.Counters("kiln_autoscaler_decisions_total",
                                  "Decisions the autoscaler recorded (kiln clusters history), by cluster and action "
                                  "(scale_up, scale_down, hold, reconcile).");
  clusters.failures = r.Counters("kiln_cluster_apply_failures_total",
                                 "Autoscaler passes whose plan had a step that failed (retried with backoff), by cluster.");
  clusters.unregistered = r.Counters("kiln_cluster_workers_unregistered_total",
                                     "Instances a provider started whose worker never registered by its deadline "
                                     "(destroyed), by cluster.");
  clusters.desired = f.Gauges("kiln_cluster_desired_workers", "The autoscaler's desired worker count, by cluster.");
}

}  // namespace kiln::controller
