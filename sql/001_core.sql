-- kiln core schema: clusters, projects, workers, the build queue and job logs.
-- Applied by `kiln-controller migrate` inside one transaction under an advisory lock.

CREATE EXTENSION IF NOT EXISTS hstore;

CREATE TABLE clusters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE projects (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
    config      jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(config) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- updated_at is owned by the database: every UPDATE of a project stamps it,
-- whatever the client sends, and tells listening controllers.
CREATE FUNCTION kiln_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := clock_timestamp();
    RETURN NEW;
END $$;

CREATE TRIGGER projects_touch BEFORE UPDATE ON projects
    FOR EACH ROW EXECUTE FUNCTION kiln_touch_updated_at();

CREATE FUNCTION kiln_notify_config() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kiln_config', NEW.name);
    RETURN NULL;
END $$;

CREATE TRIGGER projects_notify AFTER INSERT OR UPDATE ON projects
    FOR EACH ROW EXECUTE FUNCTION kiln_notify_config();

CREATE TABLE cluster_projects (
    cluster_id  bigint NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
    project_id  bigint NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    PRIMARY KEY (cluster_id, project_id)
);
CREATE INDEX cluster_projects_project ON cluster_projects (project_id);

-- One row per worker process. The lease lives here, not on the jobs:
-- a heartbeat is one UPDATE of one row, however many jobs the worker runs.
CREATE TABLE workers (
    id                text PRIMARY KEY,
    cluster_id        bigint NOT NULL REFERENCES clusters(id),
    hostname          text NOT NULL,
    properties        jsonb NOT NULL,   -- arch, os and labels: what jobs may require
    slots             integer NOT NULL CHECK (slots >= 0),
    state             text NOT NULL CHECK (state IN ('connected', 'draining', 'disconnected', 'lost')),
    controller_id     text,             -- controller holding the worker's stream
    session           text,             -- changes on every registration: fences stale stream drops
    version           text NOT NULL DEFAULT '',
    registered_at     timestamptz NOT NULL DEFAULT now(),
    last_heartbeat    timestamptz NOT NULL DEFAULT now(),
    lease_expires_at  timestamptz NOT NULL
);
CREATE INDEX workers_live ON workers (cluster_id) WHERE state IN ('connected', 'draining');

CREATE TABLE build_jobs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id        bigint NOT NULL REFERENCES projects(id),
    cluster_id        bigint REFERENCES clusters(id),           -- optional pin
    priority          integer NOT NULL DEFAULT 0,
    status            text NOT NULL DEFAULT 'queued' CHECK (status IN
                        ('queued', 'setup', 'running', 'succeeded', 'failed', 'cancelled', 'lost')),
    attempt           integer NOT NULL DEFAULT 0,                -- the fencing token
    max_attempts      integer NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
    worker_id         text REFERENCES workers(id),          -- holder while setup/running; its lease is this job's lease
    request_id        text,
    requirements      jsonb NOT NULL DEFAULT '{"arch": "x86_64"}'::jsonb,
    spec              jsonb NOT NULL,                            -- argv, env, working_dir, timeout_s
    result            jsonb,                                     -- exit_code, term_signal, error, timed_out
    cancel_requested  boolean NOT NULL DEFAULT false,
    log_size          bigint NOT NULL DEFAULT 0,                 -- bytes stored for the current attempt
    submitted_at      timestamptz NOT NULL DEFAULT now(),
    queue_start_time  timestamptz NOT NULL DEFAULT now(),        -- place in line; kept on requeue
    started_at        timestamptz,
    finished_at       timestamptz
);

-- The dequeue reads only this index: its size is the queue's depth, not the table's.
CREATE INDEX build_jobs_queued ON build_jobs (priority DESC, queue_start_time, id)
    WHERE status = 'queued';
-- Jobs held by a worker: requeue on disconnect, lease reaping, heartbeats.
CREATE INDEX build_jobs_active ON build_jobs (worker_id) WHERE status IN ('setup', 'running');
CREATE UNIQUE INDEX build_jobs_request_id ON build_jobs (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX build_jobs_project ON build_jobs (project_id, id DESC);

-- Logs: chunks keyed by (job, attempt, byte offset within that attempt).
CREATE TABLE job_logs (
    job_id   bigint NOT NULL REFERENCES build_jobs(id) ON DELETE CASCADE,
    attempt  integer NOT NULL,
    off      bigint NOT NULL,
    data     bytea NOT NULL,
    PRIMARY KEY (job_id, attempt, off)
);

-- Wake-ups. A requeue wakes every controller's dispatcher. (A cancel of a
-- running job is sent by Queue::Cancel as NOTIFY kiln_cancel, on every
-- request, to reach the controller that holds the worker's stream.)
-- Submits do not notify from the INSERT: a transaction that NOTIFYs holds a
-- global lock while it commits, which would serialize submits (one fsync
-- each). The controller that took the submit wakes its own dispatcher and
-- sends one coalesced NOTIFY kiln_jobs for the others.
CREATE FUNCTION kiln_notify_queued() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('kiln_jobs', '');
    RETURN NULL;
END $$;

CREATE TRIGGER build_jobs_notify_requeue AFTER UPDATE OF status ON build_jobs
    FOR EACH ROW WHEN (NEW.status = 'queued' AND OLD.status <> 'queued')
    EXECUTE FUNCTION kiln_notify_queued();

INSERT INTO clusters (name) VALUES ('default');
INSERT INTO projects (name) VALUES ('default');
INSERT INTO cluster_projects SELECT c.id, p.id FROM clusters c, projects p;
