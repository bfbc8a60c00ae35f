-- A request id is unique within its project, not across the farm: a
-- predictable CI id (ci-build-42) could be taken first by another project,
-- and re-using another project's id revealed that project's job number.
-- The old index guaranteed global uniqueness, so every existing row fits.
DROP INDEX build_jobs_request_id;
CREATE UNIQUE INDEX build_jobs_project_request_id ON build_jobs (project_id, request_id)
    WHERE request_id IS NOT NULL;
