// Image manifests and configs as `kiln image import` uploads them and the
// controller reads them from CAS: cas::oci::ParseManifest and CheckConfig.

#include "cas/oci.h"
#include "fuzz.h"

using namespace kiln;
using kiln::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);

  auto m = cas::oci::ParseManifest(in);
  if (m.ok()) {
    Require(cas::CheckDigest(m->config, "config").ok(), "ParseManifest returned a bad config digest");
    Require(!m->layers.empty() && m->layers.size() <= 256, "ParseManifest returned 0 or over 256 layers");
    for (const auto& l : m->layers)
      Require(cas::CheckDigest(l.digest, "layer").ok() && !l.media_type.empty(), "ParseManifest returned a bad layer");
  } else {
    fuzz::RequireClearError(m.status(), "ParseManifest");
  }

  fuzz::RequireOkOrClear(cas::oci::CheckConfig(in), "CheckConfig");
  return 0;
}
