#pragma once
// A compile's KeyParts as the JSON kept in compile_manifests.parts (one
// object; the keys are KeyParts' names): the database's conversion of it.

#include <string>

#include "cc/record.h"
#include "common/status.h"

namespace kiln::cache {

// The parts as a JSON object. InvalidArgument when a text is not valid UTF-8.
Result<std::string> PartsToJson(const cc::KeyParts& p);
// The parts in `text`; what cannot be read (a missing key, text that is not
// such an object) is left empty: an unreadable row only explains no miss.
cc::KeyParts PartsFromJson(const std::string& text);

}  // namespace kiln::cache
