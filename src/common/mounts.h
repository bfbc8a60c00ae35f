#pragma once
// Unmounting what a worker mounted (job checkouts), also for a worker that
// crashed and for tests that killed one.

#include <string>

namespace kiln {

// Unmounts `path`, waiting up to a second while it is busy (a container's
// last process exiting), then detaching it. True if it is really gone (or
// was not mounted).
bool UnmountPath(const std::string& path);

// Unmounts every mount point below `dir`, deepest first, so that the
// directory can be deleted.
void UnmountUnder(const std::string& dir);

}  // namespace kiln
