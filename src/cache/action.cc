#include "cache/action.h"

#include <set>

#include "cas/digest.h"

namespace kiln::cache {
namespace {

// "<name> <length>:<bytes>\n": unambiguous whatever the bytes are.
void Field(std::string& out, const char* name, const std::string& value) {
  out += name;
  out += ' ';
  out += std::to_string(value.size());
  out += ':';
  out += value;
  out += '\n';
}

void Count(std::string& out, const char* name, size_t n) {
  out += name;
  out += ' ';
  out += std::to_string(n);
  out += '\n';
}

}  // namespace

bool Cacheable(const queue::JobSpec& spec) { return !spec.image.empty(); }

std::string ActionEncoding(const queue::JobSpec& spec) {
  std::string out = "kiln-action-1\n";
  Field(out, "image", spec.image);
  Count(out, "argv", spec.argv.size());
  for (const auto& a : spec.argv) Field(out, "arg", a);
  Count(out, "env", spec.env.size());  // std::map: sorted bytewise by name
  for (const auto& [k, v] : spec.env) {
    Field(out, "name", k);
    Field(out, "value", v);
  }
  Field(out, "cwd", spec.working_dir);
  Field(out, "input", spec.input_root);
  std::set<std::string> outputs(spec.outputs.begin(), spec.outputs.end());
  Count(out, "outputs", outputs.size());
  for (const auto& o : outputs) Field(out, "output", o);
  Count(out, "platform", spec.requirements.size());
  for (const auto& [k, v] : spec.requirements) {
    Field(out, "name", k);
    Field(out, "value", v);
  }
  return out;
}

std::string ActionDigest(const queue::JobSpec& spec) { return cas::DigestOf(ActionEncoding(spec)).hash; }

}  // namespace kiln::cache
