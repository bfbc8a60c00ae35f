#include "cas/client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>

#include "api/convert.h"
#include "cas/limits.h"
#include "common/util.h"
#include "common/write_all.h"

namespace kiln::cas {

namespace {

namespace fs = std::filesystem;

constexpr int64_t kSmallBlob = 1 << 20;     // larger blobs are streamed
constexpr int64_t kBatchBytes = 3 << 20;    // per BatchUpload (under kMaxBatchUploadBytes)
constexpr int64_t kChunk = 1 << 20;         // Write stream chunk
constexpr size_t kDigestsPerCall = kMaxDigestsPerCall;
constexpr size_t kCallsInFlight = 4;

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

Status FromGrpc(const grpc::Status& s, const std::string& what) {
  Status st = api::FromGrpc(s);
  return Status(st.code(), what + ": " + st.message());
}

Result<std::string> ReadFile(const std::string& path) {
  auto data = ReadWholeFile(path, /*nofollow=*/true);
  if (!data.ok()) return FailedPrecondition(data.status().message());
  return data;
}

Status Changed(const std::string& path) {
  return Aborted(path + " changed while it was being sent; run the command again");
}

// Writes `data` to `path` through a temporary file in the same directory.
Status WriteFileAtomic(const std::string& path, std::string_view data, mode_t mode) {
  std::string tmp = path + ".kiln-tmp-" + RandomHex(4);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return FailedPrecondition(Errno("cannot create " + tmp));
  if (!WriteAll(fd, data)) {
    auto s = FailedPrecondition(Errno("cannot write " + tmp));
    ::close(fd);
    ::unlink(tmp.c_str());
    return s;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    auto s = FailedPrecondition(Errno("cannot write " + path));
    ::unlink(tmp.c_str());
    return s;
  }
  return Status::Ok();
}

}  // namespace

std::unordered_map<std::string, const Directory*> FetchedTree::by_hash() const {
  std::unordered_map<std::string, const Directory*> m;
  for (const auto& [d, dir] : nodes) m[d.hash] = &dir;
  return m;
}

CasClient::CasClient(std::shared_ptr<grpc::Channel> channel, std::chrono::seconds rpc_timeout)
    : stub_(v1::CasService::NewStub(std::move(channel))), timeout_(rpc_timeout) {}

std::unique_ptr<grpc::ClientContext> CasClient::Ctx() const {
  auto c = std::make_unique<grpc::ClientContext>();
  c->set_deadline(std::chrono::system_clock::now() + timeout_);
  c->set_wait_for_ready(false);
  return c;
}

Result<UploadStats> CasClient::UploadTree(const BuiltTree& t) {
  UploadStats st;
  // 1. Which blobs and nodes does CAS lack?
  std::vector<Digest> blobs, nodes;
  for (const auto& [d, path] : t.files) blobs.push_back(d);
  for (const auto& [d, dir] : t.nodes) nodes.push_back(d);
  std::vector<Digest> missing_blobs, missing_nodes;
  size_t bi = 0, ni = 0;
  while (bi < blobs.size() || ni < nodes.size()) {
    v1::FindMissingRequest req;
    size_t n = 0;
    for (; bi < blobs.size() && n < kDigestsPerCall; ++bi, ++n) *req.add_blobs() = api::ToProto(blobs[bi]);
    for (; ni < nodes.size() && n < kDigestsPerCall; ++ni, ++n) *req.add_trees() = api::ToProto(nodes[ni]);
    v1::FindMissingResponse resp;
    auto ctx = Ctx();
    auto s = stub_->FindMissing(ctx.get(), req, &resp);
    if (!s.ok()) return FromGrpc(s, "cannot ask CAS which files it lacks");
    st.missing_checked += static_cast<int64_t>(n);
    for (const auto& d : resp.blobs()) missing_blobs.push_back(api::FromProto(d));
    for (const auto& d : resp.trees()) missing_nodes.push_back(api::FromProto(d));
  }
  // 2. Blobs: small ones in batches, large ones streamed; a few calls in
  // flight, so reading files here overlaps the server's writes to disk.
  std::vector<std::vector<Digest>> work;
  int64_t batch_bytes = 0;
  for (const auto& d : missing_blobs) {
    if (!t.files.count(d)) return Internal("CAS asked for a blob that is not in the tree: " + d.ToString());
    if (d.size > kSmallBlob) {
      work.push_back({d});
      continue;
    }
    if (work.empty() || work.back().front().size > kSmallBlob || batch_bytes + d.size > kBatchBytes) {
      work.emplace_back();
      batch_bytes = 0;
    }
    work.back().push_back(d);
    batch_bytes += d.size;
  }
  std::mutex mu;
  Status failed;
  std::atomic<size_t> next{0};
  auto upload_one = [&](const std::vector<Digest>& item) -> Status {
    if (item.size() == 1 && item[0].size > kSmallBlob) return UploadBlob(item[0], t.files.at(item[0]), nullptr);
    v1::BatchUploadRequest batch;
    for (const auto& d : item) {
      const std::string& path = t.files.at(d);
      auto data = ReadFile(path);
      if (!data.ok()) return data.status();
      if (DigestOf(*data) != d) return Changed(path);
      auto* b = batch.add_blobs();
      *b->mutable_digest() = api::ToProto(d);
      *b->mutable_data() = std::move(*data);
    }
    v1::BatchUploadResponse resp;
    auto ctx = Ctx();
    auto s = stub_->BatchUpload(ctx.get(), batch, &resp);
    if (!s.ok()) return FromGrpc(s, "cannot upload to CAS");
    for (const auto& bs : resp.statuses()) {
      if (bs.code() == 0) continue;
      Digest d = api::FromProto(bs.digest());
      auto it = t.files.find(d);
      return Status(static_cast<Code>(bs.code()), (it != t.files.end() ? it->second : d.ToString()) + ": " + bs.message());
    }
    return Status::Ok();
  };
  auto worker = [&] {
    for (;;) {
      {
        std::lock_guard g(mu);
        if (!failed.ok()) return;
      }
      size_t k = next++;
      if (k >= work.size()) return;
      Status s = upload_one(work[k]);
      std::lock_guard g(mu);
      if (!s.ok()) {
        if (failed.ok()) failed = s;
        return;
      }
      st.blobs += static_cast<int64_t>(work[k].size());
      for (const auto& d : work[k]) st.blob_bytes += d.size;
    }
  };
  {
    std::vector<std::thread> threads;
    for (size_t i = 1; i < std::min<size_t>(kCallsInFlight, work.size()); ++i) threads.emplace_back(worker);
    worker();
    for (auto& th : threads) th.join();
  }
  if (!failed.ok()) return failed;
  // 3. Nodes, once their blobs are in.
  v1::UploadTreesRequest treq;
  int64_t tbytes = 0;
  auto flush_nodes = [&]() -> Status {
    if (treq.nodes_size() == 0) return Status::Ok();
    v1::UploadTreesResponse resp;
    auto ctx = Ctx();
    auto s = stub_->UploadTrees(ctx.get(), treq, &resp);
    if (!s.ok()) return FromGrpc(s, "cannot upload directory nodes to CAS");
    st.nodes += treq.nodes_size();
    st.node_bytes += tbytes;
    treq.Clear();
    tbytes = 0;
    return Status::Ok();
  };
  for (const auto& d : missing_nodes) {
    auto it = t.nodes.find(d);
    if (it == t.nodes.end()) return Internal("CAS asked for a node that is not in the tree: " + d.ToString());
    if (treq.nodes_size() > 0 &&
        (tbytes + d.size > kBatchBytes || treq.nodes_size() >= static_cast<int>(kDigestsPerCall)))
      if (auto s = flush_nodes(); !s.ok()) return s;
    auto* n = treq.add_nodes();
    *n->mutable_digest() = api::ToProto(d);
    api::ToProto(it->second, n->mutable_directory());
    tbytes += d.size;
  }
  if (auto s = flush_nodes(); !s.ok()) return s;
  return st;
}

Status CasClient::UploadBlob(const Digest& d, const std::string& path, UploadStats* stats) {
  if (d.size <= kSmallBlob) {
    auto data = ReadFile(path);
    if (!data.ok()) return data.status();
    if (DigestOf(*data) != d) return Changed(path);
    v1::BatchUploadRequest req;
    auto* b = req.add_blobs();
    *b->mutable_digest() = api::ToProto(d);
    *b->mutable_data() = std::move(*data);
    v1::BatchUploadResponse resp;
    auto ctx = Ctx();
    auto s = stub_->BatchUpload(ctx.get(), req, &resp);
    if (!s.ok()) return FromGrpc(s, "cannot upload " + path);
    if (resp.statuses_size() == 1 && resp.statuses(0).code() != 0)
      return Status(static_cast<Code>(resp.statuses(0).code()), path + ": " + resp.statuses(0).message());
  } else {
    if (auto s = StreamFile(d, path); !s.ok()) return s;
  }
  if (stats != nullptr) {
    ++stats->blobs;
    stats->blob_bytes += d.size;
  }
  return Status::Ok();
}

Status CasClient::StreamFile(const Digest& d, const std::string& path) {
  std::string upload_id = RandomHex(8);
  Status last;
  for (int attempt = 0; attempt < 4; ++attempt) {
    int64_t offset = 0;
    if (attempt > 0) {
      v1::QueryWriteRequest q;
      *q.mutable_digest() = api::ToProto(d);
      q.set_upload_id(upload_id);
      v1::WriteResponse qr;
      auto ctx = Ctx();
      ctx->set_wait_for_ready(true);
      auto s = stub_->QueryWrite(ctx.get(), q, &qr);
      if (!s.ok()) {
        last = FromGrpc(s, "cannot resume the upload of " + path);
        continue;
      }
      if (qr.complete()) return Status::Ok();
      offset = qr.committed_size();
    }
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return FailedPrecondition(Errno("cannot read " + path));
    v1::WriteResponse resp;
    auto ctx = Ctx();
    auto writer = stub_->Write(ctx.get(), &resp);
    std::string buf(static_cast<size_t>(kChunk), '\0');
    bool sent_all = true;
    for (;;) {
      ssize_t n = ::pread(fd, buf.data(), buf.size(), offset);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ::close(fd);
        writer->WritesDone();
        writer->Finish();
        return FailedPrecondition(Errno("cannot read " + path));
      }
      v1::WriteRequest m;
      *m.mutable_digest() = api::ToProto(d);
      m.set_upload_id(upload_id);
      m.set_offset(offset);
      m.set_data(buf.data(), static_cast<size_t>(n));
      offset += n;
      bool last_chunk = offset >= d.size || n == 0;
      m.set_finish(last_chunk);
      if (!writer->Write(m)) {
        sent_all = false;
        break;
      }
      if (last_chunk) break;
    }
    ::close(fd);
    if (sent_all) writer->WritesDone();
    auto s = writer->Finish();
    if (s.ok() && resp.complete()) return Status::Ok();
    if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      // The bytes, or their number, are not what we hashed.
      for (const char* m : {"does not match", "longer than the digest", "ended after"})
        if (s.error_message().find(m) != std::string::npos) return Changed(path);
      return FromGrpc(s, "cannot upload " + path);
    }
    last = FromGrpc(s, "cannot upload " + path);
  }
  return last;
}

Result<FetchedTree> CasClient::GetTree(const Digest& root) {
  FetchedTree t;
  t.root = root;
  v1::GetTreeRequest req;
  *req.mutable_root() = api::ToProto(root);
  for (;;) {
    v1::GetTreeResponse resp;
    auto ctx = Ctx();
    auto s = stub_->GetTree(ctx.get(), req, &resp);
    if (!s.ok()) return FromGrpc(s, "cannot fetch tree " + root.ToString());
    for (const auto& n : resp.nodes()) {
      Digest claimed = api::FromProto(n.digest());
      auto dir = api::FromProto(n.directory(), claimed.ToString());
      if (!dir.ok()) return dir.status();
      if (auto st = Normalize(&*dir, "node " + claimed.ToString()); !st.ok()) return st;
      if (DigestOf(*dir) != claimed)
        return Internal("CAS sent tree node " + claimed.ToString() + " whose content does not match its digest");
      t.nodes.emplace_back(claimed, std::move(*dir));
    }
    if (resp.next_page_token().empty()) break;
    req.set_page_token(resp.next_page_token());
  }
  return t;
}

Status CasClient::ReadToFile(const Digest& d, const std::string& path) {
  std::string tmp = path + ".kiln-tmp-" + RandomHex(4);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return FailedPrecondition(Errno("cannot create " + tmp));
  v1::ReadRequest req;
  *req.mutable_digest() = api::ToProto(d);
  auto ctx = Ctx();
  auto reader = stub_->Read(ctx.get(), req);
  v1::ReadResponse chunk;
  Hasher h;
  Status st;
  while (st.ok() && reader->Read(&chunk)) {
    h.Update(chunk.data());
    if (!WriteAll(fd, chunk.data())) {
      st = FailedPrecondition(Errno("cannot write " + tmp));
      ctx->TryCancel();
    }
  }
  auto gs = reader->Finish();
  ::close(fd);
  if (st.ok() && !gs.ok()) st = FromGrpc(gs, "cannot fetch " + d.ToString());
  if (st.ok() && h.Finish() != d) st = Internal("CAS sent content for " + d.ToString() + " that does not match it");
  if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) st = FailedPrecondition(Errno("cannot write " + path));
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

Status CasClient::FetchBlobs(const std::vector<Digest>& blobs, const std::function<std::string(const Digest&)>& dest) {
  std::vector<Digest> small;
  for (const auto& d : blobs) {
    if (d.size > kSmallBlob) {
      if (auto s = ReadToFile(d, dest(d)); !s.ok()) return s;
    } else {
      small.push_back(d);
    }
  }
  size_t i = 0;
  while (i < small.size()) {
    v1::BatchReadRequest req;
    int64_t bytes = 0;
    // The service counts each blob's framing too (cas/limits.h).
    for (; i < small.size() &&
           (req.digests_size() == 0 || bytes + small[i].size + kBatchReadOverheadPerBlob <= kMaxBatchReadBytes) &&
           req.digests_size() < kMaxDigestsPerCall;
         ++i) {
      *req.add_digests() = api::ToProto(small[i]);
      bytes += small[i].size + kBatchReadOverheadPerBlob;
    }
    v1::BatchReadResponse resp;
    auto ctx = Ctx();
    auto s = stub_->BatchRead(ctx.get(), req, &resp);
    if (!s.ok()) return FromGrpc(s, "cannot fetch files from CAS");
    for (const auto& st : resp.statuses())
      if (st.code() != 0)
        return Status(static_cast<Code>(st.code()), "cannot fetch " + api::FromProto(st.digest()).ToString() + ": " +
                                                        st.message());
    for (const auto& b : resp.blobs()) {
      Digest d = api::FromProto(b.digest());
      if (DigestOf(b.data()) != d) return Internal("CAS sent content for " + d.ToString() + " that does not match it");
      if (auto ws = WriteFileAtomic(dest(d), b.data(), 0644); !ws.ok()) return ws;
    }
  }
  return Status::Ok();
}

Result<MaterializeStats> WriteTree(const FetchedTree& tree, const std::string& dest,
                                   const std::function<Status(const Entry&, const std::string& path)>& place_file) {
  auto by_hash = tree.by_hash();
  auto entries = Flatten(tree.root, by_hash, int64_t{10} << 20);
  if (!entries.ok()) return entries.status();
  MaterializeStats st;
  std::error_code ec;
  fs::create_directories(dest, ec);
  if (ec) return FailedPrecondition("cannot create " + dest + ": " + ec.message());
  for (const auto& pe : *entries) {
    std::string p = dest + "/" + pe.path;
    const Entry& e = pe.entry;
    struct stat s {};
    bool exists = ::lstat(p.c_str(), &s) == 0;
    switch (e.kind) {
      case Kind::kDir:
        if (exists && S_ISDIR(s.st_mode)) break;
        if (exists) return FailedPrecondition("cannot create directory " + p + ": something else is in the way");
        if (::mkdir(p.c_str(), 0755) != 0) return FailedPrecondition(Errno("cannot create directory " + p));
        ++st.dirs;
        break;
      case Kind::kSymlink:
        if (exists && S_ISDIR(s.st_mode)) return FailedPrecondition("cannot create symlink " + p + ": a directory is in the way");
        if (exists) ::unlink(p.c_str());
        if (::symlink(e.target.c_str(), p.c_str()) != 0) return FailedPrecondition(Errno("cannot create symlink " + p));
        ++st.links;
        break;
      case Kind::kFile:
        if (exists && S_ISDIR(s.st_mode)) return FailedPrecondition("cannot write " + p + ": a directory is in the way");
        if (auto ps = place_file(e, p); !ps.ok()) return ps;
        ++st.files;
        st.bytes += e.digest.size;
        break;
    }
  }
  return st;
}

}  // namespace kiln::cas
