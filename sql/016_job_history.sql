-- The farm's history, part 1: where each job's time went (docs/architecture.md,
-- "History and kiln stats"; the views are documented in docs/operations.md,
-- "History in SQL"). The timings ride in the statement that stores a
-- worker's final report (queue::DispatchStore's apply_updates): no extra
-- round trip per job.

-- When a claim handed the job to a worker (its latest attempt). The claim
-- already rewrites the row; one more column costs no extra write.
ALTER TABLE build_jobs ADD COLUMN assigned_at timestamptz;

-- Ended jobs by when they ended: every window of kiln stats and of the views.
-- Only ended jobs: a submit or a claim does not write this index.
CREATE INDEX build_jobs_finished ON build_jobs (finished_at) WHERE finished_at IS NOT NULL;

-- One row per job that ran on a worker to its final report (succeeded,
-- failed or cancelled there). Times are the worker's clock except queued_at
-- and assigned_at (the database's); a phase that did not happen is NULL.
-- Jobs served from the action cache, cancelled while queued or lost have no
-- row: build_jobs says what happened to them.
CREATE TABLE job_timings (
    job_id       bigint PRIMARY KEY REFERENCES build_jobs(id) ON DELETE CASCADE,
    attempt      integer NOT NULL,
    worker_id    text NOT NULL,
    cluster      text NOT NULL,               -- the worker's cluster when the job ended
    queued_at    timestamptz NOT NULL,        -- its place in line (queue_start_time)
    assigned_at  timestamptz,                 -- claimed for the worker
    received_at  timestamptz,                 -- the worker took the assignment
    inputs_at    timestamptz,                 -- its input tree (or warm workspace) was ready
    image_at     timestamptz,                 -- its image was unpacked (container jobs)
    running_at   timestamptz,                 -- the build's process started
    ended_at     timestamptz,                 -- the build's process ended
    finished_at  timestamptz NOT NULL,        -- reported: outputs uploaded
    input_bytes  bigint NOT NULL DEFAULT 0 CHECK (input_bytes >= 0),   -- fetched from CAS for its inputs
    output_bytes bigint NOT NULL DEFAULT 0 CHECK (output_bytes >= 0),  -- uploaded to CAS as outputs
    log_bytes    bigint NOT NULL DEFAULT 0 CHECK (log_bytes >= 0)      -- its log, this attempt
);
CREATE INDEX job_timings_finished ON job_timings (finished_at);

-- The recorded compile time of the compile cache entries a job's run was
-- served (its distinct result keys), summed when the run's statistics are
-- recorded: what the compile cache saved it.
ALTER TABLE compile_stats ADD COLUMN hit_compile_ms bigint NOT NULL DEFAULT 0;

-- unix ms (0: none) as a time.
CREATE FUNCTION kiln_ms(ms bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN ms > 0 THEN to_timestamp(ms / 1000.0) END $$;

-- Seconds between two times (NULL if either is).
CREATE FUNCTION kiln_seconds(a timestamptz, b timestamptz) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$ SELECT extract(epoch FROM b - a)::double precision $$;

-- ---- views (docs/operations.md, "History in SQL") ----

-- Every ended job: its outcome, phases in seconds, bytes and compile cache
-- summary. Filter on finished_at (indexed) and project.
--   outcome: succeeded, failed, cancelled, lost, or cached (served from the
--            action cache: at submit, or by waiting for an identical job)
--   queue_wait_s: queued -> assigned (NULL: never assigned, or cached)
--   run_s: the build's process, started -> ended (NULL: it never ran here)
CREATE VIEW kiln_job_history AS
SELECT j.id AS job_id,
       p.name AS project,
       coalesce(t.cluster, pin.name) AS cluster,
       j.worker_id,
       CASE WHEN j.result ? 'cached_from' THEN 'cached' ELSE j.status END AS outcome,
       (j.result->>'cached_from')::bigint AS cached_from,
       j.action_digest IS NOT NULL AS cacheable,
       j.submitted_at, j.queue_start_time AS queued_at,
       CASE WHEN NOT j.result ? 'cached_from' THEN j.assigned_at END AS assigned_at,
       t.received_at, t.inputs_at, t.image_at,
       CASE WHEN NOT j.result ? 'cached_from' THEN j.started_at END AS running_at,
       t.ended_at, j.finished_at,
       CASE WHEN NOT j.result ? 'cached_from' THEN kiln_seconds(j.queue_start_time, j.assigned_at) END
           AS queue_wait_s,
       kiln_seconds(t.received_at, t.inputs_at) AS inputs_s,
       kiln_seconds(coalesce(t.inputs_at, t.received_at), t.image_at) AS image_s,
       CASE WHEN t.job_id IS NOT NULL THEN kiln_seconds(j.started_at, coalesce(t.ended_at, j.finished_at)) END
           AS run_s,
       kiln_seconds(t.ended_at, t.finished_at) AS upload_s,
       t.input_bytes, t.output_bytes, t.log_bytes,
       cs.units AS cc_units,
       cs.hits + cs.hits_preprocessed AS cc_hits,
       cs.misses AS cc_misses,
       cs.failed AS cc_failed,
       cs.fallbacks AS cc_fallbacks,
       cs.hit_compile_ms / 1000.0 AS cc_saved_s,
       cs.compile_ms / 1000.0 AS cc_compile_s
  FROM build_jobs j
  JOIN projects p ON p.id = j.project_id
  LEFT JOIN clusters pin ON pin.id = j.cluster_id
  LEFT JOIN job_timings t ON t.job_id = j.id
  LEFT JOIN compile_stats cs ON cs.job_id = j.id
 WHERE j.finished_at IS NOT NULL;

-- What the caches saved each ended job: a job served from the action cache
-- saved the recorded run time of the job whose run produced its result; a
-- job that ran saved the recorded compile time of every unit the compile
-- cache served it.
CREATE VIEW kiln_cache_savings AS
SELECT h.job_id, h.project, h.finished_at, h.outcome,
       CASE WHEN h.outcome = 'cached' THEN coalesce(src.run_s, 0) ELSE 0 END AS action_cache_saved_s,
       coalesce(h.cc_saved_s, 0) AS compile_cache_saved_s
  FROM kiln_job_history h
  LEFT JOIN LATERAL (SELECT s.run_s FROM kiln_job_history s WHERE s.job_id = h.cached_from) src ON true;

-- Compiles the compile cache recorded (one row per cached result), with the
-- source they compiled: the slowest units.
CREATE VIEW kiln_unit_compiles AS
SELECT r.created_at, p.name AS project, r.scope, m.source, m.output, r.compile_ms / 1000.0 AS compile_s, r.job_id
  FROM compile_results r
  JOIN build_jobs j ON j.id = r.job_id
  JOIN projects p ON p.id = j.project_id
  JOIN LATERAL (SELECT source, output FROM compile_manifests m
                 WHERE m.scope = r.scope AND m.result_key = r.key ORDER BY m.id LIMIT 1) m ON true;

-- Translation units that did not hit the compile cache in a job's run, with
-- why: the most-missed units. recorded_at is when the run was recorded.
CREATE VIEW kiln_unit_misses AS
SELECT s.recorded_at, p.name AS project, e.job_id, e.source, e.output, e.outcome, e.reason, e.detail
  FROM compile_events e
  JOIN compile_stats s ON s.job_id = e.job_id
  JOIN build_jobs j ON j.id = e.job_id
  JOIN projects p ON p.id = j.project_id
 WHERE e.outcome = 'miss';
