#include "cli/output.h"

#include "api/convert.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/text.h"
#include "common/util.h"

namespace kiln::cli {
namespace {

nlohmann::ordered_json JsonOf(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  std::string out;
  auto s = google::protobuf::util::MessageToJsonString(m, &out, opts);
  // Serializing a well-formed message cannot fail; keep the message if it does.
  if (!s.ok()) return nlohmann::ordered_json{{"error", std::string(s.message())}};
  return nlohmann::ordered_json::parse(out);
}

}  // namespace

std::string ToJson(const google::protobuf::Message& m) { return JsonOf(m).dump(2); }

std::string ToJsonArray(const std::vector<const google::protobuf::Message*>& ms) {
  auto arr = nlohmann::ordered_json::array();
  for (const auto* m : ms) arr.push_back(JsonOf(*m));
  return arr.dump(2);
}

std::string PrettyJson(const std::string& text) {
  auto j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return text;
  return j.dump(2);
}

void Table::Print(std::FILE* out) const {
  std::vector<size_t> width;
  for (const auto& row : rows_) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows_) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::fprintf(out, "%s\n", line.c_str());
  }
}

std::string JobStatusName(v1::JobStatus s) { return api::StatusName(s); }

bool IsTerminal(v1::JobStatus s) {
  auto q = api::FromProto(s);
  return q && queue::IsTerminal(*q);
}

std::string FormatTime(int64_t unix_ms) {
  if (unix_ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string FormatAge(int64_t unix_ms, int64_t now_ms) {
  if (unix_ms <= 0) return "-";
  int64_t s = std::max<int64_t>(0, (now_ms - unix_ms) / 1000);
  if (s < 60) return std::to_string(s) + "s";
  if (s < 3600) return std::to_string(s / 60) + "m";
  if (s < 86400) return std::to_string(s / 3600) + "h";
  return std::to_string(s / 86400) + "d";
}

std::string CommandLine(const v1::JobSpec& spec) {
  std::string out;
  for (const auto& a : spec.argv()) {
    if (!out.empty()) out += ' ';
    bool plain = !a.empty() && std::all_of(a.begin(), a.end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) || std::strchr("-_./=:,+@%", ch) != nullptr;
    });
    if (plain) {
      out += a;
      continue;
    }
    out += '\'';
    for (char ch : a) {
      if (ch == '\'') out += "'\\''";
      else out += ch;
    }
    out += '\'';
  }
  return out;
}

std::string Truncate(const std::string& s, size_t width) {
  if (s.size() <= width) return s;
  if (width <= 3) return s.substr(0, width);
  return s.substr(0, width - 3) + "...";
}

namespace {

// A value for one line: strings bare, lists of strings as [a,b], the rest as JSON.
std::string Compact(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array() && std::all_of(v.begin(), v.end(), [](const nlohmann::json& x) { return x.is_string(); })) {
    std::string out;
    for (const auto& x : v) out += (out.empty() ? "" : ",") + x.get<std::string>();
    return "[" + out + "]";
  }
  return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string ChangeSummary(const std::string& change_json, size_t width) {
  auto j = nlohmann::json::parse(change_json, nullptr, /*allow_exceptions=*/false);
  std::string out;
  if (!j.is_object()) {
    out = change_json;
  } else if (j.contains("old") && j.contains("new") && j["new"].is_object() &&
             (j["old"].is_object() || j["old"].is_null())) {
    // A document replaced: what differs, key by key.
    nlohmann::json old = j["old"].is_object() ? j["old"] : nlohmann::json::object();
    const nlohmann::json& now = j["new"];
    std::set<std::string> keys;
    for (const auto& [k, v] : old.items()) keys.insert(k);
    for (const auto& [k, v] : now.items()) keys.insert(k);
    for (const auto& k : keys) {
      const bool a = old.contains(k), b = now.contains(k);
      if (a && b && old[k] == now[k]) continue;
      out += (out.empty() ? "" : ", ") + k + ": " + (a ? Compact(old[k]) : "(none)") + " -> " +
             (b ? Compact(now[k]) : "(none)");
    }
    if (out.empty()) out = "no change";
  } else {
    for (const auto& [k, v] : j.items()) out += (out.empty() ? "" : ", ") + k + "=" + Compact(v);
  }
  return Truncate(Printable(out, out.size()), width);
}

std::string JoinMap(const google::protobuf::Map<std::string, std::string>& m) {
  std::map<std::string, std::string> sorted(m.begin(), m.end());
  std::string out;
  for (const auto& [k, v] : sorted) {
    if (!out.empty()) out += ',';
    out += k + "=" + v;
  }
  return out;
}

std::string DescribeOutcome(const v1::Job& job) {
  const v1::JobResult& r = job.result();
  std::string why = r.error().empty() ? "" : ": " + r.error();
  switch (job.status()) {
    case v1::SUCCEEDED: {
      if (r.cached_from_job() != 0) {
        return "succeeded from the action cache (the result of job " + std::to_string(r.cached_from_job()) +
               ", an identical build; --no-cache runs it again)";
      }
      if (job.started_at_ms() > 0 && job.finished_at_ms() >= job.started_at_ms()) {
        return "succeeded in " + FormatMs(job.finished_at_ms() - job.started_at_ms());
      }
      return "succeeded";
    }
    case v1::CANCELLED: {
      // The controller's error usually reads "cancelled ...: <reason>" already.
      if (r.error().rfind("cancelled", 0) == 0) return r.error();
      return (job.started_at_ms() > 0 ? "cancelled" : "cancelled before it started") + why;
    }
    case v1::LOST:
      return "lost with its worker after " + std::to_string(job.attempt()) + " attempt(s)" + why;
    case v1::FAILED: break;
    default: return JobStatusName(job.status());
  }
  // For timeouts and signals the error only restates the cause; kiln status shows it.
  if (r.timed_out()) return "failed: timed out after " + FormatMs(job.spec().timeout_s() * 1000);
  // Not the build's fault: the workers' (their setup), on every attempt.
  if (r.infrastructure())
    return "failed on infrastructure, not the build, after " + std::to_string(job.attempt()) + " attempt(s)" + why;
  // A container limit ended it: say which ("killed: exceeded memory limit 2 GiB").
  if (!r.limit().empty() && !r.error().empty()) return "failed: " + r.error();
  if (r.term_signal() > 0) {
    const char* abbrev = sigabbrev_np(r.term_signal());
    std::string name = abbrev ? std::string(" (SIG") + abbrev + ")" : "";
    return "failed: killed by signal " + std::to_string(r.term_signal()) + name;
  }
  if (r.exit_code() > 0) return "failed: exit code " + std::to_string(r.exit_code()) + why;
  return "failed" + (why.empty() ? std::string(" without an exit code") : why);
}

std::string DescribeLogRemoved(const v1::Job& job, int64_t now_ms) {
  if (!job.has_log_removed()) return "";
  const v1::LogRemoved& lr = job.log_removed();
  std::string whose = "the log of job " + std::to_string(lr.job_id());
  if (lr.job_id() != job.id()) whose += " (which produced job " + std::to_string(job.id()) + "'s result)";
  std::string when = now_ms > 0 && lr.removed_at_ms() > 0 ? " " + FormatAge(lr.removed_at_ms(), now_ms) + " ago" : "";
  return whose + " was removed" + when + (lr.detail().empty() ? "" : " (" + lr.detail() + ")");
}

// "1,234"
std::string FormatCount(int64_t n) {
  const std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out = n < 0 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// "0.42s", "12.3s", "5m 12s", "2h 3m"
std::string HumanDuration(int64_t ms) {
  char buf[64];
  if (ms < 10'000) std::snprintf(buf, sizeof buf, "%.2fs", static_cast<double>(ms) / 1000.0);
  else if (ms < 60'000) std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
  else if (ms < 3'600'000) std::snprintf(buf, sizeof buf, "%lldm %llds", static_cast<long long>(ms / 60'000),
                                         static_cast<long long>(ms / 1000 % 60));
  else std::snprintf(buf, sizeof buf, "%lldh %lldm", static_cast<long long>(ms / 3'600'000),
                     static_cast<long long>(ms / 60'000 % 60));
  return buf;
}

std::string FormatPercent(int64_t part, int64_t whole) {
  if (whole <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
  return buf;
}

}  // namespace kiln::cli
