#pragma once
// The one rule for a warm workspace's name, checked where clients name one
// (Submit) and where workers report one.

#include <string>

#include "common/status.h"

namespace kiln::controller {

// A workspace name (a branch, say): 1-128 of letters, digits, '.', '_', '-',
// '/', '+', not starting with '/' or '.', no "..". Empty is valid (none given).
Status CheckWorkspaceName(const std::string& n);

}  // namespace kiln::controller
