#pragma once
// The controller's metric families (docs/operations.md, "Metrics"), made
// once by the composition root; each service and loop is handed the group
// it counts in. Default-built groups count nothing (services built without
// metrics, as tests do).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "metrics/metrics.h"
#include "queue/types.h"

namespace kiln::controller {

// Jobs: JobService (submits, action cache lookups), the dispatcher (queue
// wait, dispatch latency) and the update applier (ends, run time).
struct JobMetrics {
  metrics::CounterFamily submitted;        // kiln_jobs_submitted_total{project}
  metrics::CounterFamily finished;         // kiln_jobs_finished_total{project,outcome}
  metrics::HistogramFamily queue_wait;     // kiln_job_queue_wait_seconds{project}
  metrics::HistogramFamily run_time;       // kiln_job_run_seconds{project}
  metrics::Histogram dispatch_latency;     // kiln_job_dispatch_latency_seconds
  metrics::Counter action_cache_hits;      // kiln_action_cache_lookups_total{outcome="hit"}
  metrics::Counter action_cache_misses;    // ... {outcome="miss"}
};

// Counts in kiln_jobs_finished_total the jobs that ended without a worker's
// final report: lost or cancelled with their worker (outcome lost,
// cancelled), completed by the identical job they waited for (cached).
void CountEnded(const JobMetrics& m, const std::vector<queue::EndedJob>& ended);

// The compile cache, as the workers' per-job records report it.
struct CompileMetrics {
  metrics::CounterFamily units;            // kiln_compile_cache_lookups_total{outcome}
  metrics::Counter bytes_served;           // kiln_compile_cache_served_bytes_total
};

// CasService: what clients and workers upload and read.
struct CasMetrics {
  metrics::Counter uploads, upload_bytes;  // kiln_cas_uploads_total, kiln_cas_upload_bytes_total
  metrics::Counter reads, read_bytes;      // kiln_cas_reads_total, kiln_cas_read_bytes_total
};

// Every gRPC call, by method and status code (an interceptor).
struct GrpcMetrics {
  metrics::CounterFamily calls;            // kiln_grpc_calls_total{method,code}
};

// The farm as the database and the shared CAS directory see it: exported by
// the leader only, so that a sum over controllers does not count it twice.
struct FarmMetrics {
  metrics::GaugeFamily queued;             // kiln_queue_depth{project,cluster}
  metrics::GaugeFamily workers;            // kiln_cluster_workers_connected{cluster}
  metrics::GaugeFamily slots;              // kiln_cluster_slots{cluster}
  metrics::GaugeFamily slots_busy;         // kiln_cluster_slots_busy{cluster}
  metrics::GaugeFamily unhealthy;          // kiln_cluster_workers_unhealthy{cluster}
  // kiln_cas_blobs, kiln_cas_stored_bytes: set by each collection (no
  // series before the first: a 0 would be a lie).
  metrics::GaugeFamily cas_blobs, cas_bytes;
  metrics::Gauge leader;                   // kiln_controller_leader (always exported: 1 on the leader)
};

// Remote actions in this controller's ActionBroker (each controller
// schedules over the workers connected to it, so a sum over controllers is
// the farm's). Labels: admin-made clusters and projects, and fixed outcome
// sets; never a worker (workers come and go with the autoscaler: which
// worker ran what is each worker's own kiln_worker_actions_total).
struct ActionMetrics {
  metrics::GaugeFamily queued;             // kiln_actions_queued{cluster,project}
  metrics::CounterFamily dispatched;       // kiln_actions_dispatched_total{cluster,project,host}
  metrics::CounterFamily finished;         // kiln_actions_finished_total{cluster,outcome}
  metrics::HistogramFamily queue_wait;     // kiln_action_queue_wait_seconds{cluster}
  metrics::HistogramFamily overhead;       // kiln_action_overhead_seconds{cluster}
};

// This controller's pool of database connections (pool="queue").
struct PoolMetrics {
  metrics::Gauge size, in_use, waiting;    // kiln_db_pool_connections, _in_use, kiln_db_pool_waiting
  metrics::Counter errors;                 // kiln_db_errors_total
};

// Cluster state: the autoscaler's decisions and the deployer's failures
// (this controller's, counted where they happen: a sum over controllers is
// the farm's), and each cluster's desired count (the leader's registry).
struct ClusterMetrics {
  metrics::CounterFamily decisions;     // kiln_autoscaler_decisions_total{cluster,action}
  metrics::CounterFamily failures;      // kiln_cluster_apply_failures_total{cluster}
  metrics::CounterFamily unregistered;  // kiln_cluster_workers_unregistered_total{cluster}
  metrics::GaugeFamily desired;         // kiln_cluster_desired_workers{cluster}
};

struct ControllerMetrics {
  metrics::Registry registry;  // this controller's own
  metrics::Registry farm;      // the leader's: FarmMetrics
  JobMetrics jobs;
  CompileMetrics compiles;
  CasMetrics cas;
  GrpcMetrics grpc;
  ActionMetrics actions;
  FarmMetrics farm_gauges;
  PoolMetrics pool;
  ClusterMetrics clusters;

  ControllerMetrics();
};

}  // namespace kiln::controller
