// kiln image import | list | rm: OCI images in CAS, named by manifest digest.

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "api/convert.h"
#include "cas/client.h"
#include "cas/oci.h"
#include "cas/unpack.h"
#include "cli/commands.h"
#include "cli/errors.h"
#include "cli/output.h"
#include "cli/trees.h"
#include "common/util.h"

namespace kiln::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

ErrorContext Ctx(const Globals& g) { return {g.controller, g.timeout}; }
void PrintLine(const std::string& s) { std::printf("%s\n", s.c_str()); }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/kiln-image-XXXXXX";
    path = ::mkdtemp(tmpl) ? tmpl : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

// What a tar file holds: an OCI image layout (oci-archive) or a root filesystem.
Result<bool> IsOciArchive(const std::string& path) {
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  if (archive_read_open_filename(a, path.c_str(), 1 << 16) != ARCHIVE_OK) {
    std::string why = archive_error_string(a);
    archive_read_free(a);
    return InvalidArgument(path + " is neither a directory nor a tar archive: " + why);
  }
  archive_entry* e;
  bool oci = false;
  int n = 0;
  while (!oci && n++ < 64 && archive_read_next_header(a, &e) == ARCHIVE_OK) {
    std::string name = archive_entry_pathname(e);
    if (name.rfind("./", 0) == 0) name = name.substr(2);
    oci = name == "oci-layout" || name == "index.json";
  }
  archive_read_free(a);
  return oci;
}

// An uncompressed copy of a (maybe compressed) tar, for a one-layer image.
Status Decompress(const std::string& in, const std::string& out) {
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_raw(a);
  Status st;
  if (archive_read_open_filename(a, in.c_str(), 1 << 16) != ARCHIVE_OK) {
    st = InvalidArgument("cannot read " + in + ": " + archive_error_string(a));
  } else {
    archive_entry* e;
    archive_read_next_header(a, &e);
    std::ofstream o(out, std::ios::binary);
    char buf[1 << 16];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0) o.write(buf, n);
    if (n < 0) st = InvalidArgument("damaged archive " + in + ": " + archive_error_string(a));
  }
  archive_read_free(a);
  return st;
}

// Picks the image manifest of a layout: the only one, the one named `ref`,
// or the linux/amd64 one of an index.
Result<json> PickManifest(const std::string& layout, const json& index, const std::string& ref, int depth = 0) {
  if (!index.contains("manifests") || !index["manifests"].is_array() || index["manifests"].empty())
    return InvalidArgument("the image layout's index lists no manifests");
  std::vector<json> candidates;
  for (const auto& m : index["manifests"]) {
    std::string name = m.contains("annotations") ? m["annotations"].value("org.opencontainers.image.ref.name", "") : "";
    if (!ref.empty() && name != ref) continue;
    if (m.contains("platform")) {
      const auto& p = m["platform"];
      if (p.value("architecture", "amd64") != "amd64" || p.value("os", "linux") != "linux") continue;
    }
    candidates.push_back(m);
  }
  if (candidates.empty())
    return NotFound(ref.empty() ? "the image layout has no linux/amd64 manifest"
                                : "the image layout has no manifest named \"" + ref + "\"");
  if (candidates.size() > 1) {
    std::string names;
    for (const auto& m : candidates)
      names += " " + (m.contains("annotations") ? m["annotations"].value("org.opencontainers.image.ref.name", "?") : "?");
    return InvalidArgument("the image layout holds several images; pick one with --ref NAME (names:" + names + ")");
  }
  json m = candidates[0];
  std::string mt = m.value("mediaType", "");
  if (mt.find("index") != std::string::npos && depth == 0) {
    std::string d = m.value("digest", "");
    auto h = cas::oci::ParseImageRef(d);
    if (!h.ok()) return h.status();
    json nested = json::parse(ReadAll(layout + "/blobs/sha256/" + *h), nullptr, false);
    if (nested.is_discarded()) return InvalidArgument("the image layout's nested index is not JSON");
    return PickManifest(layout, nested, "", depth + 1);
  }
  return m;
}

// Checks a blob file of the layout against its digest.
Status CheckBlob(const std::string& layout, const cas::Digest& d, const std::string& what) {
  std::string p = layout + "/blobs/sha256/" + d.hash;
  auto got = cas::DigestFile(p);
  if (!got.ok()) return NotFound("the image's " + what + " " + d.ToString() + " is missing from the layout");
  if (*got != d)
    return InvalidArgument("the image is damaged: its " + what + " " + d.ToString() + " hashes to " +
                           got->ToString() + "; refusing to import it");
  return Status::Ok();
}

}  // namespace

int RunImageImport(Client& c, const Globals& g, const ImageImportArgs& a) {
  if (c.Cas() == nullptr) return ReportError(Internal("no CAS client"), Ctx(g));
  struct stat st {};
  if (::stat(a.path.c_str(), &st) != 0)
    return ReportError(NotFound(a.path + ": no such file or directory"), Ctx(g));
  TempDir tmp;
  std::string layout;
  cas::BuiltTree blobs;  // only files: what to upload
  cas::Digest manifest;
  if (S_ISDIR(st.st_mode)) {
    layout = a.path;
  } else {
    auto oci = IsOciArchive(a.path);
    if (!oci.ok()) return ReportError(oci.status(), Ctx(g));
    if (*oci) {
      cas::UnpackOptions o;
      o.whiteouts = false;
      auto u = cas::Unpack(a.path, tmp.path, o);
      if (!u.ok()) return ReportError(Status(u.status().code(), a.path + ": " + u.status().message()), Ctx(g));
      layout = tmp.path;
    } else {
      // A root filesystem: wrapped into a one-layer image (the same bytes give the same digest).
      std::string layer = tmp.path + "/layer.tar";
      if (Status s = Decompress(a.path, layer); !s.ok()) return ReportError(s, Ctx(g));
      auto ld = cas::DigestFile(layer);
      if (!ld.ok()) return ReportError(ld.status(), Ctx(g));
      auto [config, man] = cas::oci::WrapRootfs(*ld);
      std::ofstream(tmp.path + "/config.json", std::ios::binary) << config;
      std::ofstream(tmp.path + "/manifest.json", std::ios::binary) << man;
      manifest = cas::DigestOf(std::string_view(man));
      blobs.files[*ld] = layer;
      blobs.files[cas::DigestOf(std::string_view(config))] = tmp.path + "/config.json";
      blobs.files[manifest] = tmp.path + "/manifest.json";
    }
  }
  if (!layout.empty()) {
    json layout_file = json::parse(ReadAll(layout + "/oci-layout"), nullptr, false);
    if (layout_file.is_discarded() || !layout_file.contains("imageLayoutVersion"))
      return ReportError(InvalidArgument(a.path + " is not an OCI image layout (no valid oci-layout file)"), Ctx(g));
    json index = json::parse(ReadAll(layout + "/index.json"), nullptr, false);
    if (index.is_discarded()) return ReportError(InvalidArgument(a.path + ": index.json is not JSON"), Ctx(g));
    auto desc = PickManifest(layout, index, a.ref);
    if (!desc.ok()) return ReportError(desc.status(), Ctx(g));
    auto h = cas::oci::ParseImageRef(desc->value("digest", ""));
    if (!h.ok()) return ReportError(h.status(), Ctx(g));
    manifest = cas::Digest{*h, desc->value("size", int64_t{0})};
    if (Status s = CheckBlob(layout, manifest, "manifest"); !s.ok()) return ReportError(s, Ctx(g));
    auto m = cas::oci::ParseManifest(ReadAll(layout + "/blobs/sha256/" + manifest.hash));
    if (!m.ok()) return ReportError(m.status(), Ctx(g));
    if (Status s = CheckBlob(layout, m->config, "config"); !s.ok()) return ReportError(s, Ctx(g));
    blobs.files[manifest] = layout + "/blobs/sha256/" + manifest.hash;
    blobs.files[m->config] = layout + "/blobs/sha256/" + m->config.hash;
    for (const auto& l : m->layers) {
      if (Status s = CheckBlob(layout, l.digest, "layer"); !s.ok()) return ReportError(s, Ctx(g));
      blobs.files[l.digest] = layout + "/blobs/sha256/" + l.digest.hash;
    }
  }
  auto up = c.Cas()->UploadTree(blobs);
  if (!up.ok()) return ReportError(up.status(), Ctx(g));
  v1::RegisterImageRequest req;
  *req.mutable_manifest() = api::ToProto(manifest);
  req.set_name(a.name);
  auto img = c.RegisterImage(req);
  if (!img.ok()) return ReportError(img.status(), Ctx(g));
  std::fprintf(stderr, "kiln: image %s: %d layer(s), %s; uploaded %lld blob(s), %s\n", img->digest().c_str(),
               img->layers(), HumanBytes(img->size()).c_str(), static_cast<long long>(up->blobs),
               HumanBytes(up->blob_bytes).c_str());
  if (g.json) PrintLine(ToJson(*img));
  else PrintLine(img->digest());
  return kExitOk;
}

int RunImageList(Client& c, const Globals& g) {
  auto resp = c.ListImages();
  if (!resp.ok()) return ReportError(resp.status(), Ctx(g));
  if (g.json) {
    PrintLine(ToJsonArray(resp->images()));
    return kExitOk;
  }
  const int64_t now = NowUnixMs();
  Table t({"DIGEST", "NAME", "LAYERS", "SIZE", "IMPORTED"});
  for (const auto& i : resp->images())
    t.AddRow({i.digest(), i.name().empty() ? "-" : i.name(), std::to_string(i.layers()), HumanBytes(i.size()),
              FormatAge(i.imported_at_ms(), now) + " ago"});
  t.Print(stdout);
  return kExitOk;
}

int RunImageRemove(Client& c, const Globals& g, const std::string& digest) {
  auto img = c.RemoveImage(digest);
  if (!img.ok()) return ReportError(img.status(), Ctx(g));
  std::fprintf(stderr, "kiln: removed image %s; its blobs go with the next collection\n", img->digest().c_str());
  return kExitOk;
}

}  // namespace kiln::cli
