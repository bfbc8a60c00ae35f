-- The compile cache (docs/architecture.md, "Compile cache"): one entry per
-- translation unit result, named by its result key (which hashes the
-- preprocessed source), and manifests under direct keys (which hash the
-- source itself) listing the files a compile read, with their digests.
-- Written by workers on behalf of a running job, in the job's scope.
CREATE TABLE compile_results (
    scope       text NOT NULL,
    key         text NOT NULL CHECK (key ~ '^[0-9a-f]{64}$'),
    object_hash text NOT NULL CHECK (object_hash ~ '^[0-9a-f]{64}$'),  -- the object file, in CAS
    object_size bigint NOT NULL CHECK (object_size >= 0),
    depfile     bytea NOT NULL DEFAULT '',   -- the dependency file the build asked for
    stdout      bytea NOT NULL DEFAULT '',
    stderr      bytea NOT NULL DEFAULT '',   -- diagnostics, replayed on a hit
    compile_ms  bigint NOT NULL DEFAULT 0,
    job_id      bigint,                      -- the job that compiled it (entries outlive jobs: no reference)
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_used   timestamptz NOT NULL DEFAULT now(),   -- recorded at most every 10 minutes
    PRIMARY KEY (scope, key)
);
CREATE INDEX compile_results_last_used ON compile_results (last_used);

CREATE TABLE compile_manifests (
    id          bigserial PRIMARY KEY,
    scope       text NOT NULL,
    key         text NOT NULL CHECK (key ~ '^[0-9a-f]{64}$'),  -- the direct key
    deps_digest text NOT NULL,
    -- "hstore: Merkle tree of dependencies and their hashes": path ->
    -- f:<hex>/<size> (a writable file), i (in the image), d (a directory a
    -- ".." left), - (must not exist: it would shadow a header found later).
    deps        hstore NOT NULL,
    deps_packed text NOT NULL,                -- the same entries as one string (PackDeps), read by lookups
    result_key  text NOT NULL,
    source      text NOT NULL,               -- as given to the compiler
    output      text NOT NULL,
    parts       jsonb NOT NULL,              -- what the keys hashed, for miss reasons
    job_id      bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_used   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (scope, key, deps_digest),
    FOREIGN KEY (scope, result_key) REFERENCES compile_results (scope, key) ON DELETE CASCADE
);
-- "Which cached translation units include this header?" (kiln cache impact).
CREATE INDEX compile_manifests_deps ON compile_manifests USING gin (deps);
-- The nearest earlier compile of a source (why a compile missed).
CREATE INDEX compile_manifests_source ON compile_manifests (scope, source, id);
CREATE INDEX compile_manifests_result ON compile_manifests (scope, result_key);

-- What the compile cache did in a job's run (its latest attempt).
CREATE TABLE compile_stats (
    job_id            bigint PRIMARY KEY REFERENCES build_jobs(id) ON DELETE CASCADE,
    attempt           integer NOT NULL,
    units             integer NOT NULL DEFAULT 0,
    hits              integer NOT NULL DEFAULT 0,
    hits_preprocessed integer NOT NULL DEFAULT 0,
    misses            integer NOT NULL DEFAULT 0,
    fallbacks         integer NOT NULL DEFAULT 0,
    failed            integer NOT NULL DEFAULT 0,
    saved_ms          bigint NOT NULL DEFAULT 0,
    compile_ms        bigint NOT NULL DEFAULT 0,
    bytes_served      bigint NOT NULL DEFAULT 0,
    bytes_stored      bigint NOT NULL DEFAULT 0,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX compile_stats_recorded ON compile_stats (recorded_at);
-- Its translation units that did not hit, with the reason.
CREATE TABLE compile_events (
    job_id  bigint NOT NULL REFERENCES build_jobs(id) ON DELETE CASCADE,
    seq     integer NOT NULL,
    source  text NOT NULL,
    output  text NOT NULL,
    outcome text NOT NULL,                   -- miss, hit_preprocessed, fallback, failed
    reason  text NOT NULL,
    detail  text NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- The collector keeps every object a compile cache entry names.
CREATE OR REPLACE FUNCTION kiln_cas_live_blobs() RETURNS SETOF text
LANGUAGE sql STABLE AS $$
    SELECT digest FROM images
    UNION
    SELECT split_part(config, '/', 1) FROM images
    UNION
    SELECT split_part(l->>'digest', '/', 1) FROM images, jsonb_array_elements(layers) l
    UNION
    SELECT object_hash FROM compile_results
$$;
