#pragma once
// The compile cache's keys. Both are sha256 (hex) of a length-prefixed
// encoding (docs/architecture.md, "Compile cache"); they never change
// without a new version line.
//   direct key: what the compile was asked (image, compiler, working
//     directory, arguments, compiler environment) and the source's digest;
//     its manifests list the headers it read, with their digests.
//   result key: the same with the digest of the preprocessed translation
//     unit instead of the source's: a header edit that leaves the
//     preprocessed output alone (a comment) still finds the object.
//   code result key: the same with the source's digest and the digest of
//     the unit's manifest in which every file is named by its code
//     (cc/code.h): an edit of a header's comments finds the object with no
//     preprocessor pass.

#include <map>
#include <string>

#include "cc/record.h"

namespace kiln::cc {

// Each key hashes p.image, p.compiler, p.cwd, p.args and p.env and the
// digest it is given; p.source, p.output, p.source_digest and
// p.compiler_path are not read.
std::string DirectKey(const KeyParts& p, const std::string& source_digest);
std::string ResultKey(const KeyParts& p, const std::string& preprocessed_digest);
std::string DependResultKey(const KeyParts& p, const std::string& source_digest, const std::string& manifest_digest);
std::string CodeResultKey(const KeyParts& p, const std::string& source_digest, const std::string& code_manifest_digest);

// sha256 of the compiler binary's digest and what `COMPILER -v` reports.
std::string CompilerIdentity(const std::string& binary_digest, const std::string& version_text);

// sha256 of a manifest's entries in order: two manifests with the same
// dependencies and digests have the same digest.
std::string ManifestDigest(const std::map<std::string, std::string>& deps);

}  // namespace kiln::cc
