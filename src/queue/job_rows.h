#pragma once
// Internal to the queue's stores: how a job row is read back and how its
// JSON columns (spec, requirements, result) are encoded. Includes libpqxx;
// only the stores' sources include it.

#include <pqxx/pqxx>

#include <nlohmann/json.hpp>

#include <string>

#include "queue/types.h"

namespace kiln::queue::rows {

// Milliseconds since the epoch of a timestamptz column, 0 for NULL.
#define KILN_MS(col) "coalesce((extract(epoch FROM " col ") * 1000)::bigint, 0)"

// The removal of job `t`'s log as JSON text (RowToJob reads it).
#define KILN_LOG_REMOVAL(t)                                                                          \
  "jsonb_build_object('job', " t ".id, 'at', " KILN_MS(t ".log_removed_at") ","                           \
  " 'reason', coalesce(" t ".log_removed_reason, ''), 'detail', coalesce(" t ".log_removed_detail, ''),"  \
  " 'bytes', coalesce(" t ".log_bytes, 0))::text"

// Columns of a job as the stores return it; RowToJob reads them by index.
// Select them FROM kJobFrom (or an equivalent join named j, p, c).
inline constexpr const char* kJobColumns =
    "j.id, p.name, coalesce(c.name, ''), j.priority, j.status, j.attempt, j.max_attempts,"
    " coalesce(j.worker_id, ''), j.spec::text, j.requirements::text, coalesce(j.request_id, ''),"
    " " KILN_MS("j.submitted_at") ", " KILN_MS("j.queue_start_time") ", " KILN_MS("j.started_at") ","
    " " KILN_MS("j.finished_at") ", coalesce(j.result::text, ''), j.log_size, j.cancel_requested,"
    " coalesce((SELECT f.id FROM build_jobs f WHERE f.id = j.waits_for"
    "           AND f.status IN ('queued', 'setup', 'running')), 0),"
    // Its log's removal (sql/014), or its producer's for a job whose log is
    // another's (log_from): JSON, "" if none.
    " coalesce(CASE WHEN j.log_removed_at IS NOT NULL THEN " KILN_LOG_REMOVAL("j")
    "   WHEN j.log_from IS NOT NULL THEN (SELECT " KILN_LOG_REMOVAL("f") " FROM build_jobs f"
    "     WHERE f.id = j.log_from AND f.log_removed_at IS NOT NULL) END, '')";
inline constexpr int kJobColumnCount = 20;
inline constexpr const char* kJobFrom =
    " FROM build_jobs j JOIN projects p ON p.id = j.project_id LEFT JOIN clusters c ON c.id = j.cluster_id ";

// The spec and requirements columns <-> JobSpec.
JobSpec SpecFromJson(const std::string& spec_text, const std::string& requirements_text);
std::string SpecToJson(const JobSpec& s);
std::string RequirementsToJson(const JobSpec& s);
// The result column <-> JobResult.
nlohmann::json ResultToJson(const JobResult& r);
JobResult ResultFromJson(const std::string& text);

// A status column; throws (caught by the pool as Internal) on a value the
// schema's CHECK constraint should have refused.
JobStatus StatusOf(const pqxx::field& f);
// A row of kJobColumns.
Job RowToJob(const pqxx::row& r);

}  // namespace kiln::queue::rows
