#include "cache/action.h"

#include <set>

#include "cas/digest.h"
#include "cas/encode.h"

namespace kiln::cache {
using cas::EncodeCount;
using cas::EncodeField;

bool Cacheable(const queue::JobSpec& spec) {
  // A result that may depend on a secret is never shared: another job
  // would take it without holding the secret.
  return !spec.image.empty() && spec.workspace != "persistent" && spec.secret_names.empty();
}

std::string ActionEncoding(const queue::JobSpec& spec) {
  std::string out = "kiln-action-1\n";
  EncodeField(out, "image", spec.image);
  EncodeCount(out, "argv", spec.argv.size());
  for (const auto& a : spec.argv) EncodeField(out, "arg", a);
  EncodeCount(out, "env", spec.env.size());  // std::map: sorted bytewise by name
  for (const auto& [k, v] : spec.env) {
    EncodeField(out, "name", k);
    EncodeField(out, "value", v);
  }
  EncodeField(out, "cwd", spec.working_dir);
  // spec.excluded_outputs is deliberately not encoded: the paths the CLI
  // left out are already absent from input_root, and an identical tree must
  // hit whatever the list says (ActionDigest.ExcludedOutputsAreNotPartOfIt).
  EncodeField(out, "input", spec.input_root);
  std::set<std::string> outputs(spec.outputs.begin(), spec.outputs.end());
  EncodeCount(out, "outputs", outputs.size());
  for (const auto& o : outputs) EncodeField(out, "output", o);
  EncodeCount(out, "platform", spec.requirements.size());
  for (const auto& [k, v] : spec.requirements) {
    EncodeField(out, "name", k);
    EncodeField(out, "value", v);
  }
  return out;
}

std::string ActionDigest(const queue::JobSpec& spec) { return cas::DigestOf(ActionEncoding(spec)).hash; }

}  // namespace kiln::cache
