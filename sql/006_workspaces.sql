-- Warm workspaces (docs/architecture.md, "Warm workspaces"): which worker
-- holds a project's workspace of a given name, and the input tree it holds.
-- Written from the workers' reports; read by the claim (locality) and by
-- kiln workspace list.
CREATE TABLE workspaces (
    project_id  bigint NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (name <> ''),
    worker_id   text NOT NULL REFERENCES workers(id) ON DELETE CASCADE,
    root        text NOT NULL DEFAULT '',   -- "<hex>/<size>" of the input tree it holds
    bytes       bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    removed     boolean NOT NULL DEFAULT false,  -- kiln workspace rm: the worker was told to delete it
    PRIMARY KEY (project_id, name, worker_id)
);

-- A job that runs in a persistent workspace names it here (NULL: a fresh
-- directory); the claim prefers the worker that holds it.
ALTER TABLE build_jobs ADD COLUMN workspace text;
