#pragma once
// Rendering for humans (tables, times, job outcomes) and for machines
// (protobuf messages as JSON with proto field names).

#include <google/protobuf/message.h>
#include <google/protobuf/repeated_ptr_field.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "kiln/v1/kiln.pb.h"

namespace kiln::cli {

// Pretty JSON of a message: proto field names, fields at their default values included.
std::string ToJson(const google::protobuf::Message& m);

// Pretty JSON array of messages.
std::string ToJsonArray(const std::vector<const google::protobuf::Message*>& ms);
template <typename T>
std::string ToJsonArray(const google::protobuf::RepeatedPtrField<T>& items) {
  std::vector<const google::protobuf::Message*> ms;
  for (const auto& i : items) ms.push_back(&i);
  return ToJsonArray(ms);
}

// Re-indents a JSON document for display; returns the text unchanged if it is not JSON.
std::string PrettyJson(const std::string& text);

// Columns aligned on the widest cell; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::FILE* out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

// "queued", "running", ... ("unknown" for anything else).
std::string JobStatusName(v1::JobStatus s);
// True for SUCCEEDED, FAILED, CANCELLED and LOST.
bool IsTerminal(v1::JobStatus s);

// Local time "2024-05-01 14:03:07"; "-" for 0.
std::string FormatTime(int64_t unix_ms);
// Time since unix_ms, coarse: "42s", "5m", "3h", "2d"; "-" for 0.
std::string FormatAge(int64_t unix_ms, int64_t now_ms);

// "1,234"
std::string FormatCount(int64_t n);
// "0.42s", "12.3s", "5m 12s", "2h 3m"
std::string HumanDuration(int64_t ms);
// part of whole: "12.5%"; "-" when whole is not positive.
std::string FormatPercent(int64_t part, int64_t whole);

// argv joined by spaces, arguments quoted for a POSIX shell where needed.
std::string CommandLine(const v1::JobSpec& spec);
// s cut to at most `width` characters, ending in "..." when cut.
std::string Truncate(const std::string& s, size_t width);
// "k=v,k2=v2" of a map, in key order.
std::string JoinMap(const google::protobuf::Map<std::string, std::string>& m);

// One line of an audit row's change (a JSON object), at most `width`
// characters, control bytes escaped: "role=submit, projects=[web], ttl_s=0";
// for an old and a new document, the keys that differ: "timeout_s: 60 -> 120".
std::string ChangeSummary(const std::string& change_json, size_t width);

// How a finished job ended: "succeeded in 1.2 s", "failed: exit code 3",
// "failed: timed out after 10 s", "failed: killed by signal 9 (SIGKILL)",
// "cancelled", "lost: <error>".
std::string DescribeOutcome(const v1::Job& job);

// "" if the job's log is stored, else what became of it: "the log of job 7
// was removed (older than project web's log_retention of 30d)"; for a job
// whose log was another's (served from the action cache), "the log of job 7
// (which produced job 9's result) was removed (...)". With now_ms > 0, how
// long ago ("was removed 3h ago").
std::string DescribeLogRemoved(const v1::Job& job, int64_t now_ms = 0);

}  // namespace kiln::cli
