#include "worker/compile_cache.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_set>

#include "api/compile_convert.h"
#include "cas/client.h"
#include "cas/digest.h"
#include "cc/deps.h"
#include "cc/frame.h"
#include "cc/wire.h"
#include "controller/request_checks.h"
#include "kiln/cc/v1/cc.pb.h"
#include "worker/local_cas.h"

namespace kiln::worker {
namespace {

namespace fs = std::filesystem;
namespace ccv1 = kiln::cc::v1;

constexpr size_t kMaxEvents = 10000;
constexpr size_t kMaxIdentities = 256;
constexpr size_t kMaxText = 16 << 10;
const char* const kOutcomes[] = {"hit", "hit_preprocessed", "miss", "fallback", "failed"};

Status FromGrpc(const grpc::Status& s, const std::string& what) {
  return Status(static_cast<Code>(s.error_code()), what + ": " + s.error_message());
}

// Reads exactly `size` bytes of the file into `out`.
bool ReadInto(const std::string& path, int64_t size, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  out->resize(static_cast<size_t>(size));
  size_t got = 0;
  while (got < out->size()) {
    ssize_t n = ::read(fd, out->data() + got, out->size() - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  if (got == out->size()) return true;
  out->clear();
  return false;
}

}  // namespace

struct CompileCacheServer::Impl {
  CompileCacheJob job;
  std::atomic<bool> remote_started{false};  // job.note said so
  SecretMask mask;  // job.secrets
  CompileCacheServices svc;
  int listen_fd = -1;
  int wake[2] = {-1, -1};
  std::thread acceptor;

  std::mutex mu;  // guards everything below
  std::condition_variable ended;  // a connection's thread is done
  std::map<int, std::thread> conns;
  std::vector<std::thread> finished;  // threads whose connection ended, to join
  bool stopping = false;
  // Identities this job's kiln-cc set (a bound per job); they are kept in
  // the worker's memory (svc.identities), else in the job's own.
  std::set<std::pair<std::string, int>> identities_set;
  IdentityMemory own_identities;
  IdentityMemory& Identities() { return svc.identities != nullptr ? *svc.identities : own_identities; }
  v1::RecordCompilesRequest record;
  std::set<std::string> hit_keys;
  std::set<int64_t> hit_manifests;
  int64_t stored_bytes = 0;                // objects this job put in the cache
  struct Pending {
    cc::CompileEntry entry;
    std::string object;  // its bytes (none with entry.manifest_only)
  };
  static constexpr int64_t kMaxPendingBytes = int64_t{256} << 20;
  std::deque<Pending> pending;             // stores not yet made (StoreLoop)
  int64_t pending_bytes = 0;
  int store_failures = 0;
  bool storer_stop = false;
  std::condition_variable storer_cv;
  std::thread storer;
  std::set<grpc::ClientContext*> calls;    // to the controller, cancelled by Stop
  std::string scope;                       // the job's, as the controller said
  std::unordered_set<std::string> present;  // blobs known to be in CAS (uploaded or found there)
  // Per change a known unit missed on (Pass), by the sha256 of its
  // description: how its preprocessor passes went in this job. Bounded: a
  // change beyond kMaxChanges is not tracked (its units always get their pass).
  struct PassOutcomes {
    int missed = 0;
    int served = 0;
  };
  static constexpr size_t kMaxChanges = 10000;
  static constexpr int kPassesBeforeGivingUp = 4;
  std::unordered_map<std::string, PassOutcomes> passes;

  // A call's context: 30 s deadline, cancelled when the server stops (the
  // job ended: its report must not wait for a slow controller).
  class Call {
   public:
    explicit Call(Impl* i) : i_(i) {
      ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      std::lock_guard g(i_->mu);
      if (i_->stopping) ctx_.TryCancel();
      i_->calls.insert(&ctx_);
    }
    ~Call() {
      std::lock_guard g(i_->mu);
      i_->calls.erase(&ctx_);
    }
    grpc::ClientContext* get() { return &ctx_; }

   private:
    Impl* i_;
    grpc::ClientContext ctx_;
  };

  ~Impl() {
    for (int fd : {listen_fd, wake[0], wake[1]})
      if (fd >= 0) ::close(fd);
  }

  void AcceptLoop() {
    while (true) {
      struct pollfd p[2] = {{listen_fd, POLLIN, 0}, {wake[0], POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (p[1].revents != 0) return;
      int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard g(mu);
      for (auto& t : finished) t.join();
      finished.clear();
      if (stopping || conns.size() >= static_cast<size_t>(kMaxConnections)) {
        ::close(fd);  // kiln-cc compiles without the cache
        continue;
      }
      conns.emplace(fd, std::thread([this, fd] { Serve(fd); }));
    }
  }

  void Serve(int fd) {
    // A request carries at most one object and its compile's text.
    const size_t max = static_cast<size_t>(job.max_object_bytes) + (32 << 20);
    while (true) {
      auto bytes = cc::ReadFrame(fd, max);
      if (!bytes.ok()) break;
      ccv1::Request req;
      ccv1::Reply reply;
      if (!req.ParseFromString(*bytes)) {
        reply.set_error("unreadable request");
      } else if (req.req_case() == ccv1::Request::kRemote) {
        Status s = Remote(fd, req.remote(), &reply);
        reply.set_ok(s.ok());
        if (!s.ok()) reply.set_error(s.message());
      } else {
        Status s = Handle(req, &reply);
        reply.set_ok(s.ok());
        if (!s.ok()) reply.set_error(s.message());
      }
      if (!cc::WriteFrame(fd, reply.SerializeAsString()).ok()) break;
    }
    std::lock_guard g(mu);
    ::close(fd);
    auto it = conns.find(fd);
    if (it != conns.end()) {
      finished.push_back(std::move(it->second));
      conns.erase(it);
    }
    ended.notify_all();
  }

  Status Handle(const ccv1::Request& req, ccv1::Reply* reply) {
    switch (req.req_case()) {
      case ccv1::Request::kHello: return Hello(req.hello(), reply->mutable_hello());
      case ccv1::Request::kSetIdentity: return SetIdentity(req.set_identity());
      case ccv1::Request::kLookup: return Lookup(req.lookup(), reply->mutable_lookup());
      case ccv1::Request::kLookupResult: return LookupResult(req.lookup_result(), reply->mutable_lookup_result());
      case ccv1::Request::kFetch: return Fetch(req.fetch(), reply->mutable_fetch());
      case ccv1::Request::kStore: return Store(req.store());
      case ccv1::Request::kReport: return Report(req.report());
      case ccv1::Request::kPass: return Pass(req.pass(), reply->mutable_pass());
      default: return InvalidArgument("unknown request");
    }
  }

  // A path kiln-cc sent, relative to /src (where every remote input and
  // output lives); InvalidArgument when it is elsewhere.
  static Result<std::string> UnderSrc(const std::string& p, const std::string& what) {
    if (p == "/src") return std::string();
    if (p.rfind("/src/", 0) != 0) return InvalidArgument(what + " " + p + " is not under /src");
    return p.substr(5);
  }

  // A compile sent to the farm: the files the farm lacks come from kiln-cc
  // (asked for by index, checked against their digests), go to CAS, and
  // the action runs wherever the controller finds a slot. The reply is the
  // RemoteDone; an error means "compile here".
  Status Remote(int fd, const ccv1::RemoteCompile& rc, ccv1::Reply* reply) {
    if (!job.remote) return FailedPrecondition(job.why_not_remote);
    v1::ExecuteActionRequest req;
    req.set_job_id(job.job_id);
    req.set_attempt(job.attempt);
    v1::Action* a = req.mutable_action();
    a->set_image(job.image);
    for (const auto& arg : rc.argv()) a->add_argv(arg);
    for (const auto& [k, v] : rc.env())
      if (k.rfind("KILN_", 0) != 0) (*a->mutable_env())[k] = v;  // kiln's own are not the compile's
    auto cwd = UnderSrc(rc.cwd(), "working directory");
    if (!cwd.ok()) return cwd.status();
    a->set_cwd(*cwd);
    std::vector<int> need;
    {
      std::lock_guard g(mu);
      for (int i = 0; i < rc.files_size(); ++i) {
        const auto& f = rc.files(i);
        auto rel = UnderSrc(f.path(), "input");
        if (!rel.ok()) return rel.status();
        auto* in = a->add_inputs();
        in->set_path(*rel);
        in->mutable_digest()->set_hash(f.hash());
        in->mutable_digest()->set_size(f.size());
        in->set_executable(f.executable());
        if (!present.count(f.hash())) need.push_back(i);
      }
    }
    for (const auto& d : rc.dirs()) {
      auto rel = UnderSrc(d, "directory");
      if (!rel.ok()) return rel.status();
      if (!rel->empty()) a->add_dirs(*rel);
    }
    for (const auto& o : rc.outputs()) {
      auto rel = UnderSrc(o, "output");
      if (!rel.ok()) return rel.status();
      a->add_outputs(*rel);
    }
    a->set_timeout_ms(10 * 60 * 1000);
    KILN_RETURN_IF_ERROR(controller::ValidateAction(*a));
    if (!need.empty()) {
      ccv1::Reply ask;
      ask.set_ok(true);
      for (int i : need) ask.mutable_remote()->add_need(i);
      KILN_RETURN_IF_ERROR(cc::WriteFrame(fd, ask.SerializeAsString()));
      auto bytes = cc::ReadFrame(fd, size_t{1} << 30);
      if (!bytes.ok()) return bytes.status();
      ccv1::Request data;
      if (!data.ParseFromString(*bytes) || !data.has_remote_data() ||
          data.remote_data().data_size() != static_cast<int>(need.size()))
        return InvalidArgument("expected the bytes of " + std::to_string(need.size()) + " files");
      cas::BuiltTree t;
      for (size_t k = 0; k < need.size(); ++k) {
        const auto& f = rc.files(need[k]);
        const std::string& bytes_k = data.remote_data().data(static_cast<int>(k));
        cas::Digest d = cas::DigestOf(bytes_k);
        if (d.hash != f.hash() || d.size != f.size())
          return InvalidArgument("the bytes sent for " + f.path() + " do not match its digest");
        KILN_RETURN_IF_ERROR(svc.local->Put(d, bytes_k, [&](const std::string& path) {
          t.files[d] = path;
          return Status::Ok();
        }));
      }
      auto up = svc.cas->UploadTree(t);
      if (!up.ok()) return up.status();
      std::lock_guard g(mu);
      for (int i : need) present.insert(rc.files(i).hash());
    }
    Call call(this);
    call.get()->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(a->timeout_ms()) +
                             std::chrono::seconds(30));
    v1::ActionResult r;
    auto st = svc.stub->ExecuteAction(call.get(), req, &r);
    if (!st.ok()) return Unavailable("the controller did not run it: " + st.error_message());
    if (r.error().empty() && job.note && !remote_started.exchange(true))
      job.note("kiln: remote compiles started: the first ran on worker " + r.worker_id() + "; up to " +
               std::to_string(job.farm_slots) + " at once on the other workers of the cluster (KILN_JOBS)\n");
    auto* done = reply->mutable_remote_done();
    done->set_error(r.error());
    done->set_exit_code(r.exit_code());
    if (r.term_signal() != 0) done->set_exit_code(128 + r.term_signal());
    done->set_stdout(std::move(*r.mutable_stdout()));
    done->set_stderr(std::move(*r.mutable_stderr()));
    done->set_worker_id(r.worker_id());
    done->set_run_ms(r.run_ms());
    for (auto& o : *r.mutable_outputs()) {
      auto* out = done->add_outputs();
      out->set_path("/src/" + o.path());
      out->set_data(std::move(*o.mutable_data()));
    }
    return Status::Ok();
  }

  Status Hello(const ccv1::Hello& h, ccv1::HelloReply* r) {
    r->set_enabled(true);
    r->set_remote(job.remote);
    r->set_why_not_remote(job.why_not_remote);
    r->set_image(job.image);
    for (const char* w : {"/src", "/tmp", "/dev/shm"}) r->add_writable(w);
    // Worked out by this job, or by an earlier job of this project in this image.
    auto known = Identities().Get(IdentityMemory::KeyOf(job.project, job.image, h.compiler(), h.language()));
    if (known && known->stat == h.stat().SerializeAsString()) {
      r->set_identity(known->identity);
      for (const auto& d : known->builtin) r->add_builtin_dirs(d);
    }
    return Status::Ok();
  }

  Status SetIdentity(const ccv1::SetIdentity& s) {
    if (!cas::IsHash(s.identity())) return InvalidArgument("identity must be 64 hex digits");
    if (s.compiler().size() > 4096 || s.builtin_dirs_size() > 64) return InvalidArgument("identity too large");
    for (const auto& d : s.builtin_dirs())
      if (d.size() > 4096) return InvalidArgument("include directory name too long");
    {
      std::lock_guard g(mu);
      if (identities_set.size() >= kMaxIdentities) return ResourceExhausted("too many compilers in one job");
      identities_set.emplace(s.compiler(), s.language());
    }
    Identities().Put(IdentityMemory::KeyOf(job.project, job.image, s.compiler(), s.language()),
                     {s.stat().SerializeAsString(), s.identity(), {s.builtin_dirs().begin(), s.builtin_dirs().end()}});
    return Status::Ok();
  }

  Status Lookup(const ccv1::Lookup& l, ccv1::LookupReply* r) {
    if (!cas::IsHash(l.key())) return InvalidArgument("key must be 64 lowercase hex digits");
    std::string known_scope;
    {
      std::lock_guard g(mu);
      known_scope = scope;
    }
    if (l.cached_ok() && svc.memory != nullptr && !known_scope.empty()) {
      if (auto hit = svc.memory->Get(known_scope, l.key())) {
        FillLookup(*hit, r);
        r->set_from_cache(true);
        return Status::Ok();
      }
    }
    v1::LookupCompileRequest req;
    req.set_job_id(job.job_id);
    req.set_attempt(job.attempt);
    req.set_key(l.key());
    req.set_source(l.parts().source());
    req.set_output(l.parts().output());
    v1::LookupCompileResponse resp;
    Call ctx(this);
    auto st = svc.stub->LookupCompile(ctx.get(), req, &resp);
    if (!st.ok()) return FromGrpc(st, "compile cache lookup");
    {
      std::lock_guard g(mu);
      if (scope.empty()) scope = resp.scope();
    }
    if (svc.memory != nullptr && resp.manifests_size() > 0 && !resp.scope().empty())
      svc.memory->Put(resp.scope(), l.key(), resp);
    FillLookup(resp, r);
    return Status::Ok();
  }

  void FillLookup(const v1::LookupCompileResponse& resp, ccv1::LookupReply* r) {
    cas::Digest first;
    for (const auto& wire : resp.manifests()) {
      cc::CompileManifest m = api::FromProto(wire);
      if (r->manifests_size() == 0) first = m.result.object;
      cc::ToWire(std::move(m), r->add_manifests());
    }
    if (r->manifests_size() > 0) {
      // Most lookups hit the newest manifest: its object goes along if the
      // local cache has it (no download on speculation).
      const cas::Digest& d = first;
      if (cas::CheckDigest(d, "object").ok() && d.size <= job.max_object_bytes) {
        if (auto path = svc.local->Cached(d)) ReadInto(*path, d.size, r->mutable_first_object());
      }
    }
    for (const auto& p : resp.previous()) cc::ToWire(api::FromProto(p), r->add_previous());
  }

  Status LookupResult(const ccv1::LookupResult& l, ccv1::LookupResultReply* r) {
    v1::LookupCompileResultRequest req;
    req.set_job_id(job.job_id);
    req.set_attempt(job.attempt);
    req.set_key(l.key());
    v1::LookupCompileResultResponse resp;
    Call ctx(this);
    auto st = svc.stub->LookupCompileResult(ctx.get(), req, &resp);
    if (!st.ok()) return FromGrpc(st, "compile cache lookup");
    r->set_found(resp.found());
    if (resp.found()) cc::ToWire(api::FromProto(resp.result()), r->mutable_result());
    return Status::Ok();
  }

  Status Fetch(const ccv1::Fetch& f, ccv1::FetchReply* r) {
    cas::Digest d{f.hash(), f.size()};
    KILN_RETURN_IF_ERROR(cas::CheckDigest(d, "object"));
    if (d.size > job.max_object_bytes) return InvalidArgument("object larger than this worker serves");
    auto path = svc.local->Blob(*svc.cas, d);
    if (!path.ok()) return path.status();
    if (!ReadInto(*path, d.size, r->mutable_data())) return Unavailable("cannot read " + *path);
    return Status::Ok();
  }

  Status Store(const ccv1::Store& s) {
    Pending p;
    p.entry = cc::FromWire(s);
    const cc::CompileEntry& e = p.entry;
    if (!cas::IsHash(e.key) || !cas::IsHash(e.result.key)) return InvalidArgument("keys must be 64 hex digits");
    const cas::Digest& d = e.result.object;
    KILN_RETURN_IF_ERROR(cc::CheckManifestEntries(e.deps));
    if (!e.manifest_only) {
      if (static_cast<int64_t>(s.object().size()) > job.max_object_bytes)
        return ResourceExhausted("object larger than compile_cache_max_object_bytes: not cached");
      if (cas::DigestOf(s.object()) != d) return InvalidArgument("the object does not match its digest");
      std::lock_guard g(mu);
      if (stored_bytes + d.size > job.max_job_bytes)
        return ResourceExhausted("this job stored its limit of objects in the compile cache (max_output_bytes)");
      stored_bytes += d.size;
    }
    p.object = s.object();
    // Stored in the background: the compile is done, make need not wait for
    // the upload and the database. Past the queue's cap, this call waits.
    std::unique_lock lk(mu);
    if (pending_bytes + static_cast<int64_t>(p.object.size()) > kMaxPendingBytes) {
      lk.unlock();
      return StoreNow(p);
    }
    pending_bytes += static_cast<int64_t>(p.object.size());
    pending.push_back(std::move(p));
    storer_cv.notify_all();
    return Status::Ok();
  }

  // The object into the local cache and CAS, then the entry.
  Status StoreNow(const Pending& p) {
    const cas::Digest& d = p.entry.result.object;
    if (!p.entry.manifest_only) {
      Status up = svc.local->Put(d, p.object, [&](const std::string& path) {
        return svc.cas->UploadBlob(d, path, nullptr);
      });
      if (!up.ok()) return up;
    }
    v1::StoreCompileRequest req;
    req.set_job_id(job.job_id);
    req.set_attempt(job.attempt);
    api::ToProto(p.entry, &req);
    MaskCompileStore(mask, &req);
    grpc::ClientContext ctx;  // not cancelled at the job's end: the entry is worth finishing
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::StoreCompileResponse resp;
    auto st = svc.stub->StoreCompile(&ctx, req, &resp);
    if (!st.ok()) return FromGrpc(st, "compile cache store");
    std::lock_guard g(mu);
    if (svc.memory != nullptr && !scope.empty()) svc.memory->Forget(scope, p.entry.key);  // a new manifest
    return Status::Ok();
  }

  void StoreLoop() {
    std::unique_lock lk(mu);
    while (true) {
      storer_cv.wait(lk, [&] { return !pending.empty() || storer_stop; });
      if (pending.empty()) return;
      Pending p = std::move(pending.front());
      pending.pop_front();
      lk.unlock();
      Status s = StoreNow(p);
      if (!s.ok()) spdlog::debug("job_id={}: compile cache entry not stored: {}", job.job_id, s.message());
      lk.lock();
      pending_bytes -= static_cast<int64_t>(p.object.size());
      if (!s.ok()) ++store_failures;
      storer_cv.notify_all();
    }
  }

  // A pass is worth it until kPassesBeforeGivingUp passes for the same
  // change found nothing and none served its unit: a change of code the
  // units use (a declaration) misses in all of them, one they do not see
  // (a branch of #if they skip) is served in all.
  Status Pass(const ccv1::Pass& p, ccv1::PassReply* reply) {
    const std::string change = cas::DigestOf(p.change()).hash;
    std::lock_guard g(mu);
    auto it = passes.find(change);
    reply->set_run(it == passes.end() || it->second.served > 0 || it->second.missed < kPassesBeforeGivingUp);
    return Status::Ok();
  }

  Status Report(const ccv1::Report& r) {
    bool known = false;
    for (const char* o : kOutcomes) known = known || r.outcome() == o;
    if (!known) return InvalidArgument("unknown outcome '" + r.outcome().substr(0, 40) + "'");
    auto clip = [](const std::string& s) { return s.size() > kMaxText ? s.substr(0, kMaxText) : s; };
    const std::string change = r.pass_change().empty() ? "" : cas::DigestOf(r.pass_change()).hash;
    std::lock_guard g(mu);
    if (!change.empty() && (passes.size() < kMaxChanges || passes.count(change))) {
      if (r.outcome() == "hit_preprocessed") passes[change].served++;
      else if (r.outcome() == "miss" || r.outcome() == "failed") passes[change].missed++;
    }
    auto* n = record.mutable_stats();
    n->set_units(n->units() + 1);
    const std::string& o = r.outcome();
    if (o == "hit") n->set_hits(n->hits() + 1);
    else if (o == "hit_preprocessed") n->set_hits_preprocessed(n->hits_preprocessed() + 1);
    else if (o == "miss") n->set_misses(n->misses() + 1);
    else if (o == "fallback") n->set_fallbacks(n->fallbacks() + 1);
    else n->set_failed(n->failed() + 1);
    if (o == "hit" || o == "hit_preprocessed") {
      n->set_saved_ms(n->saved_ms() + std::max<int64_t>(0, r.saved_ms()));
      n->set_bytes_served(n->bytes_served() + std::max<int64_t>(0, r.bytes()));
      if (cas::IsHash(r.result_key()) && hit_keys.size() < kMaxEvents * 10) hit_keys.insert(r.result_key());
      if (r.manifest_id() > 0 && hit_manifests.size() < kMaxEvents * 10) hit_manifests.insert(r.manifest_id());
    } else if (o == "miss") {
      n->set_compile_ms(n->compile_ms() + std::max<int64_t>(0, r.elapsed_ms()));
      n->set_bytes_stored(n->bytes_stored() + std::max<int64_t>(0, r.bytes()));
      if (!r.remote_worker().empty()) {
        n->set_remote(n->remote() + 1);
        // The compiling this host did not do: the units' runs there.
        n->set_remote_ms(n->remote_ms() + std::max<int64_t>(0, r.remote_run_ms()));
      }
    }
    if (o != "hit" && static_cast<size_t>(record.events_size()) < kMaxEvents) {
      auto* e = record.add_events();
      e->set_source(clip(r.source()));
      e->set_output(clip(r.output()));
      e->set_outcome(o);
      e->set_reason(clip(r.reason()));
      e->set_detail(clip(r.local_reason().empty() ? r.detail()
                                                  : r.detail() + " (compiled here: " + r.local_reason() + ")"));
      e->set_remote_worker(clip(r.remote_worker()));
      e->set_remote_ms(std::max<int64_t>(0, r.remote_ms()));
      e->set_remote_run_ms(std::max<int64_t>(0, r.remote_run_ms()));
    }
    return Status::Ok();
  }
};

std::optional<IdentityMemory::Identity> IdentityMemory::Get(const std::string& key) const {
  std::lock_guard g(mu_);
  auto it = items_.find(key);
  if (it == items_.end()) return std::nullopt;
  return it->second;
}

void IdentityMemory::Put(const std::string& key, Identity id) {
  std::lock_guard g(mu_);
  if (items_.size() >= kMax && !items_.count(key)) items_.clear();
  items_[key] = std::move(id);
}

std::string IdentityMemory::KeyOf(const std::string& project, const std::string& image, const std::string& compiler,
                                  int language) {
  return project + '\0' + image + '\0' + compiler + '\0' + std::to_string(language);
}

std::string LookupMemory::KeyOf(const std::string& scope, const std::string& key) { return scope + '\0' + key; }

std::shared_ptr<const v1::LookupCompileResponse> LookupMemory::Get(const std::string& scope, const std::string& key) {
  std::lock_guard g(mu_);
  auto it = items_.find(KeyOf(scope, key));
  if (it == items_.end()) return nullptr;
  uses_.splice(uses_.begin(), uses_, it->second.use);
  return it->second.resp;
}

void LookupMemory::Put(const std::string& scope, const std::string& key, const v1::LookupCompileResponse& resp) {
  auto item = std::make_shared<v1::LookupCompileResponse>(resp);
  item->clear_previous();  // only hits are served from memory
  const int64_t n = static_cast<int64_t>(item->ByteSizeLong() + scope.size() + key.size() + 64);
  if (n > max_bytes_ / 4) return;
  std::lock_guard g(mu_);
  std::string k = KeyOf(scope, key);
  auto it = items_.find(k);
  if (it != items_.end()) Drop(it);
  uses_.push_front(k);
  items_.emplace(std::move(k), Item{std::move(item), n, uses_.begin()});
  total_ += n;
  while (total_ > max_bytes_) Drop(items_.find(uses_.back()));  // the least recently used
}

void LookupMemory::Forget(const std::string& scope, const std::string& key) {
  std::lock_guard g(mu_);
  auto it = items_.find(KeyOf(scope, key));
  if (it != items_.end()) Drop(it);
}

void LookupMemory::Drop(std::unordered_map<std::string, Item>::iterator it) {
  total_ -= it->second.bytes;
  uses_.erase(it->second.use);
  items_.erase(it);
}

CompileCacheServer::CompileCacheServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

CompileCacheServer::~CompileCacheServer() { Stop(); }

Result<std::unique_ptr<CompileCacheServer>> CompileCacheServer::Start(const CompileCacheJob& job,
                                                                      CompileCacheServices services) {
  std::error_code ec;
  fs::remove_all(job.dir, ec);
  fs::create_directories(job.dir, ec);
  if (ec) return FailedPrecondition("cannot create " + job.dir + ": " + ec.message());
  ::chmod(job.dir.c_str(), 0755);
  std::string path = job.dir + "/" + kSocketName;
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path)
    return FailedPrecondition("the compile cache socket path " + path + " is too long for a unix socket; "
                              "use a shorter work_dir");
  auto impl = std::make_unique<Impl>();
  impl->job = job;
  impl->mask = SecretMask(job.secrets);
  impl->svc = services;
  impl->listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (impl->listen_fd < 0 || ::pipe2(impl->wake, O_CLOEXEC) != 0)
    return FailedPrecondition(std::string("cannot make the compile cache socket: ") + strerror(errno));
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::bind(impl->listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::chmod(path.c_str(), 0666) != 0 || ::listen(impl->listen_fd, 128) != 0)
    return FailedPrecondition("cannot listen on " + path + ": " + strerror(errno));
  impl->record.set_job_id(job.job_id);
  impl->record.set_attempt(job.attempt);
  Impl* raw = impl.get();
  impl->acceptor = std::thread([raw] { raw->AcceptLoop(); });
  impl->storer = std::thread([raw] { raw->StoreLoop(); });
  return std::unique_ptr<CompileCacheServer>(new CompileCacheServer(std::move(impl)));
}

void CompileCacheServer::Stop() {
  Impl& i = *impl_;
  {
    std::lock_guard g(i.mu);
    if (i.stopping) return;
    i.stopping = true;
    for (auto* c : i.calls) c->TryCancel();
  }
  char b = 1;
  (void)!::write(i.wake[1], &b, 1);
  if (i.acceptor.joinable()) i.acceptor.join();
  std::vector<std::thread> done;
  {
    // The build is over, so every peer is gone: each connection ends once
    // its last frames (reports sent without waiting) are read. Past a grace,
    // they are cut.
    std::unique_lock lk(i.mu);
    if (!i.ended.wait_for(lk, std::chrono::seconds(5), [&] { return i.conns.empty(); })) {
      for (auto& [fd, _] : i.conns) ::shutdown(fd, SHUT_RDWR);
      i.ended.wait(lk, [&] { return i.conns.empty(); });
    }
    done.swap(i.finished);
  }
  for (auto& t : done) t.join();
  // Then the stores still queued (the last compiles of the build), at most
  // a minute: the job's report waits for them.
  {
    std::unique_lock lk(i.mu);
    if (!i.storer_cv.wait_for(lk, std::chrono::seconds(60), [&] { return i.pending.empty(); })) {
      spdlog::warn("job_id={}: {} compile cache entries not stored in time; dropped", i.job.job_id, i.pending.size());
      i.pending.clear();
    }
    i.storer_stop = true;
    i.storer_cv.notify_all();
  }
  if (i.storer.joinable()) i.storer.join();
  if (i.store_failures > 0)
    spdlog::info("job_id={}: {} compile cache entries could not be stored", i.job.job_id, i.store_failures);
  std::error_code ec;
  fs::remove_all(i.job.dir, ec);
}

v1::RecordCompilesRequest CompileCacheServer::Record() const {
  std::lock_guard g(impl_->mu);
  v1::RecordCompilesRequest r = impl_->record;
  for (const auto& k : impl_->hit_keys) r.add_hit_keys(k);
  for (int64_t id : impl_->hit_manifests) r.add_hit_manifests(id);
  MaskCompileRecord(impl_->mask, &r);
  return r;
}

void MaskCompileStore(const SecretMask& secrets, v1::StoreCompileRequest* req) {
  if (secrets.empty()) return;
  auto* r = req->mutable_result();
  r->set_stdout(secrets.Apply(r->stdout()));
  r->set_stderr(secrets.Apply(r->stderr()));
  auto* p = req->mutable_parts();
  for (auto& a : *p->mutable_args()) a = secrets.Apply(a);
  for (auto& [k, v] : *p->mutable_env()) v = secrets.Apply(v);
  p->set_cwd(secrets.Apply(p->cwd()));
}

void MaskCompileRecord(const SecretMask& secrets, v1::RecordCompilesRequest* req) {
  if (secrets.empty()) return;
  for (auto& e : *req->mutable_events()) {
    e.set_reason(secrets.Apply(e.reason()));
    e.set_detail(secrets.Apply(e.detail()));
  }
}

}  // namespace kiln::worker
