#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <unordered_map>
#include <unordered_set>

#include "api/convert.h"
#include "common/util.h"
#include "cas/limits.h"
#include "controller/cas.h"
#include "controller/guard.h"
#include "controller/scopes.h"
#include "cas/scope_store.h"
#include "kiln/v1/kiln.grpc.pb.h"

namespace kiln::controller {

namespace {

using cas::kBatchReadOverheadPerBlob;
using cas::kMaxBatchReadBytes;
using cas::kMaxDigestsPerCall;
constexpr int64_t kReadChunk = 1 << 20;
constexpr int64_t kTreePageBytes = 2 << 20;

}  // namespace

Result<std::unique_ptr<Cas>> Cas::Open(const config::ControllerConfig& cfg) {
  // Uses are recorded often enough that nothing used within cas_min_age
  // looks older than that to the collector.
  int64_t touch_after_s = std::min<int64_t>(600, cfg.cas_min_age.count() / 4000);
  auto blobs = cas::OpenDirStore(cfg.cas_dir, touch_after_s);
  if (!blobs.ok()) return blobs.status();
  std::unique_ptr<Cas> c(new Cas(cfg));
  c->blobs_ = std::move(blobs).value();
  c->trees_ = std::make_unique<cas::TreeStore>(cfg.database_url, 4, touch_after_s);
  c->images_ = std::make_unique<cas::ImageStore>(cfg.database_url, 2);
  return c;
}

Status CheckTree(cas::TreeStore& trees, cas::BlobStore& blobs, const cas::Digest& root, int64_t max_files,
                 const std::string& what, std::vector<std::string>* hashes, const SeenFn& seen) {
  if (auto s = cas::CheckDigest(root, what); !s.ok()) return s;
  auto reach = trees.Reachable(root);
  if (!reach.ok()) return reach.status();
  std::unordered_set<std::string> in_scope;
  if (seen) {
    // Out of the caller's scopes reads as absent, and is checked first, so
    // no answer says what exists in another scope.
    std::vector<std::string> all;
    for (const auto& [d, dir] : reach->nodes) {
      all.push_back(d.hash);
      for (const auto& e : dir.entries)
        if (e.kind == cas::Kind::kFile) all.push_back(e.digest.hash);
    }
    auto s = seen(all);
    if (!s.ok()) return s.status();
    in_scope = std::move(*s);
    for (const auto& [d, dir] : reach->nodes) {
      if (!in_scope.count(d.hash))
        return FailedPrecondition(what + ": directory node " + d.ToString() +
                                  " is not in CAS; upload it first (kiln submit does this)");
    }
  }
  // Nodes are found by hash: a root or directory entry whose size is not
  // its node's would pass unseen.
  if (Status s = cas::CheckNodeSizes(root, reach->nodes); !s.ok()) return InvalidArgument(what + ": " + s.message());
  std::unordered_map<std::string, const cas::Directory*> nodes;
  for (const auto& [d, dir] : reach->nodes) nodes[d.hash] = &dir;
  // Entries are counted per path, so a node shared many times counts each
  // time: the cap bounds the work of every worker that materializes it.
  auto entries = cas::Flatten(root, nodes, max_files);
  if (!entries.ok()) {
    const Status& s = entries.status();
    if (s.code() == Code::kNotFound)
      return FailedPrecondition(what + ": " + s.message() + "; upload it first (kiln submit does this)");
    if (s.code() == Code::kResourceExhausted)
      return ResourceExhausted(what + ": " + s.message() + " (cas_max_tree_files)");
    return Status(s.code(), what + ": " + s.message());
  }
  std::vector<cas::Digest> used;
  for (const auto& [d, dir] : reach->nodes) used.push_back(d);
  if (Status s = trees.Touch(used); !s.ok()) return s;  // the collector must not take them now
  std::unordered_map<std::string, bool> present;
  for (const auto& pe : *entries) {
    if (pe.entry.kind != cas::Kind::kFile) continue;
    auto [b, fresh] = present.try_emplace(pe.entry.digest.Key(), false);
    if (fresh) b->second = (!seen || in_scope.count(pe.entry.digest.hash)) && blobs.Has(pe.entry.digest);
    if (!b->second)
      return FailedPrecondition(what + ": file '" + pe.path + "' (" + pe.entry.digest.ToString() +
                                ") is not in CAS; upload it first (kiln submit does this)");
  }
  if (hashes) {
    for (const auto& [d, dir] : reach->nodes) hashes->push_back(d.hash);
    for (const auto& [h, ok] : present) hashes->push_back(h.substr(0, h.find('/')));
  }
  return Status::Ok();
}

Result<Cas::GcStats> Cas::Collect() {
  GcStats st;
  auto live = trees_->LiveHashes(cfg_.output_retention.count() / 1000);
  if (!live.ok()) return live.status();
  int64_t now = NowUnixMs() / 1000;
  int64_t min_age_cut = now - cfg_.cas_min_age.count() / 1000;
  int64_t max_age_cut = now - cfg_.cas_max_age.count() / 1000;
  std::vector<cas::BlobInfo> candidates;
  blobs_->ForEach([&](const cas::BlobInfo& b) {
    if (live->count(b.digest.hash) || b.last_used_s >= min_age_cut) {
      ++st.blobs_kept;
      st.bytes_kept += b.digest.size;
      return;
    }
    candidates.push_back(b);
  });
  // Oldest first: past the age limit they go in any case, then more while
  // the store is over its size cap.
  std::sort(candidates.begin(), candidates.end(),
            [](const cas::BlobInfo& a, const cas::BlobInfo& b) { return a.last_used_s < b.last_used_s; });
  int64_t total = st.bytes_kept;
  for (const auto& b : candidates) total += b.digest.size;
  for (const auto& b : candidates) {
    bool too_old = b.last_used_s < max_age_cut;
    bool over = cfg_.cas_max_bytes > 0 && total > cfg_.cas_max_bytes;
    if ((too_old || over) && blobs_->RemoveIfUnused(b.digest, min_age_cut)) {
      ++st.blobs_removed;
      st.bytes_removed += b.digest.size;
      st.removed.push_back(b.digest.hash);
      total -= b.digest.size;
    } else {
      ++st.blobs_kept;
      st.bytes_kept += b.digest.size;
    }
  }
  auto t = trees_->DeleteUnreachable(*live, cfg_.cas_max_age.count() / 1000);
  if (!t.ok()) return t.status();
  st.trees_removed = *t;
  blobs_->RemoveStaleUploads(now - 86400);
  return st;
}

namespace {

class CasServiceImpl final : public v1::CasService::Service {
 public:
  explicit CasServiceImpl(const CasServiceDeps& d) : d_(d) {}

  // Present means present in the caller's scopes: another scope's content
  // reads as missing (the caller uploads it, and so proves it holds it).
  grpc::Status FindMissing(grpc::ServerContext* ctx, const v1::FindMissingRequest* req,
                           v1::FindMissingResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kSubmit, "", true);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (req->blobs_size() + req->trees_size() > kMaxDigestsPerCall)
      return api::ToGrpc(InvalidArgument("at most 10000 digests per FindMissing call"));
    std::vector<std::string> stored;  // hashes present somewhere
    std::vector<const v1::Digest*> stored_blobs;
    for (const auto& d : req->blobs()) {
      if (auto s = cas::CheckDigest(api::FromProto(d), "blob"); !s.ok()) return api::ToGrpc(s);
      if (!d_.blobs.Has(api::FromProto(d))) {
        *resp->add_blobs() = d;
      } else {
        stored.push_back(d.hash());
        stored_blobs.push_back(&d);
      }
    }
    std::vector<cas::Digest> trees;
    for (const auto& d : req->trees()) {
      if (auto s = cas::CheckDigest(api::FromProto(d), "tree node"); !s.ok()) return api::ToGrpc(s);
      trees.push_back(api::FromProto(d));
    }
    auto missing = d_.trees.FindMissing(trees);
    if (!missing.ok()) return api::ToGrpc(missing.status());
    std::unordered_set<std::string> missing_nodes;
    for (const auto& d : *missing) {
      *resp->add_trees() = api::ToProto(d);
      missing_nodes.insert(d.hash);
    }
    std::vector<const cas::Digest*> stored_nodes;
    for (const auto& d : trees) {
      if (!missing_nodes.count(d.hash)) {
        stored.push_back(d.hash);
        stored_nodes.push_back(&d);
      }
    }
    auto unseen = d_.scopes.Unseen(*who, stored);
    if (!unseen.ok()) return api::ToGrpc(unseen.status());
    for (const auto* d : stored_blobs)
      if (unseen->count(d->hash())) *resp->add_blobs() = *d;
    for (const auto* d : stored_nodes)
      if (unseen->count(d->hash)) *resp->add_trees() = api::ToProto(*d);
    return grpc::Status::OK;
  }

  grpc::Status BatchUpload(grpc::ServerContext* ctx, const v1::BatchUploadRequest* req,
                           v1::BatchUploadResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kSubmit, "", true);
    if (!who.ok()) return api::ToGrpc(who.status());
    std::vector<std::pair<cas::Digest, std::string_view>> ok;
    std::vector<int> index(static_cast<size_t>(req->blobs_size()), -1);
    int64_t total = 0;
    for (int i = 0; i < req->blobs_size(); ++i) {
      const auto& b = req->blobs(i);
      auto* st = resp->add_statuses();
      *st->mutable_digest() = b.digest();
      cas::Digest d = api::FromProto(b.digest());
      Status s = cas::CheckDigest(d, "blob");
      if (s.ok() && d.size > d_.max_blob_bytes) s = TooLarge(d);
      total += static_cast<int64_t>(b.data().size());
      if (s.ok() && total > cas::kMaxBatchUploadBytes)
        s = InvalidArgument("BatchUpload carries at most 4 MiB; send larger blobs with Write");
      if (!s.ok()) {
        st->set_code(static_cast<int>(s.code()));
        st->set_message(s.message());
        continue;
      }
      // The store skips a blob it has without reading the data: every
      // upload is checked here, so joining a scope takes the bytes, and a
      // stored blob and an absent one get the same answer.
      if (static_cast<int64_t>(b.data().size()) != d.size || cas::DigestOf(b.data()) != d) {
        st->set_code(static_cast<int>(Code::kInvalidArgument));
        st->set_message("uploaded content does not match its digest: expected " + d.ToString() + ", got " +
                        cas::DigestOf(b.data()).ToString());
        continue;
      }
      index[static_cast<size_t>(i)] = static_cast<int>(ok.size());
      ok.emplace_back(d, b.data());
    }
    auto results = d_.blobs.PutMany(ok);
    std::vector<std::string> stored;
    for (int i = 0; i < req->blobs_size(); ++i) {
      int k = index[static_cast<size_t>(i)];
      if (k < 0) continue;
      const Status& s = results[static_cast<size_t>(k)];
      resp->mutable_statuses(i)->set_code(static_cast<int>(s.code()));
      resp->mutable_statuses(i)->set_message(s.message());
      if (s.ok()) {
        stored.push_back(req->blobs(i).digest().hash());
        d_.metrics.uploads.Inc();
        d_.metrics.upload_bytes.Inc(static_cast<double>(req->blobs(i).data().size()));
      }
    }
    if (Status s = Join(*who, stored); !s.ok()) return api::ToGrpc(s);
    return grpc::Status::OK;
  }

  grpc::Status BatchRead(grpc::ServerContext* ctx, const v1::BatchReadRequest* req, v1::BatchReadResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kRead, "", true);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (req->digests_size() > kMaxDigestsPerCall) return api::ToGrpc(InvalidArgument("at most 10000 digests per call"));
    std::vector<std::string> asked;
    for (const auto& pd : req->digests()) asked.push_back(pd.hash());
    auto seen = d_.scopes.Seen(*who, asked);
    if (!seen.ok()) return api::ToGrpc(seen.status());
    int64_t total = 0;
    for (const auto& pd : req->digests()) {
      auto* st = resp->add_statuses();
      *st->mutable_digest() = pd;
      cas::Digest d = api::FromProto(pd);
      Status s = cas::CheckDigest(d, "blob");
      if (s.ok() && !seen->count(d.hash)) s = NotFound("blob " + d.ToString() + " is not in CAS");
      if (s.ok() && total + d.size + kBatchReadOverheadPerBlob > kMaxBatchReadBytes)
        s = ResourceExhausted("BatchRead returns at most 3 MiB; read " + d.ToString() + " with Read or in another call");
      if (s.ok()) {
        auto data = d_.blobs.Read(d, 0, 0);
        if (data.ok()) {
          total += d.size + kBatchReadOverheadPerBlob;
          d_.metrics.reads.Inc();
          d_.metrics.read_bytes.Inc(static_cast<double>(data->size()));
          auto* b = resp->add_blobs();
          *b->mutable_digest() = pd;
          *b->mutable_data() = std::move(*data);
        } else {
          s = data.status();
        }
      }
      st->set_code(static_cast<int>(s.code()));
      st->set_message(s.message());
    }
    return grpc::Status::OK;
  }

  grpc::Status Write(grpc::ServerContext* ctx, grpc::ServerReader<v1::WriteRequest>* reader,
                     v1::WriteResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kSubmit, "", true);
    if (!who.ok()) return api::ToGrpc(who.status());
    v1::WriteRequest m;
    if (!reader->Read(&m)) return api::ToGrpc(InvalidArgument("empty Write stream"));
    cas::Digest d = api::FromProto(m.digest());
    if (auto s = cas::CheckDigest(d, "blob"); !s.ok()) return api::ToGrpc(s);
    if (d.size > d_.max_blob_bytes) return api::ToGrpc(TooLarge(d));
    // Stored but not in the caller's scopes: uploaded like an absent blob
    // (the same answers), and joins them once the bytes are verified.
    auto seen = d_.scopes.Seen(*who, {d.hash});
    if (!seen.ok()) return api::ToGrpc(seen.status());
    if (!seen->empty() && d_.blobs.Has(d)) {
      resp->set_committed_size(d.size);
      resp->set_complete(true);
      return grpc::Status::OK;
    }
    auto w = d_.blobs.OpenWriter(d, m.upload_id());
    if (!w.ok()) return api::ToGrpc(w.status());
    auto& writer = **w;
    for (;;) {
      if (m.offset() != writer.committed()) {
        return api::ToGrpc(FailedPrecondition("write of " + d.ToString() + " at offset " + std::to_string(m.offset()) +
                                              ", but the server holds " + std::to_string(writer.committed()) +
                                              " bytes of this upload; resume from QueryWrite's committed_size"));
      }
      if (Status s = writer.Append(m.data()); !s.ok()) return api::ToGrpc(s);
      if (m.finish()) {
        if (Status s = writer.Commit(); !s.ok()) return api::ToGrpc(s);
        if (Status s = Join(*who, {d.hash}); !s.ok()) return api::ToGrpc(s);
        d_.metrics.uploads.Inc();
        d_.metrics.upload_bytes.Inc(static_cast<double>(d.size));
        resp->set_committed_size(d.size);
        resp->set_complete(true);
        return grpc::Status::OK;
      }
      if (!reader->Read(&m)) break;
    }
    return api::ToGrpc(Aborted("upload of " + d.ToString() + " ended before finish after " +
                               std::to_string(writer.committed()) + " bytes; resume it with the same upload id"));
  }

  grpc::Status QueryWrite(grpc::ServerContext* ctx, const v1::QueryWriteRequest* req, v1::WriteResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kSubmit, "", true);
    if (!who.ok()) return api::ToGrpc(who.status());
    cas::Digest d = api::FromProto(req->digest());
    if (auto s = cas::CheckDigest(d, "blob"); !s.ok()) return api::ToGrpc(s);
    auto seen = d_.scopes.Seen(*who, {d.hash});
    if (!seen.ok()) return api::ToGrpc(seen.status());
    if (d_.blobs.Has(d) && !seen->empty()) {
      resp->set_committed_size(d.size);
      resp->set_complete(true);
    } else {
      resp->set_committed_size(d_.blobs.PendingSize(d, req->upload_id()));
    }
    return grpc::Status::OK;
  }

  grpc::Status Read(grpc::ServerContext* ctx, const v1::ReadRequest* req,
                    grpc::ServerWriter<v1::ReadResponse>* writer) override {
    auto who = d_.guard.Require(ctx, auth::Role::kRead, "", true);
    if (!who.ok()) return api::ToGrpc(who.status());
    cas::Digest d = api::FromProto(req->digest());
    if (auto s = cas::CheckDigest(d, "blob"); !s.ok()) return api::ToGrpc(s);
    if (req->offset() < 0 || req->offset() > d.size || req->limit() < 0)
      return api::ToGrpc(OutOfRange("read offset or limit outside blob " + d.ToString()));
    int64_t end = req->limit() > 0 && req->limit() < d.size - req->offset() ? req->offset() + req->limit() : d.size;
    int64_t off = req->offset();
    auto seen = d_.scopes.Seen(*who, {d.hash});
    if (!seen.ok()) return api::ToGrpc(seen.status());
    if (seen->empty() || !d_.blobs.Has(d)) return api::ToGrpc(NotFound("blob " + d.ToString() + " is not in CAS"));
    do {
      auto data = d_.blobs.Read(d, off, std::min(kReadChunk, end - off));
      if (!data.ok()) return api::ToGrpc(data.status());
      off += static_cast<int64_t>(data->size());
      v1::ReadResponse r;
      *r.mutable_data() = std::move(*data);
      if (ctx->IsCancelled() || !writer->Write(r)) return grpc::Status::CANCELLED;
    } while (off < end);
    d_.metrics.reads.Inc();
    d_.metrics.read_bytes.Inc(static_cast<double>(end - req->offset()));
    return grpc::Status::OK;
  }

  grpc::Status UploadTrees(grpc::ServerContext* ctx, const v1::UploadTreesRequest* req,
                           v1::UploadTreesResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kSubmit, "", true);
    if (!who.ok()) return api::ToGrpc(who.status());
    if (req->nodes_size() > kMaxDigestsPerCall) return api::ToGrpc(InvalidArgument("at most 10000 nodes per call"));
    std::vector<std::pair<cas::Digest, cas::Directory>> nodes;
    for (const auto& n : req->nodes()) {
      cas::Digest claimed = api::FromProto(n.digest());
      if (auto s = cas::CheckDigest(claimed, "tree node"); !s.ok()) return api::ToGrpc(s);
      std::string where = claimed.ToString();
      auto dir = api::FromProto(n.directory(), where);
      if (!dir.ok()) return api::ToGrpc(dir.status());
      // As sent: a node in another order than the canonical one is refused,
      // not sorted (docs/api.md, "CasService").
      if (Status s = cas::CheckDirectory(*dir, "node " + where); !s.ok()) return api::ToGrpc(s);
      cas::Digest actual = cas::DigestOf(*dir);
      if (actual != claimed) {
        return api::ToGrpc(InvalidArgument("tree node " + claimed.ToString() +
                                           ": its canonical encoding hashes to " + actual.ToString()));
      }
      nodes.emplace_back(claimed, std::move(*dir));
    }
    std::vector<std::string> hashes;
    for (const auto& [d, dir] : nodes) hashes.push_back(d.hash);
    if (Status s = d_.trees.Insert(nodes); !s.ok()) return api::ToGrpc(s);
    if (Status s = Join(*who, hashes); !s.ok()) return api::ToGrpc(s);
    resp->set_stored(static_cast<int>(nodes.size()));
    return grpc::Status::OK;
  }

  grpc::Status GetTree(grpc::ServerContext* ctx, const v1::GetTreeRequest* req, v1::GetTreeResponse* resp) override {
    auto who = d_.guard.Require(ctx, auth::Role::kRead, "", true);
    if (!who.ok()) return api::ToGrpc(who.status());
    cas::Digest root = api::FromProto(req->root());
    if (auto s = cas::CheckDigest(root, "tree root"); !s.ok()) return api::ToGrpc(s);
    size_t start = 0;
    if (!req->page_token().empty()) {
      const std::string& t = req->page_token();
      auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), start);
      if (ec != std::errc() || p != t.data() + t.size()) return api::ToGrpc(InvalidArgument("bad page_token"));
    }
    auto reach = d_.trees.Reachable(root);
    if (!reach.ok()) return api::ToGrpc(reach.status());
    if (start == 0 && reach->nodes.empty())
      return api::ToGrpc(NotFound("tree " + root.ToString() + " is not in CAS"));
    // Every node of the tree must be in the caller's scopes, else the tree
    // reads as absent: nothing (not even a size check) says it exists elsewhere.
    std::vector<std::string> hashes;
    for (const auto& [d, dir] : reach->nodes) hashes.push_back(d.hash);
    auto seen = d_.scopes.Seen(*who, hashes);
    if (!seen.ok()) return api::ToGrpc(seen.status());
    if (seen->size() < std::unordered_set<std::string>(hashes.begin(), hashes.end()).size())
      return api::ToGrpc(NotFound("tree " + root.ToString() + " is not in CAS"));
    if (Status s = cas::CheckNodeSizes(root, reach->nodes); !s.ok()) return api::ToGrpc(s);
    int64_t bytes = 0;
    size_t i = start;
    for (; i < reach->nodes.size(); ++i) {
      v1::TreeNode n;
      *n.mutable_digest() = api::ToProto(reach->nodes[i].first);
      api::ToProto(reach->nodes[i].second, n.mutable_directory());
      auto size = static_cast<int64_t>(n.ByteSizeLong());
      if (resp->nodes_size() > 0 && bytes + size > kTreePageBytes) break;  // a big node gets a page of its own
      bytes += size;
      *resp->add_nodes() = std::move(n);
    }
    if (i < reach->nodes.size()) resp->set_next_page_token(std::to_string(i));
    return grpc::Status::OK;
  }

 private:
  // Verified content joins the uploader's scopes.
  Status Join(const Caller& who, const std::vector<std::string>& hashes) {
    auto to = d_.scopes.UploadTo(who);
    if (!to.ok()) return to.status();
    return d_.scopes.store().Add(*to, hashes);
  }

  Status TooLarge(const cas::Digest& d) {
    return InvalidArgument("blob " + d.ToString() + " is larger than the limit of " +
                           std::to_string(d_.max_blob_bytes) + " bytes (cas_max_blob_bytes)");
  }

  CasServiceDeps d_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeCasService(const CasServiceDeps& deps) {
  return std::make_unique<CasServiceImpl>(deps);
}

}  // namespace kiln::controller
