// Checks of what kiln-cc sends (the worker's and the controller's side; not
// linked into kiln-cc itself).

#include "cas/digest.h"
#include "cas/tree.h"
#include "cc/deps.h"
#include "common/text.h"

namespace kiln::cc {

Status CheckManifestEntries(const std::map<std::string, std::string>& deps) {
  if (deps.size() > 100'000) return InvalidArgument("a manifest of more than 100000 dependencies");
  for (const auto& [path, value] : deps) {
    if (path.empty() || path[0] != '/')
      return InvalidArgument("dependency path '" + Printable(path, 200) + "' is not absolute");
    if (path.size() > 4096) return InvalidArgument("a dependency path is longer than 4096 bytes");
    if (path.find('\0') != std::string::npos) return InvalidArgument("a dependency path contains a NUL byte");
    if (!cas::ValidUtf8(path)) return InvalidArgument("a dependency path is not valid UTF-8");
    if (value == "i" || value == "d" || value == "-") continue;
    if (value.rfind("f:", 0) != 0 || !cas::ParseDigest(value.substr(2)).ok())
      return InvalidArgument("dependency " + Printable(path, 200) + ": value '" + Printable(value, 80) +
                             "' is none of f:<hex>/<size>, i, d, -");
  }
  return Status::Ok();
}

}  // namespace kiln::cc
