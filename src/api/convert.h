#pragma once
// Conversions between queue types and the protobuf messages of kiln.proto,
// and between Status and grpc::Status.

#include <grpcpp/support/status.h>

#include "cas/tree.h"
#include "common/status.h"
#include "kiln/v1/kiln.pb.h"
#include "queue/types.h"

namespace kiln::api {

v1::JobStatus ToProto(queue::JobStatus s);
// QUEUED..LOST map over; UNSPECIFIED and unknown values give nullopt.
std::optional<queue::JobStatus> FromProto(v1::JobStatus s);

// "<hex>/<size>", the form kept in job specs and results.
std::string DigestKey(const v1::Digest& d);
void DigestToProto(const std::string& key, v1::Digest* out);
v1::Digest ToProto(const cas::Digest& d);
cas::Digest FromProto(const v1::Digest& d);

void ToProto(const cas::Directory& in, v1::Directory* out);
// Checks kinds and the fields each kind allows; names and order are checked
// by cas::CheckDirectory. `where` names the node in errors.
Result<cas::Directory> FromProto(const v1::Directory& in, const std::string& where);

void ToProto(const queue::JobSpec& in, v1::JobSpec* out);
queue::JobSpec FromProto(const v1::JobSpec& in);
void ToProto(const queue::JobResult& in, v1::JobResult* out);
queue::JobResult FromProto(const v1::JobResult& in);
// A final report's timings, with its log size (JobUpdate.log_size).
queue::JobTimings FromProto(const v1::JobTimings& in, int64_t log_bytes);
void ToProto(const queue::Job& in, v1::Job* out);
void ToProto(const queue::WorkerRow& in, v1::WorkerInfo* out);
void ToProto(const queue::ProjectRow& in, v1::Project* out);
void ToProto(const queue::ClusterRow& in, v1::Cluster* out);
void ToProto(const queue::CacheScopeRow& in, v1::CacheScope* out);

grpc::Status ToGrpc(const Status& s);
Status FromGrpc(const grpc::Status& s);

// "queued", "running", ... for a proto status (for CLI output).
const char* StatusName(v1::JobStatus s);

}  // namespace kiln::api
