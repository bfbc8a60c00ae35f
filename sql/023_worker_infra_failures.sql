-- Infrastructure failures per worker (issue 27, item 2), kept with the
-- worker so that a reconnect, another controller or a restart does not
-- forget them: the unix time in ms of each job whose setup failed for the
-- worker's own reasons (reported as infrastructure), and of each loss of
-- jobs with the worker (its stream broke while jobs ran: one per loss,
-- whatever the number of jobs; a lease that expired is not counted, as the
-- controllers or the database may have been away); newest last, at most
-- 64. The health checker counts those within health_infra_window
-- (health_max_infra_failures).
--   infra_last   what the last one was
ALTER TABLE workers
  ADD COLUMN infra_failures bigint[] NOT NULL DEFAULT '{}',
  ADD COLUMN infra_last text NOT NULL DEFAULT '';

-- failures with n more, now, appended (the newest 64 kept).
CREATE FUNCTION kiln_infra_append(failures bigint[], n bigint) RETURNS bigint[]
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN n <= 0 THEN failures ELSE
    (SELECT f[greatest(1, cardinality(f) - 63):]
       FROM (SELECT failures || array_fill((extract(epoch FROM now()) * 1000)::bigint, ARRAY[least(n, 64)::int]) AS f) x)
  END
$$;
