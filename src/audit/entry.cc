#include "audit/entry.h"

#include <nlohmann/json.hpp>

namespace kiln::audit {
namespace {

using nlohmann::json;

// Strings from the network may hold any byte: replace what is not UTF-8
// rather than throw (nlohmann's dump would).
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json Parse(const std::string& change) {
  json j = json::parse(change, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : json::object();
}

}  // namespace

Entry::Entry(Who w, std::string a, std::string p, std::string t)
    : who(std::move(w)), action(std::move(a)), project(std::move(p)), target(std::move(t)) {}

Entry& Entry::Set(std::string_view key, std::string_view value) {
  json j = Parse(change);
  j[std::string(key)] = std::string(value);
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
  j[std::string(key)] = values;
  change = Dump(j);
  return *this;
}

Entry& Entry::SetJson(std::string_view key, std::string_view text) {
  json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) v = std::string(text);
  json j = Parse(change);
  j[std::string(key)] = std::move(v);
  change = Dump(j);
  return *this;
}

}  // namespace kiln::audit
