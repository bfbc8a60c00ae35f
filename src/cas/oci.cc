#include "cas/oci.h"

#include <nlohmann/json.hpp>
#include <optional>

#include "common/text.h"

namespace kiln::cas::oci {

namespace {

using nlohmann::json;

// The string at `key` of an object, `absent` when there is none; nullopt
// when it is there but not a string (where nlohmann's value() would throw).
std::optional<std::string> String(const json& j, const char* key, const char* absent) {
  auto it = j.find(key);
  if (it == j.end()) return absent;
  if (!it->is_string()) return std::nullopt;
  return it->get<std::string>();
}

Result<Digest> Descriptor(const json& d, const std::string& what) {
  if (!d.is_object() || !d.contains("digest") || !d["digest"].is_string() || !d.contains("size") ||
      !d["size"].is_number_integer())
    return InvalidArgument("image manifest: " + what + " needs a \"digest\" and a \"size\"");
  std::string ds = d["digest"].get<std::string>();
  if (ds.rfind("sha256:", 0) != 0)
    return InvalidArgument("image manifest: " + what + " digest is not sha256: " + Printable(ds, 100));
  Digest out{ds.substr(7), d["size"].get<int64_t>()};
  if (auto s = CheckDigest(out, "image manifest: " + what); !s.ok()) return s;
  return out;
}

}  // namespace

Result<Manifest> ParseManifest(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("image manifest is not a JSON object");
  auto version = j.find("schemaVersion");
  if (version == j.end() || !version->is_number_integer() || version->get<int64_t>() != 2)
    return InvalidArgument("image manifest: schemaVersion must be 2");
  std::string mt = j.contains("mediaType") && j["mediaType"].is_string() ? j["mediaType"].get<std::string>() : "";
  if (mt.find("index") != std::string::npos || mt.find("manifest.list") != std::string::npos || j.contains("manifests"))
    return InvalidArgument("this is an image index (several platforms), not an image manifest; "
                           "import the linux/amd64 manifest it lists");
  if (!mt.empty() && mt != kManifestType && mt != "application/vnd.docker.distribution.manifest.v2+json")
    return InvalidArgument("image manifest: unsupported mediaType " + Printable(mt, 100));
  if (!j.contains("config")) return InvalidArgument("image manifest has no config");
  Manifest m;
  auto c = Descriptor(j["config"], "config");
  if (!c.ok()) return c.status();
  m.config = *c;
  if (!j.contains("layers") || !j["layers"].is_array() || j["layers"].empty())
    return InvalidArgument("image manifest has no layers");
  if (j["layers"].size() > 256) return InvalidArgument("image manifest has more than 256 layers");
  int i = 0;
  for (const auto& l : j["layers"]) {
    auto d = Descriptor(l, "layer " + std::to_string(i++));
    if (!d.ok()) return d.status();
    std::string lt = l.contains("mediaType") && l["mediaType"].is_string() ? l["mediaType"].get<std::string>() : "";
    bool ok = lt == kLayerTar || lt == kLayerTarGzip || lt == "application/vnd.oci.image.layer.v1.tar+zstd" ||
              lt == "application/vnd.docker.image.rootfs.diff.tar.gzip" ||
              lt == "application/vnd.docker.image.rootfs.diff.tar";
    if (!ok)
      return InvalidArgument("image manifest: layer " + d->ToString() + " has unsupported mediaType \"" +
                             Printable(lt, 100) + "\" (kiln takes tar, tar+gzip and tar+zstd layers)");
    m.layers.push_back({*d, lt});
  }
  return m;
}

Status CheckConfig(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("image config is not a JSON object");
  auto arch = String(j, "architecture", "amd64"), os = String(j, "os", "linux");
  if (!arch || !os) return InvalidArgument("image config: \"architecture\" and \"os\" must be strings");
  if (*arch != "amd64" || *os != "linux")
    return InvalidArgument("the image is for " + Printable(*os, 100) + "/" + Printable(*arch, 100) +
                           "; kiln runs builds on linux/amd64 (x86_64)");
  return Status::Ok();
}

Result<std::string> ParseImageRef(std::string_view ref) {
  std::string_view h = ref;
  if (h.starts_with("sha256:")) h.remove_prefix(7);
  if (!IsHash(h))
    return InvalidArgument("bad image \"" + Printable(ref, 80) +
                           "\": name an image by its digest, sha256:<64 hex digits> (see kiln image list)");
  return std::string(h);
}

std::pair<std::string, std::string> WrapRootfs(const Digest& layer) {
  // ordered_json keeps the key order, so the bytes (and digests) are stable.
  nlohmann::ordered_json config = {
      {"architecture", "amd64"},
      {"os", "linux"},
      {"config", nlohmann::ordered_json::object()},
      {"rootfs", {{"type", "layers"}, {"diff_ids", {"sha256:" + layer.hash}}}}};
  std::string config_text = config.dump();
  Digest cd = DigestOf(std::string_view(config_text));
  nlohmann::ordered_json manifest = {
      {"schemaVersion", 2},
      {"mediaType", kManifestType},
      {"config", {{"mediaType", kConfigType}, {"digest", "sha256:" + cd.hash}, {"size", cd.size}}},
      {"layers", {{{"mediaType", kLayerTar}, {"digest", "sha256:" + layer.hash}, {"size", layer.size}}}}};
  return {config_text, manifest.dump()};
}

}  // namespace kiln::cas::oci
