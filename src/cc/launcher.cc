#include "cc/launcher.h"

#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "cc/frame.h"
#include "cc/process.h"
#include "kiln/cc/v1/cc.pb.h"

namespace kiln::cc {
namespace {

constexpr size_t kMaxRequest = size_t{16} << 20;
constexpr size_t kMaxOutput = size_t{16} << 20;  // each of stdout and stderr

int Connect(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un::sun_path)) return -1;
  // The worker listens before it starts the sandbox; a few tries cover a
  // slow start all the same.
  for (int i = 0; i < 50; ++i) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

// As init of the sandbox: every process the action left (a daemon it
// started, say) dies before the next action, and every zombie is reaped.
void KillTheRest() {
  if (getpid() == 1) ::kill(-1, SIGKILL);
  while (::waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
  }
}

void Cap(std::string* s) {
  if (s->size() > kMaxOutput) {
    s->resize(kMaxOutput);
    s->append("\n[kiln: output cut at 16 MiB]\n");
  }
}

}  // namespace

int RunLauncher(const std::string& socket_path) {
  int fd = Connect(socket_path);
  if (fd < 0) {
    fprintf(stderr, "kiln-cc launcher: cannot connect to %s: %s\n", socket_path.c_str(), strerror(errno));
    return 1;
  }
  for (;;) {
    auto frame = ReadFrame(fd, kMaxRequest);
    if (!frame.ok()) break;  // the worker closed it: the sandbox ends
    v1::Launch req;
    v1::LaunchReply reply;
    if (!req.ParseFromString(*frame) || req.argv_size() == 0 || req.argv(0).empty() || req.argv(0)[0] != '/') {
      reply.set_exit_code(-1);
      reply.set_error("unreadable launch request (argv[0] must be an absolute path)");
    } else {
      std::vector<std::string> argv(req.argv().begin(), req.argv().end());
      std::vector<std::string> env(req.env().begin(), req.env().end());
      bool timed_out = false;
      ProcessResult r = RunIn(argv, env, req.cwd(), req.timeout_ms(), &timed_out);
      KillTheRest();
      Cap(&r.out);
      Cap(&r.err);
      if (!r.error.empty()) {
        reply.set_exit_code(-1);
        reply.set_error(r.error);
      } else if (r.exit_code > 128) {
        reply.set_exit_code(-1);
        reply.set_term_signal(r.exit_code - 128);
      } else {
        reply.set_exit_code(r.exit_code);
      }
      reply.set_timed_out(timed_out);
      reply.set_stdout(std::move(r.out));
      reply.set_stderr(std::move(r.err));
    }
    if (!WriteFrame(fd, reply.SerializeAsString()).ok()) break;
  }
  ::close(fd);
  return 0;
}

}  // namespace kiln::cc
