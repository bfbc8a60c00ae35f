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

}  // namespace

Entry::Entry(Who w, std::string a, std::string p, std::string t)
    : who(std::move(w)), action(std::move(a)), project(std::move(p)), target(std::move(t)) {}

std::string Entry::change() const {
  // As nlohmann dumps an object: keys in order, no spaces.
  std::string out = "{";
  for (const auto& [key, value] : fields_) out += (out.size() > 1 ? "," : "") + Dump(json(key)) + ":" + value;
  return out + "}";
}

Entry& Entry::Set(std::string_view key, std::string_view value) {
  fields_[std::string(key)] = Dump(json(NoNul(value)));
  return *this;
}

Entry& Entry::Set(std::string_view key, int64_t value) {
  fields_[std::string(key)] = Dump(json(value));
  return *this;
}

Entry& Entry::Set(std::string_view key, const std::vector<std::string>& values) {
  json list = json::array();
  for (const auto& v : values) list.push_back(NoNul(v));
  fields_[std::string(key)] = Dump(list);
  return *this;
}

Entry& Entry::SetJson(std::string_view key, std::string_view text) {
  json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) v = NoNul(text);
  fields_[std::string(key)] = Dump(v);
  return *this;
}

}  // namespace kiln::audit
