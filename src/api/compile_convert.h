#pragma once
// The compile record (cc/record.h) in kiln.proto v1 (worker <-> controller):
// the one conversion each way. Field for field; what a worker sends is
// checked by the controller after FromProto. The To* functions take the
// record by value and move its bytes into the message: pass an rvalue where
// the record is not needed after.

#include <cstdint>
#include <utility>
#include <vector>

#include "cc/record.h"
#include "kiln/v1/kiln.pb.h"

namespace kiln::api {

void ToProto(cc::KeyParts in, v1::CompileParts* out);
cc::KeyParts FromProto(const v1::CompileParts& in);

void ToProto(cc::CompileResult in, v1::CompileResult* out);
cc::CompileResult FromProto(const v1::CompileResult& in);

void ToProto(cc::CompileManifest in, v1::CompileManifest* out);
cc::CompileManifest FromProto(const v1::CompileManifest& in);

// key, parts, deps, result and manifest_only; job_id and attempt (whose run
// the store is for) are the caller's.
void ToProto(cc::CompileEntry in, v1::StoreCompileRequest* out);
cc::CompileEntry FromProto(const v1::StoreCompileRequest& in);

// A job's compile counts by kiln-cc's outcome names (hit, hit_preprocessed,
// miss, fallback, failed), for metrics.
std::vector<std::pair<const char*, int64_t>> UnitsByOutcome(const v1::CompileStats& n);

}  // namespace kiln::api
