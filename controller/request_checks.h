#pragma once
// The checks of what a worker sends the controller that need no store: each
// runs before anything of the message reaches SQL or a log line, and says
// what is wrong naming the field. Pure (no database, no network), so that
// tests/fuzz can run them on any bytes.

#include <cstdint>
#include <string>

#include "cc/record.h"
#include "common/status.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::controller {

// A worker's registration: ids, host, arch, os and labels are text without
// control characters (common/text.h), the cluster a catalog name.
// InvalidArgument naming the field otherwise.
Status ValidateRegister(const v1::WorkerRegister& r);

// A job's result as a worker reports it (stored as JSON, so no NUL).
// InvalidArgument naming the field otherwise.
Status ValidateResult(const v1::JobResult& r);

// A job update: a status a worker may report (not SETUP or LOST), times of
// this millennium, and a valid result if it has one. InvalidArgument saying
// which otherwise.
Status ValidateUpdate(const v1::JobUpdate& u);

// A final report's phase timings (JobUpdate.timings), if it has them: only
// with a final status, byte counts within 0..1 PiB, the phases' times
// (received, inputs, image, started, ended, finished; 0 for one that did not
// happen) in that order, none more than 400 days after the one before, and a
// finish time. InvalidArgument naming the first bad value otherwise: the
// report is applied without them.
Status ValidateTimings(const v1::JobUpdate& u);

// A log chunk: its offset within 1 PiB, at most 4 MiB of data.
// InvalidArgument otherwise.
Status ValidateLogChunk(const v1::LogChunk& l);

// A warm workspace a worker reports holding: project and workspace names
// valid, bytes not negative, its root a well-formed digest.
bool ValidWorkspace(const v1::WorkspaceReport& ws);

// The attempt a compile cache call is for: both positive, else InvalidArgument.
Status CheckJobRef(int64_t job_id, int attempt);
// A compile cache key: 64 lowercase hex digits, else InvalidArgument naming `what`.
Status CheckCompileKey(const std::string& k, const std::string& what);
// A path (kMaxCompilePath) or other text of a compile: at most `max` bytes
// of valid UTF-8 without NUL, else InvalidArgument naming `what`.
constexpr size_t kMaxCompilePath = 4096;
Status CheckCompileText(const std::string& s, size_t max, const std::string& what);
// What StoreCompile stores (after api::FromProto): both keys, the manifest
// (cc::CheckManifestEntries), source and output, at most 1 MiB of compiler
// output and 16 MiB of dependency file, the object's digest unless
// manifest_only, at most 100,000 arguments. InvalidArgument naming the
// first bad part. (That the object is in CAS is the caller's check.)
Status CheckStoreCompile(const cc::CompileEntry& e);

// A remote action (from the worker that asks for it, and again on the one
// that runs it): argv[0] an absolute path, the image a digest, every path
// relative and normalized, inputs with valid digests, no NUL in argv or
// env, bounded counts. InvalidArgument naming the first bad part.
Status ValidateAction(const v1::Action& a);

}  // namespace kiln::controller
