// ImageService: records OCI images whose blobs are in CAS, so that jobs can
// name them by manifest digest.

#include "api/convert.h"
#include "common/text.h"
#include "controller/cas.h"
#include "controller/guard.h"
#include "controller/scopes.h"
#include "cas/scope_store.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::controller {

namespace {

constexpr int64_t kMaxJsonBlob = 4 << 20;

void ToProto(const cas::ImageRow& r, v1::Image* out) {
  out->set_digest("sha256:" + r.hash);
  out->set_manifest_size(r.manifest_size);
  out->set_name(r.name);
  out->set_size(r.size);
  out->set_layers(static_cast<int>(r.manifest.layers.size()));
  out->set_imported_at_ms(r.imported_at_ms);
  *out->mutable_config() = api::ToProto(r.manifest.config);
  for (const auto& l : r.manifest.layers) {
    *out->add_layer_digests() = api::ToProto(l.digest);
    out->add_layer_media_types(l.media_type);
  }
}

class ImageServiceImpl final : public v1::ImageService::Service {
 public:
  explicit ImageServiceImpl(const ImageServiceDeps& d) : d_(d) {}

  grpc::Status RegisterImage(grpc::ServerContext* ctx, const v1::RegisterImageRequest* req, v1::Image* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    cas::Digest md = api::FromProto(req->manifest());
    if (auto s = cas::CheckDigest(md, "manifest"); !s.ok()) return api::ToGrpc(s);
    if (Status s = CheckText(req->name(), "image name", 200); !s.ok()) return api::ToGrpc(s);
    auto manifest_text = ReadJson(md, "manifest");
    if (!manifest_text.ok()) return api::ToGrpc(manifest_text.status());
    auto m = cas::oci::ParseManifest(*manifest_text);
    if (!m.ok()) return api::ToGrpc(m.status());
    auto config_text = ReadJson(m->config, "config");
    if (!config_text.ok()) return api::ToGrpc(config_text.status());
    if (Status s = cas::oci::CheckConfig(*config_text); !s.ok()) return api::ToGrpc(s);
    for (const auto& l : m->layers) {
      if (!d_.blobs.Has(l.digest))
        return api::ToGrpc(FailedPrecondition("layer " + l.digest.ToString() +
                                              " is not in CAS; upload it first (kiln image import does this)"));
    }
    auto row = d_.images.Put(md.hash, md.size, req->name(), *m, who->Audit(*ctx));
    if (!row.ok()) return api::ToGrpc(row.status());
    // Every worker may read a registered image's blobs.
    std::vector<std::string> image_blobs{md.hash, m->config.hash};
    for (const auto& l : m->layers) image_blobs.push_back(l.digest.hash);
    if (Status s = d_.scopes.store().Add({"images"}, image_blobs); !s.ok()) return api::ToGrpc(s);
    ToProto(*row, resp);
    return grpc::Status::OK;
  }

  grpc::Status GetImage(grpc::ServerContext* ctx, const v1::GetImageRequest* req, v1::Image* resp) override {
    if (auto who = d_.guard.Require(ctx, auth::Role::kRead, "", true); !who.ok()) return api::ToGrpc(who.status());
    auto h = cas::oci::ParseImageRef(req->digest());
    if (!h.ok()) return api::ToGrpc(h.status());
    auto row = d_.images.Get(*h);
    if (!row.ok()) return api::ToGrpc(row.status());
    ToProto(*row, resp);
    return grpc::Status::OK;
  }

  grpc::Status ListImages(grpc::ServerContext* ctx, const v1::Empty*, v1::ListImagesResponse* resp) override {
    if (auto who = d_.guard.Require(ctx, auth::Role::kRead, "", true); !who.ok()) return api::ToGrpc(who.status());
    auto rows = d_.images.List();
    if (!rows.ok()) return api::ToGrpc(rows.status());
    for (const auto& r : *rows) ToProto(r, resp->add_images());
    return grpc::Status::OK;
  }

  grpc::Status RemoveImage(grpc::ServerContext* ctx, const v1::GetImageRequest* req, v1::Image* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kAdmin);
    if (!who.ok()) return api::ToGrpc(who.status());
    auto h = cas::oci::ParseImageRef(req->digest());
    if (!h.ok()) return api::ToGrpc(h.status());
    auto row = d_.images.Remove(*h, who->Audit(*ctx));
    if (!row.ok()) return api::ToGrpc(row.status());
    ToProto(*row, resp);
    return grpc::Status::OK;
  }

 private:
  Result<std::string> ReadJson(const cas::Digest& d, const std::string& what) {
    if (d.size > kMaxJsonBlob) return InvalidArgument("image " + what + " " + d.ToString() + " is larger than 4 MiB");
    if (!d_.blobs.Has(d))
      return FailedPrecondition("image " + what + " " + d.ToString() +
                                " is not in CAS; upload it first (kiln image import does this)");
    return d_.blobs.Read(d, 0, 0);
  }

  ImageServiceDeps d_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeImageService(const ImageServiceDeps& deps) {
  return std::make_unique<ImageServiceImpl>(deps);
}

}  // namespace kiln::controller
