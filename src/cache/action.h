#pragma once
// The action digest: one sha256 over everything that can change a job's
// result, so that two jobs with the same digest have the same result. The
// encoding is documented in docs/architecture.md ("Action cache") and pinned
// by a unit test; it never changes (a new one gets a new version line).

#include <string>

#include "queue/types.h"

namespace kiln::cache {

// True when a job's result may be cached: it runs in a container of an
// image pinned by digest (a plain process depends on its host) and in a
// fresh directory (a warm workspace's build depends on what earlier builds
// left in it), and holds no secret (its result may depend on one).
bool Cacheable(const queue::JobSpec& spec);

// The canonical encoding of the parts of `spec` that determine its result:
// image, argv, env, working directory, input root, declared outputs (sorted,
// without duplicates) and platform (the requirements, which include the
// architecture). Not included: timeout, resources, priority, project, and
// excluded_outputs (what the CLI left out of the input tree is already
// reflected in the input root; the list only explains it).
std::string ActionEncoding(const queue::JobSpec& spec);

// sha256 of ActionEncoding, 64 lowercase hex digits.
std::string ActionDigest(const queue::JobSpec& spec);

}  // namespace kiln::cache
