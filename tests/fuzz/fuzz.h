#pragma once
// Shared by the fuzz targets: what every parser must do with untrusted bytes
// besides not crashing. A broken property aborts, so libFuzzer keeps the
// input that broke it like any other crash.

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/text.h"

namespace kiln::fuzz {

// Aborts with `what` (and the status, if any) when `ok` is false.
inline void Require(bool ok, std::string_view what, const Status* s = nullptr) {
  if (ok) return;
  std::fprintf(stderr, "fuzz property broken: %.*s%s%s\n", static_cast<int>(what.size()), what.data(),
               s != nullptr ? ": " : "", s != nullptr ? Printable(s->message(), 2000).c_str() : "");
  std::abort();
}

// A refusal is a clear error: a code and a message that quotes what it
// refuses escaped and cut (common/text.h, Printable), so no input can put a
// control character or megabytes into a reply or a log line.
constexpr size_t kMaxMessage = 4096;
inline void RequireClearError(const Status& s, std::string_view what) {
  Require(!s.ok(), what, &s);
  Require(!s.message().empty(), "empty error message", &s);
  Require(s.message().size() <= kMaxMessage, "error message longer than 4096 bytes", &s);
  Require(!HasControl(s.message()), "control character in an error message", &s);
}

// Either accepted or refused clearly.
inline void RequireOkOrClear(const Status& s, std::string_view what) {
  if (!s.ok()) RequireClearError(s, what);
}

}  // namespace kiln::fuzz
