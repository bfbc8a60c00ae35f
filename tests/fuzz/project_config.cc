// Project configuration as CreateProject and SetProjectConfig receive it:
// config::CheckProjectConfigSize and ParseProjectConfig, then the
// re-serialization the admin service stores (nlohmann's dump).

#include <nlohmann/json.hpp>

#include "config/project_config.h"
#include "fuzz.h"

using namespace kiln;
using kiln::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string in(reinterpret_cast<const char*>(data), size);
  fuzz::RequireOkOrClear(config::CheckProjectConfigSize(in), "CheckProjectConfigSize");

  auto c = config::ParseProjectConfig(in);
  if (!c.ok()) {
    fuzz::RequireClearError(c.status(), "ParseProjectConfig");
    return 0;
  }
  Require(c->default_priority >= -1000 && c->default_priority <= 1000, "default_priority out of range");
  Require(c->max_attempts >= 1 && c->max_attempts <= 100, "max_attempts out of range");
  Require(c->timeout_s >= 1 && c->timeout_s <= 604800, "timeout_s out of range");
  Require(c->image.empty() || c->image.size() == 71, "image is not sha256:<64 hex>");
  Require(c->workspace == "fresh" || c->workspace == "persistent", "workspace is neither fresh nor persistent");
  for (const auto& [k, v] : c->requirements) Require(!k.empty() && !HasControl(k) && !HasControl(v), "requirement");
  for (const auto& [k, v] : c->env) Require(!k.empty() && !HasControl(k), "env name");
  if (c->log_retention_ms) {
    Require(*c->log_retention_ms == 0 || (*c->log_retention_ms >= config::kMinLogRetentionMs &&
                                          *c->log_retention_ms <= config::kMaxLogRetentionMs),
            "log_retention out of range");
  }
  if (c->log_max_bytes) Require(*c->log_max_bytes >= 0, "log_max_bytes negative");

  // What AdminService stores: the document re-serialized; it must parse the
  // same way.
  const std::string canonical = nlohmann::json::parse(in).dump();
  auto again = config::ParseProjectConfig(canonical);
  Require(again.ok(), "the re-serialized configuration does not parse", &again.status());
  Require(again->env == c->env && again->requirements == c->requirements && again->image == c->image &&
              again->cache_scope == c->cache_scope && again->timeout_s == c->timeout_s &&
              again->log_retention_ms == c->log_retention_ms && again->log_max_bytes == c->log_max_bytes,
          "the re-serialized configuration means something else");
  return 0;
}
