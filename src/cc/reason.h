#pragma once
// Why a translation unit missed the compile cache, in words a developer can
// act on: "header /src/inc/defs.h changed from sha256:1a2b.. to sha256:3c4d..",
// "arguments changed: removed -O2, added -O0", "new source".

#include <optional>
#include <string>
#include <vector>

#include "cc/deps.h"
#include "cc/keys.h"

namespace kiln::cc {

struct Miss {
  std::string reason;  // "new source", "source changed", "arguments changed", "compiler changed",
                       // "image changed", "environment changed", "working directory changed",
                       // "header changed", "header added", "include path changed"
  std::string detail;  // the specifics, one line
};

// `mismatch`: the first entry that failed in the newest manifest under the
// direct key, when there were manifests; else the closest of `earlier`, the
// latest compiles of the same source (and output) in the scope (fewest
// differences, source digests included; the first of equals), is compared
// with `now`.
Miss DescribeMiss(const KeyParts& now, const std::optional<Mismatch>& mismatch, const std::vector<KeyParts>& earlier);

// "sha256:<first 12 hex>.." of a manifest value or digest key, for messages.
std::string ShortDigest(const std::string& value);

}  // namespace kiln::cc
