#include "cache/compile_json.h"

#include <nlohmann/json.hpp>

namespace kiln::cache {

using nlohmann::json;

Result<std::string> PartsToJson(const cc::KeyParts& p) {
  json j = {{"image", p.image},   {"compiler", p.compiler},           {"cwd", p.cwd},
            {"source", p.source}, {"source_digest", p.source_digest}, {"output", p.output},
            {"compiler_path", p.compiler_path}};
  j["args"] = p.args;
  j["env"] = p.env;
  try {
    return j.dump();
  } catch (const json::exception&) {
    return InvalidArgument("the compile's arguments or environment are not valid UTF-8");
  }
}

cc::KeyParts PartsFromJson(const std::string& text) {
  cc::KeyParts p;
  try {
    json j = json::parse(text);
    p.image = j.value("image", "");
    p.compiler = j.value("compiler", "");
    p.cwd = j.value("cwd", "");
    p.source = j.value("source", "");
    p.source_digest = j.value("source_digest", "");
    p.output = j.value("output", "");
    p.compiler_path = j.value("compiler_path", "");
    p.args = j.value("args", std::vector<std::string>{});
    p.env = j.value("env", std::map<std::string, std::string>{});
  } catch (const json::exception&) {
    // stored by this code: cannot happen; what was read stands
  }
  return p;
}

}  // namespace kiln::cache
