#include "cc/wrapper.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <algorithm>
#include <functional>
#include <optional>
#include <set>
#include <thread>

#include "cas/digest.h"
#include "cc/command.h"
#include "cc/deps.h"
#include "cc/frame.h"
#include "cc/keys.h"
#include "cc/process.h"
#include "cc/reason.h"
#include "cc/scan.h"
#include "cc/wire.h"
#include "common/write_all.h"
#include "kiln/cc/v1/cc.pb.h"

extern char** environ;

namespace kiln::cc {
namespace {

constexpr size_t kMaxReply = size_t{1} << 30;
constexpr size_t kMaxStoredOutput = 1 << 20;  // diagnostics beyond this are not cached
constexpr const char* kDefaultSocket = "/kiln/run/cc.sock";

// File times come from the kernel's coarse clock: reading the same clock,
// a write after this moment can never look older than it.
int64_t CoarseNowNs() {
  struct timespec t {};
  clock_gettime(CLOCK_REALTIME_COARSE, &t);
  return int64_t{t.tv_sec} * 1'000'000'000 + t.tv_nsec;
}

std::string RealPath(const std::string& p) {
  char buf[PATH_MAX];
  return ::realpath(p.c_str(), buf) != nullptr ? std::string(buf) : std::string();
}

std::string BaseName(const std::string& p) {
  auto s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

// Replaces `path` with `data` at once (a temporary file beside it, renamed).
bool WriteAtomically(const std::string& path, const std::string& data) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  std::string tmp = dir + "/.kiln-cc." + std::to_string(getpid()) + "." + BaseName(path);
  int fd = ::open(tmp.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0666);
  if (fd < 0) return false;
  bool written = WriteAll(fd, data);
  bool ok = ::close(fd) == 0 && written && ::rename(tmp.c_str(), path.c_str()) == 0;
  if (!ok) ::unlink(tmp.c_str());
  return ok;
}

void Print(FILE* f, const std::string& s) {
  if (!s.empty()) fwrite(s.data(), 1, s.size(), f);
  fflush(f);
}

// One connection to the worker; every failure means "no cache now".
class Channel {
 public:
  ~Channel() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool Connect(const std::string& path) {
    if (path.size() >= sizeof(sockaddr_un::sun_path)) return false;
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
      return false;
    }
    return true;
  }
  // Sends a request whose reply does not matter (the last one of an
  // invocation): nothing waits for the worker.
  void Post(const v1::Request& req) {
    if (fd_ >= 0) (void)WriteFrame(fd_, req.SerializeAsString());
  }
  Result<v1::Reply> Call(const v1::Request& req) {
    if (fd_ < 0) return Unavailable("not connected");
    KILN_RETURN_IF_ERROR(WriteFrame(fd_, req.SerializeAsString()));
    auto bytes = ReadFrame(fd_, kMaxReply);
    if (!bytes.ok()) {
      ::close(fd_);
      fd_ = -1;
      return bytes.status();
    }
    v1::Reply reply;
    if (!reply.ParseFromString(*bytes)) return Internal("unreadable reply from the worker");
    if (!reply.ok()) return Unavailable(reply.error());
    return reply;
  }

 private:
  int fd_ = -1;
};

class Wrapper {
 public:
  Wrapper(Channel& ch, const Invocation& inv, std::chrono::steady_clock::time_point start)
      : ch_(ch), inv_(inv), start_(start) {
    cmdline_.push_back(inv.path);
    cmdline_.insert(cmdline_.end(), inv.args.begin(), inv.args.end());
  }

  // Runs the compiler as asked, replacing this process.
  int Plain() {
    ExecProcess(cmdline_);
    fprintf(stderr, "kiln-cc: cannot run %s: %s\n", inv_.path.c_str(), strerror(errno));
    return 127;
  }

  int Run() {
    cmd_ = ClassifyCompile(inv_.args);
    for (const auto& v : UncacheableEnvironment()) {
      if (cmd_.cacheable && getenv(v.c_str()) != nullptr) {
        cmd_.cacheable = false;
        cmd_.reason = "compiler environment";
        cmd_.detail = v + " is set";
      }
    }
    if (!cmd_.cacheable) {
      Report("fallback", cmd_.reason, cmd_.detail);
      return Plain();
    }
    if (!Hello()) return Plain();
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == nullptr) return Plain();
    parts_.cwd = cwd;
    parts_.args = inv_.args;
    parts_.source = cmd_.source;
    parts_.output = cmd_.output;
    parts_.compiler_path = inv_.path;
    for (const auto& v : CompilerEnvironment())
      if (const char* val = getenv(v.c_str())) parts_.env[v] = val;
    auto src = hashes_.Get(Abs(cmd_.source));
    if (!src.ok() || src->rfind("f:", 0) != 0) {
      Report("fallback", "unreadable source", cmd_.source);
      return Plain();  // the compiler says what is wrong with it
    }
    parts_.source_digest = src->substr(2);
    const std::string direct = DirectKey(parts_, parts_.source_digest);

    v1::Request req;
    req.mutable_lookup()->set_key(direct);
    ToWire(parts_, req.mutable_lookup()->mutable_parts());
    req.mutable_lookup()->set_cached_ok(true);
    auto found = ch_.Call(req);
    if (!found.ok()) return Plain();
    std::optional<Mismatch> first;
    if (TryManifests(found->lookup(), &first)) return 0;
    if (found->lookup().from_cache()) {
      // The worker's memory may predate a newer manifest: ask the farm.
      req.mutable_lookup()->set_cached_ok(false);
      found = ch_.Call(req);
      if (!found.ok()) return Plain();
      first.reset();
      if (TryManifests(found->lookup(), &first)) return 0;
    }
    std::vector<KeyParts> prev;
    for (const auto& p : found->lookup().previous()) prev.push_back(FromWire(p));
    const bool known_unit = found->lookup().manifests_size() > 0;
    miss_ = DescribeMiss(parts_, known_unit ? first : std::nullopt, prev);
    if (known_unit && ServeSameCode(found->lookup(), direct)) return 0;
    // A preprocessor pass may still find the unit the same (an edit in a
    // branch of #if it skips).
    return Compile(direct, /*may_hit_preprocessed=*/known_unit && PassWorthIt(first));
  }

 private:
  // Serves the first manifest whose every entry holds (true); else the first
  // mismatch of the newest one is left in `first`.
  bool TryManifests(const v1::LookupReply& found, std::optional<Mismatch>* first) {
    for (int i = 0; i < found.manifests_size(); ++i) {
      // The dependencies are checked on the wire's bytes; only the result a
      // hit serves is converted (a miss copies no compiler output).
      const auto& m = found.manifests(i);
      auto deps = UnpackDeps(m.deps_packed());
      if (!deps) continue;  // unreadable: as if absent
      auto mm = CheckManifest(*deps, hashes_);
      if (!mm) {
        const CompileResult result = FromWire(m.result());
        if (Serve(result, i == 0 ? &found.first_object() : nullptr)) {
          Report("hit", "", "", result.object.size, result.compile_ms, result.key, m.id());
          return true;
        }
      }
      if (mm && !*first) *first = mm;
    }
    return false;
  }

  std::string Abs(const std::string& p) const { return p.empty() || p[0] != '/' ? parts_.cwd + "/" + p : p; }

  // Whether comments, or the blanks and lines they leave, may change what
  // the compile makes or prints (docs/architecture.md, "Compile cache"):
  // no code keys then. -C/-CC keep them; C90 has no // comments (and
  // -Wc90-c99-compat warns of each); trigraphs; any comment marks a
  // fallthrough at -Wimplicit-fallthrough=1 and is documentation with
  // -fparse-all-comments; GCC's whitespace warnings; another input charset
  // (a backslash byte inside a character); debug information (Clang
  // records each file's MD5).
  bool CommentsMayMatter() const {
    static const std::set<std::string_view> kExact = {"-C", "-CC", "-ansi", "-traditional", "-traditional-cpp",
                                                      "-trigraphs", "-fparse-all-comments"};
    static const std::set<std::string_view> kC90 = {"c89", "c90", "gnu89", "gnu90", "iso9899:1990",
                                                    "iso9899:199409"};
    for (const auto& arg : inv_.args) {
      const std::string_view a = arg;
      if (kExact.count(a) || a.find("whitespace") != std::string_view::npos ||
          a.find("c90-c99-compat") != std::string_view::npos || a.find("charset") != std::string_view::npos)
        return true;
      if (auto at = a.find("implicit-fallthrough="); at != std::string_view::npos) {
        const std::string_view level = a.substr(at + 21);
        if (level != "0" && level != "2" && level != "3" && level != "4" && level != "5") return true;
      }
      std::string_view std = a;
      while (!std.empty() && std.front() == '-') std.remove_prefix(1);
      if (std.rfind("std=", 0) == 0 && kC90.count(std.substr(4))) return true;
      if (a.rfind("-g", 0) == 0 && a != "-g0") return true;
    }
    return false;
  }

  // `deps` with each file named by its code (FileHashes::Code, as read with
  // the digest in `deps`); nullopt if a file's code is unknown.
  std::optional<std::map<std::string, std::string>> CodeManifest(const std::map<std::string, std::string>& deps) const {
    std::map<std::string, std::string> code;
    for (const auto& [path, value] : deps) {
      if (value.rfind("f:", 0) != 0) {
        code.emplace(path, value);
        continue;
      }
      std::string c = hashes_.Code(path);
      if (c.empty()) return std::nullopt;
      code.emplace(path, std::move(c));
    }
    return code;
  }

  // A known unit whose files changed in their comments only (cc/code.h):
  // the newest manifest's files, named by their code as they are now, give
  // the code result key its compile was stored under. The object is served
  // with no compile and no preprocessor pass, and a manifest of the files
  // as they are now goes under the direct key. False if there is none.
  bool ServeSameCode(const v1::LookupReply& found, const std::string& direct) {
    if (CommentsMayMatter()) return false;
    auto deps = UnpackDeps(found.manifests(0).deps_packed());
    if (!deps) return false;
    std::map<std::string, std::string> now, checks;
    for (const auto& [path, value] : *deps) {
      if (value.rfind("f:", 0) == 0) {
        auto v = hashes_.Get(path, 0, false, /*code=*/true);
        if (!v.ok() || v->rfind("f:", 0) != 0) return false;
        now.emplace(path, *v);
      } else {
        if (value != "i") checks.emplace(path, value);  // must still hold: the same headers are found
        now.emplace(path, value);
      }
    }
    if (CheckManifest(checks, hashes_)) return false;
    auto code = CodeManifest(now);
    if (!code) return false;
    return ServeUnder(direct, CodeResultKey(parts_, parts_.source_digest, ManifestDigest(*code)),
                      [&] { return std::optional(std::move(now)); });
  }

  // Whether this job's preprocessor passes for the change `first` may still
  // serve units (the worker keeps count: Pass). A pass that runs reports
  // the change with its outcome.
  bool PassWorthIt(const std::optional<Mismatch>& first) {
    if (!first) return true;
    v1::Request req;
    req.mutable_pass()->set_change(first->path + "\n" + first->expected + "\n" + first->actual);
    auto r = ch_.Call(req);
    if (r.ok() && !r->pass().run()) {
      miss_.detail += " (no preprocessor pass: this job's passes for the change served none)";
      return false;
    }
    pass_change_ = req.pass().change();
    return true;
  }

  bool Hello() {
    v1::Request req;
    auto* h = req.mutable_hello();
    h->set_compiler(inv_.path);
    std::string real = RealPath(inv_.path);
    struct stat st {};
    if (real.empty() || ::stat(real.c_str(), &st) != 0) return false;
    h->mutable_stat()->set_dev(static_cast<int64_t>(st.st_dev));
    h->mutable_stat()->set_ino(static_cast<int64_t>(st.st_ino));
    h->mutable_stat()->set_size(st.st_size);
    h->mutable_stat()->set_mtime_ns(int64_t{st.st_mtim.tv_sec} * 1'000'000'000 + st.st_mtim.tv_nsec);
    h->set_language(cmd_.lang == Language::kC ? 0 : 1);
    auto r = ch_.Call(req);
    if (!r.ok() || !r->hello().enabled()) return false;
    const auto& hr = r->hello();
    parts_.image = hr.image();
    remote_ = hr.remote();
    writable_.assign(hr.writable().begin(), hr.writable().end());
    if (!hr.identity().empty()) {
      parts_.compiler = hr.identity();
      builtin_.assign(hr.builtin_dirs().begin(), hr.builtin_dirs().end());
      return true;
    }
    // First use of this compiler in the job: who is it?
    auto bin = cas::DigestFile(real);
    if (!bin.ok()) return false;
    auto v = RunProcess({inv_.path, "-v"});
    if (v.exit_code != 0) return false;
    auto dirs = RunProcess({inv_.path, "-x", cmd_.lang == Language::kC ? "c" : "c++", "-E", "-v", "/dev/null"});
    bool in = false;
    size_t pos = 0;
    while (pos < dirs.err.size()) {
      size_t nl = dirs.err.find('\n', pos);
      std::string line = dirs.err.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      pos = nl == std::string::npos ? dirs.err.size() : nl + 1;
      if (line.rfind("#include <...> search starts here:", 0) == 0) in = true;
      else if (line.rfind("End of search list.", 0) == 0) in = false;
      else if (in && !line.empty() && line[0] == ' ') builtin_.push_back(line.substr(1));
    }
    parts_.compiler = CompilerIdentity(bin->Key(), v.out + v.err);
    v1::Request set;
    auto* s = set.mutable_set_identity();
    s->set_compiler(inv_.path);
    *s->mutable_stat() = h->stat();
    s->set_language(h->language());
    s->set_identity(parts_.compiler);
    for (const auto& d : builtin_) s->add_builtin_dirs(d);
    (void)ch_.Call(set);
    return true;
  }

  // A store of `result` and of its manifest `deps` under `direct`.
  CompileEntry Entry(const std::string& direct, std::map<std::string, std::string> deps, CompileResult result,
                     bool manifest_only) const {
    return {direct, parts_, std::move(deps), std::move(result), manifest_only};
  }

  // Writes a cached result as the compile would have: object, dependency
  // file, diagnostics. False (and nothing shown) if the object cannot be had.
  bool Serve(const CompileResult& res, const std::string* at_hand = nullptr) {
    if (!cmd_.depfile.empty() && res.depfile.empty()) return false;
    Result<v1::Reply> r = Unavailable("not fetched");
    if (at_hand == nullptr || at_hand->empty()) {
      v1::Request req;
      req.mutable_fetch()->set_hash(res.object.hash);
      req.mutable_fetch()->set_size(res.object.size);
      r = ch_.Call(req);
      if (!r.ok()) return false;
    }
    const std::string& data = at_hand != nullptr && !at_hand->empty() ? *at_hand : r->fetch().data();
    cas::Digest d = cas::DigestOf(data);
    if (d != res.object) return false;
    if (!WriteAtomically(Abs(cmd_.output), data)) return false;
    if (!cmd_.depfile.empty() && !WriteAtomically(Abs(cmd_.depfile), res.depfile)) return false;
    Print(stdout, res.stdout);
    Print(stderr, res.stderr);
    return true;
  }

  RecordOptions Recording(int64_t since_ns) const {
    RecordOptions o;
    o.cwd = parts_.cwd;
    o.writable = writable_;
    o.search = SearchOrder(cmd_, builtin_);
    o.changed_since_ns = since_ns;
    o.known[AbsolutePath(cmd_.source, parts_.cwd)] = "f:" + parts_.source_digest;
    o.time_macros_ok = getenv("SOURCE_DATE_EPOCH") != nullptr;
    return o;
  }

  // The preprocessed translation unit names the result. When a file of a
  // known unit changed in more than its comments (ServeSameCode), the
  // preprocessor runs first while that may still find the unit the same (a
  // branch of #if it skips; PassWorthIt), and the object is served if so. A
  // new source or new arguments rarely preprocess to a known unit, and a
  // change whose passes served none in this job is taken for one every
  // unit sees: the compile then runs at once and traces its own headers
  // (CompileTraced), with no preprocessor pass at all; only when it cannot,
  // the pass runs beside the compile.
  // A compile that may run on another worker needs its headers named
  // before it goes: a scan names every header it may read (cc/scan.h) and
  // the compile there traces the ones it read, which make the manifest;
  // when the compile cannot trace or the scan cannot be sure, the
  // preprocessor's pass names them (and the result key) here.
  int Compile(const std::string& direct, bool may_hit_preprocessed) {
    const int64_t since = CoarseNowNs();
    const auto started = std::chrono::steady_clock::now();  // a remote unit's wait counts from here
    const bool remote = remote_;
    if (!may_hit_preprocessed && CanTraceIncludes()) {
      if (!remote) return CompileTraced(direct, since);
      if (auto scan = ScanForRemote(); scan.ok()) {
        ProcessResult run;
        int64_t compile_ms = 0;
        if (CompileRemote(scan->files, scan->dirs, /*trace=*/true, since, started, &run, &compile_ms))
          return StoreTraced(direct, std::move(run), compile_ms, since);
        return CompileTraced(direct, since);
      }
    }
    ProcessResult run;
    int64_t compile_ms = 0;
    auto compile = [&] { run = Timed(cmdline_, &compile_ms); };
    std::thread beside;
    if (!may_hit_preprocessed && !remote) beside = std::thread(compile);
    cas::Hasher h;
    LineMarkerScanner markers;
    std::vector<std::string> pp_argv{inv_.path};
    pp_argv.insert(pp_argv.end(), cmd_.preprocess_args.begin(), cmd_.preprocess_args.end());
    auto pp = RunProcess(pp_argv, [&](std::string_view chunk) {
      h.Update(chunk);
      markers.Feed(chunk);
    });
    if (beside.joinable()) beside.join();
    if (pp.exit_code != 0) {
      Report("fallback", "preprocessor failed", "exit code " + std::to_string(pp.exit_code));
      if (may_hit_preprocessed || remote) return Plain();  // the compile shows the errors
      return Finished(run);
    }
    const std::string result_key = ResultKey(parts_, h.Finish().Key());
    if (may_hit_preprocessed && ServePreprocessed(direct, result_key, markers.files(), since)) return 0;
    if (remote) {
      // The line markers name the files the preprocessor entered, not those
      // it only asked about (__has_include): the scan adds those.
      std::vector<std::string> files = markers.files(), dirs;
      auto scan = ScanForRemote();
      if (scan.ok()) {
        files.insert(files.end(), scan->files.begin(), scan->files.end());
        dirs = std::move(scan->dirs);
      }
      const bool may_go = scan.ok() || !AsksAboutFiles(markers.files(), scan.status().message());
      if (!may_go || !CompileRemote(files, dirs, /*trace=*/false, since, started, &run, &compile_ms)) compile();
    } else if (may_hit_preprocessed) {
      compile();
    }
    if (run.exit_code != 0) return Failed(run);
    Finished(run);
    Store(direct, result_key, markers.files(), run, compile_ms, since);
    return 0;
  }

  // Runs the compile on the farm (RemoteCompile): the source and every
  // header it may read from /src (`files`, with the directories `dirs`) go
  // along, the image's are there already. True when it compiled there: the
  // outputs are written as a local compile would have, `run` holds what it
  // printed (with `trace`, -H's trace too). False (the reason kept for the
  // report) when it must compile here: it reads a file outside /src, the
  // farm could not run it, or it failed there (a failing compile runs here
  // again, so that its errors are exactly what this host says).
  // remote_ms_ counts from `started`, the unit's start here: it includes
  // naming the unit's headers (a scan, or a preprocessor pass).
  bool CompileRemote(const std::vector<std::string>& files, const std::vector<std::string>& dirs, bool trace,
                     int64_t since, std::chrono::steady_clock::time_point started, ProcessResult* run,
                     int64_t* compile_ms) {
    auto deps = RecordDeps(files, Recording(since), hashes_);
    if (!deps.ok()) return Local("its headers cannot be listed: " + deps.status().message());
    v1::Request req;
    auto* rc = req.mutable_remote();
    for (const auto& a : cmdline_) rc->add_argv(a);
    if (trace) rc->add_argv("-H");
    for (char** e = environ; *e != nullptr; ++e) {
      std::string_view kv(*e);
      auto eq = kv.find('=');
      if (eq != std::string_view::npos) (*rc->mutable_env())[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    }
    rc->set_cwd(parts_.cwd);
    auto under_src = [](const std::string& p) { return p == "/src" || p.rfind("/src/", 0) == 0; };
    if (!under_src(parts_.cwd)) return Local("it runs outside /src (in " + parts_.cwd + ")");
    std::vector<std::string> paths;
    for (const auto& [path, value] : *deps) {
      if (value.rfind("f:", 0) == 0) {
        if (!under_src(path)) return Local("it reads " + path + ", outside /src");
        auto d = cas::ParseDigest(std::string_view(value).substr(2));
        if (!d.ok()) return Local("its manifest entry for " + path + " is unreadable");
        auto* f = rc->add_files();
        f->set_path(path);
        f->set_hash(d->hash);
        f->set_size(d->size);
        paths.push_back(path);
      } else if (value == "d" && under_src(path)) {
        rc->add_dirs(path);
      }
    }
    for (const auto& dir : dirs)
      if (under_src(dir)) rc->add_dirs(dir);
    // Include directories that exist here exist there (a missing one may be warned about).
    for (const auto& dir : SearchOrder(cmd_, builtin_)) {
      std::string abs = AbsolutePath(dir, parts_.cwd);
      struct stat st {};
      if (under_src(abs) && ::stat(abs.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) rc->add_dirs(abs);
    }
    std::vector<std::string> outs{AbsolutePath(cmd_.output, parts_.cwd)};
    if (!cmd_.depfile.empty()) outs.push_back(AbsolutePath(cmd_.depfile, parts_.cwd));
    for (const auto& o : outs) {
      if (!under_src(o)) return Local("it writes " + o + ", outside /src");
      rc->add_outputs(o);
    }
    auto first = ch_.Call(req);
    if (!first.ok()) return Local(first.status().message());
    Result<v1::Reply> done = first;
    if (first->has_remote()) {
      v1::Request data;
      for (int i : first->remote().need()) {
        if (i < 0 || i >= rc->files_size()) return Local("the worker asked for a file that was not sent");
        auto bytes = ReadFileUpTo(rc->files(i).path(), size_t{1} << 30);
        if (!bytes.ok()) return Local(bytes.status().message());
        data.mutable_remote_data()->add_data(std::move(*bytes));
      }
      done = ch_.Call(data);
      if (!done.ok()) return Local(done.status().message());
    }
    const auto& d = done->remote_done();
    if (!d.error().empty()) return Local(d.error());
    for (const std::string* out : {&d.stdout(), &d.stderr()})
      if (out->ends_with("[kiln: output cut at 16 MiB]\n"))
        return Local("it printed more than 16 MiB on worker " + d.worker_id());
    if (d.exit_code() != 0) return Local("it failed on worker " + d.worker_id() + ": compiled here to show its errors");
    for (const auto& o : d.outputs()) {
      if (std::find(outs.begin(), outs.end(), o.path()) == outs.end())
        return Local("worker " + d.worker_id() + " sent an output that was not asked for: " + o.path());
      if (!WriteAtomically(o.path(), o.data())) return Local("cannot write " + o.path());
    }
    run->exit_code = 0;
    run->out = d.stdout();
    run->err = d.stderr();
    *compile_ms = d.run_ms();
    remote_worker_ = d.worker_id();
    remote_run_ms_ = d.run_ms();
    remote_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    return true;
  }

  // The files a unit for the farm may read, named by a scan (cc/scan.h);
  // an error when the scan cannot be sure of them: the environment or an
  // option adds include directories it does not know, or the scan refuses
  // a file. The preprocessor names them then.
  Result<IncludeScan> ScanForRemote() const {
    for (const char* v : {"CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "OBJC_INCLUDE_PATH", "GCC_EXEC_PREFIX",
                          "COMPILER_PATH"})
      if (getenv(v) != nullptr) return FailedPrecondition(std::string(v) + " is set");
    // Options that add files or directories the scan does not see (forced
    // includes; the compiler's own directories for another target, library
    // or root; modules).
    for (const auto& a : inv_.args)
      for (const char* o : {"-include", "-imacros", "-iprefix", "-iwithprefix", "-isysroot", "-imultilib", "-imultiarch",
                            "--sysroot", "-m32", "-mx32", "-m16", "-stdlib=", "-target", "--target", "-fmodule"})
        if (a.rfind(o, 0) == 0) return FailedPrecondition("it is compiled with " + a);
    return ScanIncludes(cmd_.source, SearchOrder(cmd_, builtin_), parts_.cwd);
  }

  // Whether a file the preprocessor entered asks whether a file exists
  // (__has_include): the farm would answer from the files sent, not this
  // host's, so such a unit compiles here when the scan cannot name them
  // (`why`, the scan's reason).
  bool AsksAboutFiles(const std::vector<std::string>& files, const std::string& why) {
    for (const auto& f : files) {
      auto text = ReadFileUpTo(Abs(f), size_t{64} << 20);
      if (!text.ok() || text->find("__has_include") != std::string::npos) {
        Local("it asks whether files exist (__has_include), and they cannot be named: " + why);
        return true;
      }
    }
    return false;
  }

  bool Local(const std::string& why) {
    local_reason_ = why;
    return false;
  }

  // Whether the compile can name its headers itself (-H), in place of a
  // preprocessor pass: not when its object records the options (-g: -H
  // would be in it), the build asked for -H (it wants the trace shown),
  // forces includes (-include and -imacros files are not traced), or it may
  // print in another language (the guard list's heading is English).
  // KILN_CC_TRACE=0 turns tracing off (every unit then has a preprocessed key).
  bool CanTraceIncludes() const {
    const char* trace = getenv("KILN_CC_TRACE");
    if ((trace != nullptr && std::string_view(trace) == "0") || ObjectRecordsOptions(inv_.args)) return false;
    for (const auto& a : inv_.args)
      if (a == "-H" || a.rfind("-include", 0) == 0 || a.rfind("-imacros", 0) == 0) return false;
    auto english = [](std::string_view v) {
      return v.empty() || v == "C" || v == "POSIX" || v.rfind("C.", 0) == 0 ||
             (v.rfind("en", 0) == 0 && v.find(':') == std::string_view::npos);
    };
    const char* language = getenv("LANGUAGE");
    if (language != nullptr && !english(language)) return false;
    for (const char* var : {"LC_ALL", "LC_MESSAGES", "LANG"}) {
      const char* v = getenv(var);
      if (v != nullptr && *v != '\0') return english(v);
    }
    return true;
  }

  // A unit compiled at once with -H: the headers come from its trace
  // (stripped from what it printed), the result is named by the manifest's
  // code (CodeResultKey: a comment edit finds it), or by the manifest
  // itself (DependResultKey) when the compile printed something. The cost:
  // no preprocessed key, so the first edit in a branch of #if it skips
  // recompiles it (a pass records the key then, and serves the next one).
  int CompileTraced(const std::string& direct, int64_t since) {
    std::vector<std::string> argv = cmdline_;
    argv.push_back("-H");
    int64_t compile_ms = 0;
    ProcessResult run = Timed(argv, &compile_ms);
    return StoreTraced(direct, std::move(run), compile_ms, since);
  }

  // A unit compiled with -H, here or on the farm: its trace is split from
  // what it printed and names the manifest's files.
  int StoreTraced(const std::string& direct, ProcessResult run, int64_t compile_ms, int64_t since) {
    IncludeTrace trace = SplitIncludeTrace(run.err, [](const std::string& f) {
      struct stat st {};
      return ::stat(f.c_str(), &st) == 0 && !S_ISDIR(st.st_mode);
    });
    run.err = std::move(trace.rest);
    if (run.exit_code != 0) return Failed(run);
    Finished(run);
    if (!trace.complete) {
      Report("miss", miss_.reason, miss_.detail + " (not stored: the include trace named a file that is not there)");
      return 0;
    }
    std::vector<std::string> files{cmd_.source};
    files.insert(files.end(), trace.files.begin(), trace.files.end());
    // The header every unit includes implicitly, not traced.
    for (const auto& dir : builtin_) {
      std::string predef = dir + "/stdc-predef.h";
      if (::access(predef.c_str(), F_OK) == 0) {
        files.push_back(predef);
        break;
      }
    }
    Store(direct, std::nullopt, files, run, compile_ms, since);
    return 0;
  }

  ProcessResult Timed(const std::vector<std::string>& argv, int64_t* ms) {
    auto began = std::chrono::steady_clock::now();
    ProcessResult run = RunProcess(argv);
    *ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - began).count();
    return run;
  }

  int Failed(const ProcessResult& run) {
    if (run.exit_code > 0) Report("failed", "compile failed", "the compiler exited with " + std::to_string(run.exit_code));
    return Finished(run);
  }

  // Stores what a successful compile made under `direct`: object, dependency
  // file, output and the manifest of `files`; the result is named
  // `result_key`, or by the manifest when there is none (CompileTraced).
  void Store(const std::string& direct, const std::optional<std::string>& result_key,
             const std::vector<std::string>& files, const ProcessResult& run, int64_t compile_ms, int64_t since) {
    // Named by its code when there is no preprocessed key (a traced compile)
    // and what it printed cannot differ between versions of the same code
    // (a warning quotes its line, comments and all).
    RecordOptions o = Recording(since);
    o.code = !result_key && run.out.empty() && run.err.empty() && !CommentsMayMatter();
    auto deps = RecordDeps(files, o, hashes_);
    if (!deps.ok()) {
      if (deps.status().code() == Code::kInvalidArgument) Report("fallback", "uses __DATE__ or __TIME__", deps.status().message());
      else Report("miss", miss_.reason, miss_.detail + " (not stored: " + deps.status().message() + ")");
      return;
    }
    std::string why_not;
    auto object = ReadFileUpTo(Abs(cmd_.output), kMaxReply / 2);
    std::string depfile;
    if (!object.ok()) why_not = object.status().message();
    if (why_not.empty() && !cmd_.depfile.empty()) {
      auto d = ReadFileUpTo(Abs(cmd_.depfile), 16 << 20);
      if (d.ok()) depfile = std::move(*d);
      else why_not = d.status().message();
    }
    if (why_not.empty() && run.out.size() + run.err.size() > kMaxStoredOutput)
      why_not = "the compiler printed more than 1 MiB";
    if (why_not.empty()) {
      cas::Digest od = cas::DigestOf(*object);
      CompileResult res;
      std::optional<std::map<std::string, std::string>> code;
      if (o.code) code = CodeManifest(*deps);
      res.key = result_key ? *result_key
                : code     ? CodeResultKey(parts_, parts_.source_digest, ManifestDigest(*code))
                           : DependResultKey(parts_, parts_.source_digest, ManifestDigest(*deps));
      res.object = od;
      res.depfile = std::move(depfile);
      res.stdout = run.out;
      res.stderr = run.err;
      res.compile_ms = compile_ms;
      v1::Request st;
      ToWire(Entry(direct, std::move(*deps), std::move(res), /*manifest_only=*/false), st.mutable_store());
      st.mutable_store()->set_object(std::move(*object));
      auto stored = ch_.Call(st);
      if (!stored.ok()) why_not = stored.status().message();
      else Report("miss", miss_.reason, miss_.detail, od.size);
    }
    if (!why_not.empty()) Report("miss", miss_.reason, miss_.detail + " (not stored: " + why_not + ")");
  }

  // The unit as preprocessed is known: serves its result and adds a
  // manifest of the new dependencies under the direct key. False if not.
  bool ServePreprocessed(const std::string& direct, const std::string& result_key,
                         const std::vector<std::string>& files, int64_t since) {
    return ServeUnder(direct, result_key, [&]() -> std::optional<std::map<std::string, std::string>> {
      auto deps = RecordDeps(files, Recording(since), hashes_);
      if (!deps.ok()) return std::nullopt;
      return std::move(*deps);
    });
  }

  // Serves the result stored under `result_key`, if there is one, and adds
  // a manifest of `deps()` (the files as they are now; nullopt: none can be
  // had) under the direct key. A hit after an edit that left the unit the same.
  bool ServeUnder(const std::string& direct, const std::string& result_key,
                  const std::function<std::optional<std::map<std::string, std::string>>()>& deps) {
    v1::Request lr;
    lr.mutable_lookup_result()->set_key(result_key);
    auto known = ch_.Call(lr);
    if (!known.ok() || !known->lookup_result().found()) return false;
    auto now = deps();
    const CompileResult res = FromWire(known->lookup_result().result());
    if (!now || !Serve(res)) return false;
    v1::Request st;
    ToWire(Entry(direct, std::move(*now), res, /*manifest_only=*/true), st.mutable_store());
    (void)ch_.Call(st);
    Report("hit_preprocessed", miss_.reason, miss_.detail, res.object.size, res.compile_ms, res.key);
    return true;
  }

  // Shows what the compile printed; its exit code (127 if it did not start).
  int Finished(const ProcessResult& run) {
    if (run.exit_code < 0) {
      fprintf(stderr, "kiln-cc: cannot run %s: %s\n", inv_.path.c_str(), run.error.c_str());
      return 127;
    }
    Print(stdout, run.out);
    Print(stderr, run.err);
    return run.exit_code;
  }

  void Report(const std::string& outcome, const std::string& reason, const std::string& detail, int64_t bytes = 0,
              int64_t compile_ms = 0, const std::string& key = "", int64_t manifest_id = 0) {
    v1::Request req;
    auto* r = req.mutable_report();
    r->set_source(cmd_.source);
    r->set_output(cmd_.output);
    r->set_outcome(outcome);
    r->set_reason(reason);
    r->set_detail(detail);
    int64_t elapsed =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start_).count();
    r->set_elapsed_ms(elapsed);
    if (compile_ms > 0) r->set_saved_ms(std::max<int64_t>(0, compile_ms - elapsed));
    r->set_bytes(bytes);
    r->set_result_key(key);
    r->set_manifest_id(manifest_id);
    r->set_remote_worker(remote_worker_);
    r->set_remote_ms(remote_ms_);
    r->set_remote_run_ms(remote_run_ms_);
    if (remote_ && remote_worker_.empty()) r->set_local_reason(local_reason_);
    r->set_pass_change(pass_change_);
    ch_.Post(req);
  }

  Channel& ch_;
  const Invocation& inv_;
  std::chrono::steady_clock::time_point start_;
  std::vector<std::string> cmdline_;
  CompileCommand cmd_;
  KeyParts parts_;
  std::vector<std::string> writable_, builtin_;
  FileHashes hashes_;
  Miss miss_;
  bool remote_ = false;         // the worker sends misses to the farm
  std::string remote_worker_;   // where this unit compiled, if elsewhere
  int64_t remote_ms_ = 0;       // the remote compile, as this wrapper waited for it (naming its headers included)
  int64_t remote_run_ms_ = 0;   // of which the compile's own run there
  std::string local_reason_;    // why it compiled here after all
  std::string pass_change_;     // the change a preprocessor pass ran for (PassWorthIt)
};

}  // namespace

Result<Invocation> ResolveInvocation(const std::vector<std::string>& argv, const std::string& path_env,
                                     const std::string& self) {
  if (argv.empty()) return InvalidArgument("no program name");
  Invocation inv;
  if (BaseName(argv[0]) == "kiln-cc") {
    if (argv.size() < 2)
      return InvalidArgument("usage: kiln-cc COMPILER [ARGS...], e.g. CC=\"kiln-cc gcc\" (or run it through a link "
                             "named after the compiler)");
    inv.name = argv[1];
    inv.args.assign(argv.begin() + 2, argv.end());
  } else {
    inv.name = BaseName(argv[0]);
    inv.args.assign(argv.begin() + 1, argv.end());
  }
  auto usable = [&](const std::string& p) {
    return ::access(p.c_str(), X_OK) == 0 && RealPath(p) != self && !RealPath(p).empty();
  };
  if (inv.name.find('/') != std::string::npos) {
    if (!usable(inv.name)) return NotFound(inv.name + ": no such compiler (or it is kiln-cc itself)");
    inv.path = inv.name;
    return inv;
  }
  size_t pos = 0;
  while (pos <= path_env.size()) {
    size_t colon = path_env.find(':', pos);
    std::string dir = path_env.substr(pos, colon == std::string::npos ? std::string::npos : colon - pos);
    pos = colon == std::string::npos ? path_env.size() + 1 : colon + 1;
    std::string cand = (dir.empty() ? "." : dir) + "/" + inv.name;
    if (usable(cand)) {
      inv.path = cand;
      return inv;
    }
  }
  return NotFound(inv.name + ": command not found (kiln-cc looked on PATH past its own links)");
}

int RunWrapper(int argc, char** argv) {
  auto start = std::chrono::steady_clock::now();
  std::vector<std::string> av(argv, argv + argc);
  const char* path = getenv("PATH");
  auto inv = ResolveInvocation(av, path != nullptr ? path : "/usr/bin:/bin", RealPath("/proc/self/exe"));
  if (!inv.ok()) {
    fprintf(stderr, "kiln-cc: %s\n", inv.status().message().c_str());
    return inv.status().code() == Code::kInvalidArgument ? 2 : 127;
  }
  Channel ch;
  const char* sock = getenv("KILN_CC_SOCKET");
  Wrapper w(ch, *inv, start);
  if (!ch.Connect(sock != nullptr && *sock != '\0' ? sock : kDefaultSocket)) return w.Plain();
  return w.Run();
}

}  // namespace kiln::cc
