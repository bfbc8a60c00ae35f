-- The action cache: the result of a successful job, keyed by its action
-- digest (docs/architecture.md, "Action cache") within a scope (the project,
-- or a scope projects that trust each other share). Written only from a
-- worker's report, in the statement that completes the job; read at submit.
CREATE TABLE action_cache (
    scope       text NOT NULL,
    digest      text NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
    job_id      bigint NOT NULL REFERENCES build_jobs(id) ON DELETE CASCADE,  -- the run that produced it
    result      jsonb NOT NULL,                  -- exit_code 0, output_root (the log is the job's)
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_used   timestamptz NOT NULL DEFAULT now(),
    hits        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, digest)
);
CREATE INDEX action_cache_last_used ON action_cache (last_used);
CREATE INDEX action_cache_job ON action_cache (job_id);  -- the cascade of a job purge

-- Per job: its action digest and scope (NULL: not cacheable, e.g. no image),
-- the identical job in flight it waits for (in-flight de-duplication), and,
-- for a job served from the cache, whose log (job, attempt) is its log: the
-- log is referenced, not copied.
ALTER TABLE build_jobs
    ADD COLUMN action_digest    text,
    ADD COLUMN cache_scope      text,
    ADD COLUMN waits_for        bigint REFERENCES build_jobs(id) ON DELETE SET NULL,
    ADD COLUMN log_from         bigint REFERENCES build_jobs(id) ON DELETE SET NULL,
    ADD COLUMN log_from_attempt integer;
-- Leaders an identical submit may wait for.
CREATE INDEX build_jobs_in_flight ON build_jobs (cache_scope, action_digest, id)
    WHERE status IN ('queued', 'setup', 'running') AND action_digest IS NOT NULL AND waits_for IS NULL;
CREATE INDEX build_jobs_waiters ON build_jobs (waits_for) WHERE waits_for IS NOT NULL;
CREATE INDEX build_jobs_log_from ON build_jobs (log_from) WHERE log_from IS NOT NULL;

-- The collector keeps the outputs of every cache entry.
CREATE OR REPLACE FUNCTION kiln_cas_live_roots(output_retention interval) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT spec->>'input_root' FROM build_jobs
     WHERE status IN ('queued', 'setup', 'running') AND spec ? 'input_root'
    UNION
    SELECT result->>'output_root' FROM build_jobs
     WHERE result ? 'output_root' AND finished_at > now() - output_retention
    UNION
    SELECT result->>'output_root' FROM action_cache WHERE result ? 'output_root'
$$;
