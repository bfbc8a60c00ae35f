-- The farm's history, part 2: periodic samples of its state (queue depth,
-- slots, cache sizes), written by the controllers every sample_interval into
-- a table partitioned by day (native declarative partitioning: nothing to
-- preload, and one function below does all the maintenance there is).
-- docs/architecture.md, "History and kiln stats"; docs/operations.md,
-- "History in SQL".

-- One row per metric, label set and interval bucket. With several
-- controllers the primary key keeps one row per bucket, and the writer takes
-- a transaction-scoped advisory lock so only one of them computes it.
--   metric        cluster  project  value
--   queue_depth   c        p        queued jobs of p that cluster c may take
--   slots_total   c        ''       slots of c's connected and draining workers
--   slots_busy    c        ''       of them, held by jobs in setup or running
--   workers       c        ''       connected and draining workers of c
--   compile_cache_entries, compile_cache_bytes, action_cache_entries,
--   cas_blobs, cas_bytes   ''  ''   the caches' sizes (CAS: its last collection)
CREATE TABLE kiln_samples (
    at       timestamptz NOT NULL,   -- the start of the sample's interval bucket
    metric   text NOT NULL,
    cluster  text NOT NULL DEFAULT '',
    project  text NOT NULL DEFAULT '',
    value    double precision NOT NULL,
    PRIMARY KEY (metric, cluster, project, at)
) PARTITION BY RANGE (at);
CREATE INDEX kiln_samples_at ON kiln_samples (at);

-- The day partition of a time: kiln_samples_YYYYMMDD, [day, day + 1) in UTC.
CREATE FUNCTION kiln_samples_partition(day date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT 'kiln_samples_' || to_char(day, 'YYYYMMDD') $$;

-- Makes the partitions of the days from at_time's to days_ahead after it,
-- and drops those that ended `retention` or longer before at_time (NULL or
-- zero: none). Returns what it created and dropped, by name. Called by the
-- sampler under its advisory lock; a test may call it with another time.
CREATE FUNCTION kiln_samples_maintain(at_time timestamptz, days_ahead integer, retention interval)
RETURNS TABLE (action text, partition text)
LANGUAGE plpgsql AS $$
DECLARE
    first date := (at_time AT TIME ZONE 'UTC')::date;
    d date;
    name text;
    r record;
BEGIN
    FOR i IN 0 .. greatest(days_ahead, 0) LOOP
        d := first + i;
        name := kiln_samples_partition(d);
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF kiln_samples FOR VALUES FROM (%L) TO (%L)', name,
                           (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
            action := 'created';
            partition := name;
            RETURN NEXT;
        END IF;
    END LOOP;
    IF retention IS NULL OR retention <= interval '0' THEN
        RETURN;
    END IF;
    FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = 'kiln_samples'::regclass AND c.relname ~ '^kiln_samples_[0-9]{8}$'
              ORDER BY c.relname LOOP
        -- The partition's end: the day after its name's.
        IF (to_date(substr(r.relname, 14), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= at_time - retention THEN
            EXECUTE format('DROP TABLE %I', r.relname);
            action := 'dropped';
            partition := r.relname;
            RETURN NEXT;
        END IF;
    END LOOP;
END $$;

-- Today's and tomorrow's partitions, so that a farm samples from its start.
SELECT kiln_samples_maintain(now(), 1, NULL);

-- ---- views (docs/operations.md, "History in SQL") ----

-- The partitions that hold samples, oldest first, with their bounds.
CREATE VIEW kiln_sample_partitions AS
SELECT c.relname AS partition,
       (to_date(substr(c.relname, 14), 'YYYYMMDD')::timestamp AT TIME ZONE 'UTC') AS from_at,
       ((to_date(substr(c.relname, 14), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC') AS to_at
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = 'kiln_samples'::regclass
 ORDER BY c.relname;

-- Worker utilisation per cluster and sample: busy slots over total slots.
CREATE VIEW kiln_worker_utilisation AS
SELECT t.at, t.cluster, t.value AS slots_total, coalesce(b.value, 0) AS slots_busy,
       CASE WHEN t.value > 0 THEN coalesce(b.value, 0) / t.value END AS utilisation
  FROM kiln_samples t
  LEFT JOIN kiln_samples b ON b.metric = 'slots_busy' AND b.cluster = t.cluster AND b.project = '' AND b.at = t.at
 WHERE t.metric = 'slots_total' AND t.project = '';

-- Queue depth per sample, project and cluster.
CREATE VIEW kiln_queue_depth AS
SELECT at, project, cluster, value AS queued FROM kiln_samples WHERE metric = 'queue_depth';
