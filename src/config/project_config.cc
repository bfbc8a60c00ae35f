#include "config/project_config.h"

#include <cctype>

#include <nlohmann/json.hpp>

#include "common/text.h"
#include "common/util.h"

namespace kiln::config {
namespace {

// Keys (variable names, labels) hold no control character; values of the
// env may (a newline in a variable is fine) but no NUL, and requirements'
// values are labels' values: no control character either.
Status StringMap(const nlohmann::json& v, const std::string& key, bool values_are_labels,
                 std::map<std::string, std::string>& out) {
  if (!v.is_object()) return InvalidArgument(key + ": expected an object of strings");
  for (const auto& [k, x] : v.items()) {
    if (!x.is_string()) return InvalidArgument(key + "." + Printable(k, 80) + ": expected a string");
    if (k.empty()) return InvalidArgument(key + ": empty key");
    KILN_RETURN_IF_ERROR(CheckText(k, key + " key"));
    const std::string& value = x.get_ref<const std::string&>();
    if (values_are_labels) KILN_RETURN_IF_ERROR(CheckText(value, key + "." + k));
    else if (value.find('\0') != std::string::npos) return InvalidArgument(key + "." + k + " contains a NUL byte");
    out[k] = value;
  }
  return Status::Ok();
}

Status Int(const nlohmann::json& v, const std::string& key, int64_t lo, int64_t hi, int64_t& out) {
  if (!v.is_number_integer()) return InvalidArgument(key + ": expected an integer");
  int64_t n = v.get<int64_t>();
  if (n < lo || n > hi) {
    return InvalidArgument(key + ": " + std::to_string(n) + " is out of range " + std::to_string(lo) + ".." +
                           std::to_string(hi));
  }
  out = n;
  return Status::Ok();
}

Status LogRetention(const nlohmann::json& v, std::optional<int64_t>& out) {
  const std::string want =
      "expected a duration from 1s to 3650d such as \"30d\", \"12h\" or \"90s\", or \"0\" to keep logs for ever";
  if (!v.is_string()) return InvalidArgument("log_retention: " + want);
  const std::string& text = v.get_ref<const std::string&>();
  auto d = ParseDuration(text);
  if (!d.ok()) return InvalidArgument("log_retention: \"" + Printable(text, 40) + "\" is not a duration: " + want);
  int64_t ms = d->count();
  if (ms != 0 && (ms < kMinLogRetentionMs || ms > kMaxLogRetentionMs))
    return InvalidArgument("log_retention: \"" + Printable(text, 40) + "\" is out of range: " + want);
  out = ms;
  return Status::Ok();
}

Status LogMaxBytes(const nlohmann::json& v, std::optional<int64_t>& out) {
  const std::string want = "expected a size such as \"10GiB\" or \"500MiB\", or a number of bytes (0: no cap)";
  constexpr int64_t kMax = int64_t{1} << 62;
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(kMax)) return InvalidArgument("log_max_bytes: too large: " + want);
    out = static_cast<int64_t>(v.get<uint64_t>());
  } else if (v.is_number_integer()) {
    if (v.get<int64_t>() < 0) return InvalidArgument("log_max_bytes: must not be negative: " + want);
    out = v.get<int64_t>();
  } else if (v.is_string()) {
    auto b = ParseBytes(v.get_ref<const std::string&>());
    if (!b.ok())
      return InvalidArgument("log_max_bytes: \"" + Printable(v.get_ref<const std::string&>(), 40) +
                             "\" is not a size: " + want);
    out = *b;
  } else {
    return InvalidArgument("log_max_bytes: " + want);
  }
  return Status::Ok();
}

}  // namespace

Status CheckProjectConfigSize(const std::string& text) {
  if (text.size() <= kMaxProjectConfigBytes) return Status::Ok();
  return InvalidArgument("project configuration too large: " + std::to_string(text.size()) + " bytes, at most " +
                         std::to_string(kMaxProjectConfigBytes));
}

Result<ProjectConfig> ParseProjectConfig(const std::string& text) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for a number too large
    return InvalidArgument("project config is not valid JSON: " + Printable(e.what(), 300));
  }
  if (!j.is_object()) return InvalidArgument("project config must be a JSON object");
  ProjectConfig c;
  for (const auto& [k, v] : j.items()) {
    int64_t n = 0;
    if (k == "default_priority") {
      KILN_RETURN_IF_ERROR(Int(v, k, -1000, 1000, n));
      c.default_priority = static_cast<int>(n);
    } else if (k == "max_attempts") {
      KILN_RETURN_IF_ERROR(Int(v, k, 1, 100, n));
      c.max_attempts = static_cast<int>(n);
    } else if (k == "timeout_s") {
      KILN_RETURN_IF_ERROR(Int(v, k, 1, 604800, n));
      c.timeout_s = n;
    } else if (k == "env") {
      KILN_RETURN_IF_ERROR(StringMap(v, k, /*values_are_labels=*/false, c.env));
    } else if (k == "requirements") {
      KILN_RETURN_IF_ERROR(StringMap(v, k, /*values_are_labels=*/true, c.requirements));
    } else if (k == "image") {
      if (!v.is_string()) return InvalidArgument("image: expected a manifest digest string, sha256:<64 hex digits>");
      std::string d = v.get<std::string>();
      if (d.rfind("sha256:", 0) == 0) d = d.substr(7);
      bool hex = d.size() == 64;
      for (char ch : d) hex = hex && ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'));
      if (!hex)
        return InvalidArgument("image: expected sha256:<64 lowercase hex digits>, got \"" +
                               Printable(v.get<std::string>(), 80) + "\"");
      c.image = "sha256:" + d;
    } else if (k == "cache_scope") {
      bool ok = v.is_string() && !v.get<std::string>().empty() && v.get<std::string>().size() <= 64;
      for (char ch : ok ? v.get<std::string>() : std::string())
        ok = ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-');
      if (!ok) return InvalidArgument("cache_scope: expected a name of 1 to 64 letters, digits, '.', '_' or '-'");
      c.cache_scope = v.get<std::string>();
    } else if (k == "workspace") {
      if (!v.is_string() || (v.get<std::string>() != "fresh" && v.get<std::string>() != "persistent"))
        return InvalidArgument("workspace: expected \"fresh\" or \"persistent\"");
      c.workspace = v.get<std::string>();
    } else if (k == "compile_cache") {
      if (!v.is_boolean()) return InvalidArgument("compile_cache: expected true or false");
      c.compile_cache = v.get<bool>();
    } else if (k == "log_retention") {
      KILN_RETURN_IF_ERROR(LogRetention(v, c.log_retention_ms));
    } else if (k == "log_max_bytes") {
      KILN_RETURN_IF_ERROR(LogMaxBytes(v, c.log_max_bytes));
    } else {
      return InvalidArgument("unknown project setting \"" + Printable(k, 80) +
                             "\" (known: default_priority, max_attempts, timeout_s, env, requirements, image,"
                             " cache_scope, compile_cache, workspace, log_retention, log_max_bytes)");
    }
  }
  return c;
}

}  // namespace kiln::config
