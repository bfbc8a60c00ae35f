#include "controller/workspace_name.h"

#include <cctype>

#include "common/text.h"

namespace kiln::controller {

Status CheckWorkspaceName(const std::string& n) {
  if (n.empty()) return Status::Ok();
  bool ok = n.size() <= 128 && n[0] != '/' && n[0] != '.' && n.find("..") == std::string::npos;
  for (char ch : n)
    ok = ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-' || ch == '/' ||
                ch == '+');
  if (!ok)
    return InvalidArgument("workspace name \"" + Printable(n, 40) +
                           "\" must be 1-128 letters, digits, '.', '_', '-', '/', '+' (not starting with '/' or '.')");
  return Status::Ok();
}

}  // namespace kiln::controller
