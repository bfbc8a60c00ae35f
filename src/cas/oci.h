#pragma once
// OCI images: manifests, configs and the one-layer image kiln makes from a
// plain rootfs tarball. Everything here is pure (no I/O).

#include <string>
#include <string_view>
#include <vector>

#include "cas/digest.h"

namespace kiln::cas::oci {

inline constexpr std::string_view kManifestType = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kConfigType = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kLayerTar = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kLayerTarGzip = "application/vnd.oci.image.layer.v1.tar+gzip";

struct Layer {
  Digest digest;
  std::string media_type;
};

struct Manifest {
  Digest config;
  std::vector<Layer> layers;
};

// Parses and checks an image manifest: schemaVersion 2, an OCI or Docker v2
// image manifest (not an index), digests "sha256:<hex>" with sizes, layers
// that are tar, tar+gzip or tar+zstd.
Result<Manifest> ParseManifest(std::string_view json);

// Checks an image config: JSON, and for linux/amd64 (or unspecified).
Status CheckConfig(std::string_view json);

// "sha256:<hex>" or "<hex>" -> "<hex>".
Result<std::string> ParseImageRef(std::string_view ref);

// A one-layer image around an uncompressed rootfs tar whose digest is `layer`:
// returns {config JSON, manifest JSON}, the same bytes for the same layer.
std::pair<std::string, std::string> WrapRootfs(const Digest& layer);

}  // namespace kiln::cas::oci
