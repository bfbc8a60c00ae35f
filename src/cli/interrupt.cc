#include "cli/interrupt.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cassert>
#include <cerrno>
#include <cstring>

namespace kiln::cli {
namespace {

// State shared with the signal handler: only async-signal-safe operations there.
int g_pipe[2] = {-1, -1};
std::atomic<int> g_count{0};
struct sigaction g_previous {};
std::atomic<bool> g_active{false};
bool g_stderr_tty = false;

void OnSigint(int) {
  int saved = errno;
  if (g_count.fetch_add(1) + 1 >= 2) {
    static const char kMsg[] = "\nkiln: stopped waiting\n";  // after the terminal's "^C", a fresh line
    const char* msg = g_stderr_tty ? kMsg : kMsg + 1;
    ssize_t n = write(STDERR_FILENO, msg, std::strlen(msg));
    (void)n;
    _exit(130);
  }
  char b = 'i';
  ssize_t n = write(g_pipe[1], &b, 1);
  (void)n;
  errno = saved;
}

}  // namespace

InterruptGuard::InterruptGuard(std::function<void()> on_first) : on_first_(std::move(on_first)) {
  bool was_active = g_active.exchange(true);
  assert(!was_active && "only one InterruptGuard at a time");
  (void)was_active;
  g_count = 0;
  g_stderr_tty = isatty(STDERR_FILENO);
  if (pipe2(g_pipe, O_CLOEXEC) != 0) {
    g_pipe[0] = g_pipe[1] = -1;
    return;  // no pipe, no handler: Ctrl-C keeps its default effect
  }
  thread_ = std::thread([this] {
    char b;
    while (true) {
      ssize_t n = read(g_pipe[0], &b, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || b == 'q') return;
      if (on_first_) on_first_();
    }
  });
  struct sigaction sa {};
  sa.sa_handler = OnSigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &g_previous);
}

InterruptGuard::~InterruptGuard() {
  if (thread_.joinable()) {
    sigaction(SIGINT, &g_previous, nullptr);
    char b = 'q';
    ssize_t n = write(g_pipe[1], &b, 1);
    (void)n;
    thread_.join();
    close(g_pipe[0]);
    close(g_pipe[1]);
    g_pipe[0] = g_pipe[1] = -1;
  }
  g_active = false;
}

}  // namespace kiln::cli
