-- Log quotas (docs/architecture.md, "Log quotas"): stored logs have a
-- per-project retention and byte caps, per project and for the farm. The
-- controllers' pruning pass removes the logs of ended jobs, oldest first;
-- never the log of a job that has not ended, whose writes are never refused
-- for a quota (a job's own cap stays the worker's max_log_bytes).
ALTER TABLE build_jobs
    -- The bytes of every attempt's log in job_logs, counted once by the
    -- pruning pass after the job ended (NULL: not counted yet). Log writes
    -- do not touch it (nor any other indexed column), so they stay HOT
    -- updates.
    ADD COLUMN log_bytes          bigint,
    -- Set when the pruning pass removed the job's log: when, why (the rule)
    -- and what the user is told ("older than project web's log_retention of 30d").
    ADD COLUMN log_removed_at     timestamptz,
    ADD COLUMN log_removed_reason text
        CHECK (log_removed_reason IN ('retention', 'project_log_max_bytes', 'log_max_bytes')),
    ADD COLUMN log_removed_detail text;

-- Ended jobs whose log is not counted yet (every ended job once, then never).
CREATE INDEX build_jobs_log_uncounted ON build_jobs (id)
    WHERE log_bytes IS NULL AND finished_at IS NOT NULL;
-- Ended jobs with a stored log, per project, oldest first: the retention and
-- the project's cap (its sum is an index-only scan of what is kept).
CREATE INDEX build_jobs_log_kept ON build_jobs (project_id, finished_at, id) INCLUDE (log_bytes)
    WHERE log_bytes > 0 AND log_removed_at IS NULL;
-- The same across projects: the farm's total cap.
CREATE INDEX build_jobs_log_kept_age ON build_jobs (finished_at, id) INCLUDE (log_bytes)
    WHERE log_bytes > 0 AND log_removed_at IS NULL;
