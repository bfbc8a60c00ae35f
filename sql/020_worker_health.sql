-- Cluster state (issue 27): each worker's health and where it works.
--   health         healthy or unhealthy: an unhealthy worker takes no new jobs
--                  and no actions; it returns to service when its checks have
--                  passed for a while (the controller decides, not the worker)
--   health_reason  why it is unhealthy ('' when healthy), e.g.
--                  "free disk in work_dir 12 MB below 1024 MB"
--   health_since   when health last changed
--   health_report  the worker's last report (free disk per store, runc check,
--                  load, clock skew) and the controller's failure counts
--   work_dir       the worker's work directory: with several workers on one
--                  host, what identifies "the same worker again" after a
--                  restart (its dead workspace rows), not the hostname
ALTER TABLE workers
  ADD COLUMN health text NOT NULL DEFAULT 'healthy' CHECK (health IN ('healthy', 'unhealthy')),
  ADD COLUMN health_reason text NOT NULL DEFAULT '',
  ADD COLUMN health_since timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN health_report jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(health_report) = 'object'),
  ADD COLUMN work_dir text NOT NULL DEFAULT '';
