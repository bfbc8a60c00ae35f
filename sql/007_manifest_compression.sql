-- A manifest's two copies of its entries (deps, deps_packed: some 150
-- paths and digests, 20 KB, for a PostgreSQL unit) are compressed with lz4,
-- not pglz: storing 1,200 such manifests took 0.3 s of the server's CPU
-- with lz4 and 0.7 s with pglz, and pglz gave up on the hstore (stored it
-- whole). Only rows written from now on change. A server built without lz4
-- keeps pglz.
DO $$
BEGIN
    ALTER TABLE compile_manifests ALTER COLUMN deps SET COMPRESSION lz4,
                                  ALTER COLUMN deps_packed SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'this PostgreSQL has no lz4: compile cache manifests stay compressed with pglz';
END
$$;
