-- Secret environment values of jobs (kiln submit --secret-env), sealed by
-- the controllers' secrets key (AES-256-GCM, tls_dir/secrets.key): the
-- database never holds a value in clear, not even in WAL or dead tuples.
-- A row lives while its job may still run: it goes when the job ends.
CREATE TABLE job_secrets (
    job_id  bigint PRIMARY KEY REFERENCES build_jobs(id) ON DELETE CASCADE,
    sealed  bytea NOT NULL
);

CREATE FUNCTION kiln_drop_job_secrets() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_secrets WHERE job_id = NEW.id;
    RETURN NULL;
END $$;

-- Only jobs that have secrets pay for the trigger (their spec names them).
CREATE TRIGGER build_jobs_drop_secrets AFTER UPDATE OF status ON build_jobs
    FOR EACH ROW WHEN (NEW.status IN ('succeeded', 'failed', 'cancelled', 'lost')
                       AND OLD.status NOT IN ('succeeded', 'failed', 'cancelled', 'lost')
                       AND NEW.spec ? 'secret_env')
    EXECUTE FUNCTION kiln_drop_job_secrets();
