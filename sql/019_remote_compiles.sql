-- Remote actions (docs/architecture.md, "Remote actions"): how many of a
-- job's compile cache misses compiled on other workers, for how long, and
-- where each one did (kiln why). Actions themselves have no table: they
-- live in the controller's memory, the job row being the durable part.
ALTER TABLE compile_stats
  ADD COLUMN remote integer NOT NULL DEFAULT 0,
  ADD COLUMN remote_ms bigint NOT NULL DEFAULT 0;
ALTER TABLE compile_events
  ADD COLUMN remote_worker text NOT NULL DEFAULT '',
  ADD COLUMN remote_ms bigint NOT NULL DEFAULT 0,      -- the remote compile as the job waited for it
  ADD COLUMN remote_run_ms bigint NOT NULL DEFAULT 0;  -- of which its own run on the other worker
