#include "audit/entry.h"

#include <nlohmann/json.hpp>

namespace kiln::audit {
namespace {

using nlohmann::json;

// Strings from the network may hold any byte: replace what is not UTF-8
// rather than throw (nlohmann's dump would).
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// PostgreSQL's jsonb holds no NUL (\u0000): written as \x00, as log lines do.
std::string NoNul(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\0') out += "\\x00";
    else out += c;
  }
  return out;
}

json Parse(const std::string& change) {
  json j = json::parse(change, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : json::object();
}

}  // namespace

Entry::Entry(Who w, std::string a, std::string p, std::string t)
    : who(std::move(w)), action(std::move(a)), project(std::move(p)), target(std::move(t)) {}

Entry& Entry::Set(std::string_view key, std::string_view value) {
  json j = Parse(change);
  j[std::string(key)] = NoNul(value);
  change = Dump(j);
  return *this;
}

Entry& Entry::Set(std::string_view key, int64_t value) {
  json j = Parse(change);
  j[std::string(key)] = value;
  change = Dump(j);
  return *this;
}

Entry& Entry::Set(std::string_view key, const std::vector<std::string>& values) {
  json j = Parse(change);
  json list = json::array();
  for (const auto& v : values) list.push_back(NoNul(v));
  j[std::string(key)] = std::move(list);
  change = Dump(j);
  return *this;
}

Entry& Entry::SetJson(std::string_view key, std::string_view text) {
  json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) v = NoNul(text);
  json j = Parse(change);
  j[std::string(key)] = std::move(v);
  change = Dump(j);
  return *this;
}

}  // namespace kiln::audit
