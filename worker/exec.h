#pragma once
// Runs a short helper command (runc, mount, mkfs.ext4) and waits for it.

#include <string>
#include <vector>

namespace kiln::worker {

// Runs argv (looked up on PATH) with stdin from /dev/null; returns its exit
// code (128+N if signal N ended it; -1 if it could not start). Its stdout
// and stderr together go to *out when given.
int Exec(const std::vector<std::string>& argv, std::string* out = nullptr);

}  // namespace kiln::worker
