-- When a job last went back in line (a requeue: its worker lost, an
-- infrastructure failure, a hand-back), so that the dispatch latency
-- (kiln_job_dispatch_latency_seconds) of a requeued job is its wait in line
-- since then, not since its submit. NULL: never requeued (its wait counts
-- from submitted_at). Set by a trigger, so that no requeue statement can
-- forget it; its WHEN is checked without calling the function, so other
-- updates pay nothing.
ALTER TABLE build_jobs ADD COLUMN requeued_at timestamptz;

CREATE FUNCTION kiln_mark_requeued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.requeued_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER build_jobs_mark_requeued BEFORE UPDATE OF status ON build_jobs
    FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status <> 'queued')
    EXECUTE FUNCTION kiln_mark_requeued();
