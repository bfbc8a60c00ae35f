#include "worker/actions.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <list>
#include <mutex>
#include <thread>

#include "api/convert.h"
#include "cas/client.h"
#include "cas/tree.h"
#include "cc/frame.h"
#include "common/util.h"
#include "controller/request_checks.h"
#include "kiln/cc/v1/cc.pb.h"
#include "worker/cc_wrapper.h"
#include "worker/images.h"
#include "worker/local_cas.h"
#include "worker/runner.h"
#include "worker/sandbox.h"

namespace kiln::worker {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int64_t kDefaultTimeoutMs = 10 * 60 * 1000;
constexpr int64_t kMaxOutputBytes = int64_t{256} << 20;  // all declared outputs of one action
constexpr auto kBoxIdle = std::chrono::minutes(5);       // an idle box is stopped after this
constexpr auto kBoxStart = std::chrono::seconds(20);     // its launcher must connect by then

// Opens `rel` below the directory `dirfd` for reading, refusing symlinks
// anywhere on the way and anything outside it (the sandbox wrote there).
int OpenBeneath(int dirfd, const std::string& rel) {
  struct open_how how {};
  how.flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, dirfd, rel.c_str(), &how, sizeof how));
}

// Makes the directories of `rel` below `root` (owned by uid:gid), refusing
// to pass through anything but a directory.
Status MakeDirs(const std::string& root, const std::string& rel, uint32_t uid, uint32_t gid) {
  std::string at = root;
  size_t pos = 0;
  while (pos < rel.size()) {
    size_t slash = rel.find('/', pos);
    at += "/" + rel.substr(pos, slash == std::string::npos ? std::string::npos : slash - pos);
    pos = slash == std::string::npos ? rel.size() : slash + 1;
    if (::mkdir(at.c_str(), 0755) == 0) {
      if (::chown(at.c_str(), uid, gid) != 0) return FailedPrecondition(Errno("cannot give " + at + " to the build user"));
      continue;
    }
    struct stat st {};
    if (errno != EEXIST || ::lstat(at.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return FailedPrecondition("cannot make directory " + at + ": a file is in the way");
  }
  return Status::Ok();
}

std::string Parent(const std::string& rel) {
  auto s = rel.rfind('/');
  return s == std::string::npos ? std::string() : rel.substr(0, s);
}

// A long-lived sandbox of one project and image: a container whose init,
// kiln-cc's launcher, connected to `fd`.
struct Box {
  std::string key;   // project and image
  std::string name;  // unique on this worker
  std::string dir;   // on the host: src/ (the sandbox's /src) and run/ (the launcher's socket)
  std::string image;
  std::unique_ptr<Container> container;
  int fd = -1;
  Clock::time_point last_used = Clock::now();
  ~Box() {
    if (fd >= 0) ::close(fd);
  }
};

v1::ActionResult Failure(const std::string& why) {
  v1::ActionResult r;
  r.set_error(why);
  return r;
}

}  // namespace

struct ActionRunner::Impl {
  ActionEnv env;
  int slots;
  std::string boxes_dir;
  mutable std::mutex mu;
  std::condition_variable cv;
  int running = 0;
  int threads = 0;  // Start's threads still alive
  uint64_t next_box = 0;
  std::list<std::unique_ptr<Box>> idle;  // most recently used first
  int live_boxes = 0;

  // An idle box of `key`, or a new one (nullptr and *why when it cannot start).
  std::unique_ptr<Box> Take(const std::string& key, const std::string& image, std::string* why) {
    std::vector<std::unique_ptr<Box>> stale;
    {
      std::lock_guard g(mu);
      // Boxes idle too long stop (outside the lock), and the least recently
      // used one when twice the slots are alive.
      for (auto it = idle.begin(); it != idle.end();) {
        if (Clock::now() - (*it)->last_used > kBoxIdle) {
          stale.push_back(std::move(*it));
          it = idle.erase(it);
          --live_boxes;
        } else {
          ++it;
        }
      }
      for (auto it = idle.begin(); it != idle.end(); ++it) {
        if ((*it)->key != key) continue;
        auto b = std::move(*it);
        idle.erase(it);
        if (b->container->Running()) return b;
        stale.push_back(std::move(b));
        --live_boxes;
        break;
      }
      if (live_boxes >= 2 * slots && !idle.empty()) {
        stale.push_back(std::move(idle.back()));
        idle.pop_back();
        --live_boxes;
      }
      ++live_boxes;
    }
    for (auto& b : stale) Stop(std::move(b));
    auto b = Open(key, image, why);
    if (!b) {
      std::lock_guard g(mu);
      --live_boxes;
    }
    return b;
  }

  void Give(std::unique_ptr<Box> b) {
    b->last_used = Clock::now();
    std::lock_guard g(mu);
    idle.push_front(std::move(b));
  }

  void Stop(std::unique_ptr<Box> b) {
    std::string image = b->image, dir = b->dir;
    b.reset();  // closes the launcher's socket, then kills and removes the container
    std::error_code ec;
    fs::remove_all(dir, ec);
    env.images->Release(image);
  }

  std::unique_ptr<Box> Open(const std::string& key, const std::string& image, std::string* why) {
    auto b = std::make_unique<Box>();
    b->key = key;
    b->image = image;
    {
      std::lock_guard g(mu);
      b->name = "box-" + std::to_string(++next_box);
    }
    b->dir = boxes_dir + "/" + b->name;
    std::error_code ec;
    fs::remove_all(b->dir, ec);
    fs::create_directories(b->dir + "/run", ec);
    fs::create_directories(b->dir + "/src", ec);
    const auto uid = static_cast<uint32_t>(env.cfg->sandbox_uid);
    if (ec || ::chown((b->dir + "/src").c_str(), uid, uid) != 0) {
      *why = "cannot make the action sandbox's directory " + b->dir + ": " + (ec ? ec.message() : strerror(errno));
      return nullptr;
    }
    auto rootfs = env.images->Acquire(*env.cas, *env.image_stub, image);
    if (!rootfs.ok()) {
      *why = "cannot prepare image " + image + ": " + rootfs.status().message();
      return nullptr;
    }
    auto fail = [&](const std::string& w) -> std::unique_ptr<Box> {
      *why = w;
      b->container.reset();
      env.images->Release(image);
      fs::remove_all(b->dir, ec);
      return nullptr;
    };
    auto wrapper = env.cc->WrapperDir(image, *rootfs);
    if (!wrapper.ok()) return fail(wrapper.status().message());
    const std::string sock = b->dir + "/run/launch.sock";
    int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (lfd < 0 || sock.size() >= sizeof addr.sun_path) {
      if (lfd >= 0) ::close(lfd);
      return fail("cannot make the launcher's socket " + sock + " (path too long?)");
    }
    memcpy(addr.sun_path, sock.c_str(), sock.size() + 1);
    if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(lfd, 1) != 0 ||
        ::chmod(sock.c_str(), 0666) != 0) {
      std::string e = Errno("cannot listen on " + sock);
      ::close(lfd);
      return fail(e);
    }
    RunRequest req;
    req.spec.argv = {"/kiln/bin/kiln-cc", "--kiln-launcher", "/kiln/run/launch.sock"};
    req.job_dir = b->dir + "/src";
    req.cc_wrapper_dir = *wrapper;
    req.cc_socket_dir = b->dir + "/run";
    auto c = env.sandbox->Start(req, *rootfs, b->name);
    if (!c.ok()) {
      ::close(lfd);
      return fail(c.status().message());
    }
    b->container = std::move(*c);
    struct pollfd p = {lfd, POLLIN, 0};
    const auto deadline = Clock::now() + kBoxStart;
    int n = 0;
    while (Clock::now() < deadline && b->container->Running()) {
      n = ::poll(&p, 1, 100);
      if (n > 0) break;
    }
    if (n > 0) b->fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    ::close(lfd);
    ::unlink(sock.c_str());
    if (b->fd < 0) return fail("the action sandbox did not start (see " + b->dir + "'s bundle log)");
    spdlog::info("action sandbox started box={} image={}", b->name, image);
    return b;
  }

  // Copies the inputs into the empty box, makes the directories.
  Status Populate(Box& b, const v1::Action& a) {
    const std::string src = b.dir + "/src";
    const auto uid = static_cast<uint32_t>(env.cfg->sandbox_uid);
    std::vector<LocalCas::Placement> files;
    for (const auto& d : a.dirs()) KILN_RETURN_IF_ERROR(MakeDirs(src, d, uid, uid));
    if (!a.cwd().empty()) KILN_RETURN_IF_ERROR(MakeDirs(src, a.cwd(), uid, uid));
    for (const auto& o : a.outputs()) KILN_RETURN_IF_ERROR(MakeDirs(src, Parent(o), uid, uid));
    for (const auto& in : a.inputs()) {
      KILN_RETURN_IF_ERROR(MakeDirs(src, Parent(in.path()), uid, uid));
      files.push_back({api::FromProto(in.digest()), in.executable(), src + "/" + in.path()});
    }
    auto rep = env.local_cas->CopyAll(*env.cas, files);
    return rep.status();
  }

  // Empties /src for the next action (nothing runs in the box now).
  bool Wipe(Box& b) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(b.dir + "/src", ec)) fs::remove_all(e.path(), ec);
    return !ec;
  }

  v1::ActionResult RunIn(Box& b, const v1::Action& a, bool* box_ok) {
    *box_ok = false;
    if (Status s = Populate(b, a); !s.ok()) {
      *box_ok = Wipe(b);
      return Failure("cannot put the action's inputs in place on worker " + env.worker_id + ": " + s.message());
    }
    cc::v1::Launch l;
    for (const auto& arg : a.argv()) l.add_argv(arg);
    for (const auto& [k, v] : a.env()) l.add_env(k + "=" + v);
    l.set_cwd(a.cwd().empty() ? "/src" : "/src/" + a.cwd());
    const int64_t timeout = a.timeout_ms() > 0 ? a.timeout_ms() : kDefaultTimeoutMs;
    l.set_timeout_ms(timeout);
    auto began = Clock::now();
    if (!cc::WriteFrame(b.fd, l.SerializeAsString()).ok())
      return Failure("the action sandbox on worker " + env.worker_id + " went away");
    struct pollfd p = {b.fd, POLLIN, 0};
    int n;
    while ((n = ::poll(&p, 1, static_cast<int>(timeout + 10'000))) < 0 && errno == EINTR) {
    }
    if (n <= 0) return Failure("the action sandbox on worker " + env.worker_id + " did not answer");
    auto frame = cc::ReadFrame(b.fd, size_t{64} << 20);
    cc::v1::LaunchReply reply;
    if (!frame.ok() || !reply.ParseFromString(*frame))
      return Failure("the action sandbox on worker " + env.worker_id + " went away");
    v1::ActionResult r;
    r.set_run_ms(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - began).count());
    r.set_worker_id(env.worker_id);
    if (!reply.error().empty()) {
      r.set_error("the action did not start on worker " + env.worker_id + ": " + reply.error());
    } else if (reply.timed_out()) {
      r.set_error("the action ran past its timeout of " + std::to_string(timeout) + " ms on worker " + env.worker_id);
    } else {
      r.set_exit_code(reply.exit_code());
      r.set_term_signal(reply.term_signal());
      r.set_stdout(std::move(*reply.mutable_stdout()));
      r.set_stderr(std::move(*reply.mutable_stderr()));
      if (Status s = ReadOutputs(b, a, &r); !s.ok()) r = Failure(s.message());
    }
    *box_ok = Wipe(b);
    return r;
  }

  // The declared outputs the action made (a missing one is left out: the
  // requester sees what a local run would have left).
  Status ReadOutputs(Box& b, const v1::Action& a, v1::ActionResult* r) {
    int dirfd = ::open((b.dir + "/src").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) return FailedPrecondition(Errno("cannot open the action sandbox's /src"));
    int64_t total = 0;
    Status st = Status::Ok();
    for (const auto& o : a.outputs()) {
      int fd = OpenBeneath(dirfd, o);
      if (fd < 0) {
        if (errno == ENOENT) continue;
        st = FailedPrecondition("output " + o + " cannot be read (" + strerror(errno) +
                                "): an action's outputs must be regular files, not reached through symlinks");
        break;
      }
      struct stat sb {};
      std::string data;
      if (::fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        ::close(fd);
        st = FailedPrecondition("output " + o + " is not a regular file");
        break;
      }
      total += sb.st_size;
      if (total > kMaxOutputBytes) {
        ::close(fd);
        st = ResourceExhausted("the action's outputs pass 256 MiB");
        break;
      }
      data.resize(static_cast<size_t>(sb.st_size));
      size_t got = 0;
      while (got < data.size()) {
        ssize_t k = ::read(fd, data.data() + got, data.size() - got);
        if (k <= 0) break;
        got += static_cast<size_t>(k);
      }
      ::close(fd);
      data.resize(got);
      auto* out = r->add_outputs();
      out->set_path(o);
      out->set_data(std::move(data));
      out->set_executable((sb.st_mode & 0100) != 0);
    }
    ::close(dirfd);
    return st;
  }
};

v1::WorkerMessage ActionRefused(const std::string& action_id, const std::string& why) {
  v1::WorkerMessage m;
  m.mutable_action_done()->set_action_id(action_id);
  *m.mutable_action_done()->mutable_result() = Failure(why);
  return m;
}

ActionRunner::ActionRunner(ActionEnv env, int slots) : impl_(std::make_unique<Impl>()) {
  impl_->env = std::move(env);
  impl_->slots = slots;
  impl_->boxes_dir = impl_->env.cfg->work_dir + "/boxes";
  std::error_code ec;
  fs::remove_all(impl_->boxes_dir, ec);  // a crashed run's (its containers went with CleanUp)
  fs::create_directories(impl_->boxes_dir, ec);
  ::chmod(impl_->boxes_dir.c_str(), 0711);
}

ActionRunner::~ActionRunner() {
  std::list<std::unique_ptr<Box>> boxes;
  {
    std::unique_lock lk(impl_->mu);
    impl_->cv.wait(lk, [&] { return impl_->threads == 0; });
    boxes.swap(impl_->idle);
  }
  for (auto& b : boxes) impl_->Stop(std::move(b));
}

int ActionRunner::Boxes() const {
  std::lock_guard g(impl_->mu);
  return impl_->live_boxes;
}

v1::ActionResult ActionRunner::Run(const v1::RunAction& ra) {
  v1::ActionResult r = RunOnce(ra);
  const auto& m = impl_->env.metrics;
  if (!r.error().empty()) {
    m.actions.With({{"outcome", "refused"}}).Inc();
  } else {
    m.actions.With({{"outcome", r.exit_code() == 0 && r.term_signal() == 0 ? "succeeded" : "failed"}}).Inc();
    m.run_time.Observe(static_cast<double>(r.run_ms()) / 1000.0);
  }
  return r;
}

v1::ActionResult ActionRunner::RunOnce(const v1::RunAction& ra) {
  auto& i = *impl_;
  const auto& a = ra.action();
  if (Status s = controller::ValidateAction(a); !s.ok()) return Failure("refused by worker " + i.env.worker_id + ": " + s.message());
  if (i.env.sandbox == nullptr || i.env.cc == nullptr)
    return Failure("worker " + i.env.worker_id + " runs no action sandboxes (containers or kiln-cc are off)");
  std::string why;
  auto box = i.Take(ra.project() + "\n" + a.image(), a.image(), &why);
  if (!box) return Failure("no action sandbox on worker " + i.env.worker_id + ": " + why);
  bool box_ok = false;
  v1::ActionResult r = i.RunIn(*box, a, &box_ok);
  if (box_ok) {
    i.Give(std::move(box));
  } else {
    spdlog::warn("action sandbox stopped box={}: {}", box->name, r.error().empty() ? "its /src could not be emptied" : r.error());
    {
      std::lock_guard g(i.mu);
      --i.live_boxes;
    }
    i.Stop(std::move(box));
  }
  return r;
}

void ActionRunner::Start(const v1::RunAction& ra) {
  auto& i = *impl_;
  if (i.env.draining != nullptr && *i.env.draining) {
    i.env.metrics.actions.With({{"outcome", "refused"}}).Inc();
    i.env.send(ActionRefused(ra.action_id(), "worker " + i.env.worker_id + " is draining"));
    return;
  }
  {
    std::lock_guard g(i.mu);
    if (i.running >= i.slots) {
      i.env.metrics.actions.With({{"outcome", "refused"}}).Inc();
      i.env.send(ActionRefused(ra.action_id(), "worker " + i.env.worker_id + " has no free action slot"));
      return;
    }
    ++i.running;
    ++i.threads;
  }
  std::thread([this, ra] {
    auto& im = *impl_;
    v1::WorkerMessage m;
    m.mutable_action_done()->set_action_id(ra.action_id());
    *m.mutable_action_done()->mutable_result() = Run(ra);
    {
      std::lock_guard g(im.mu);
      --im.running;
    }
    im.env.send(m);
    {
      std::lock_guard g(im.mu);
      --im.threads;
    }
    im.cv.notify_all();
  }).detach();
}

}  // namespace kiln::worker
