-- Content-addressed storage: the directory nodes of Merkle trees, as hstore.
-- (File contents live in the controller's CAS directory, not here.)
CREATE EXTENSION IF NOT EXISTS hstore;

-- One row per directory node, keyed by the sha256 of its canonical encoding
-- (docs/architecture.md). entries: child name -> "f:<hex>/<size>" (file),
-- "x:<hex>/<size>" (executable file), "d:<hex>/<size>" (directory),
-- "l:<target>" (symlink). Rows never change; inserting one that exists is a
-- no-op. last_used is refreshed when a client finds the node present, so a
-- node about to be referenced by a submit is not collected meanwhile.
CREATE TABLE cas_trees (
    digest     text PRIMARY KEY CHECK (digest ~ '^[0-9a-f]{64}$'),
    size       integer NOT NULL CHECK (size >= 0),
    entries    hstore NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used  timestamptz NOT NULL DEFAULT now()
);

-- Finished jobs with outputs, for the collector's retention window.
CREATE INDEX build_jobs_outputs ON build_jobs (finished_at) WHERE result ? 'output_root';

-- The tree roots whose nodes and blobs the collector must keep: input trees
-- of jobs that have not ended, output trees of jobs that ended within the
-- retention window. The action cache adds its entries here (CREATE OR
-- REPLACE in its migration). Values are "<hex>/<size>".
CREATE FUNCTION kiln_cas_live_roots(output_retention interval) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT spec->>'input_root' FROM build_jobs
     WHERE status IN ('queued', 'setup', 'running') AND spec ? 'input_root'
    UNION
    SELECT result->>'output_root' FROM build_jobs
     WHERE result ? 'output_root' AND finished_at > now() - output_retention
$$;
