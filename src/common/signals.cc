#include "common/signals.h"

#include <signal.h>

namespace kiln {

void HandleSignals(std::function<void(int)> on_stop, std::function<void()> on_reload) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  std::thread([set, on_stop = std::move(on_stop), on_reload = std::move(on_reload)] {
    int stops = 0;
    while (true) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGHUP) {
        if (on_reload) on_reload();
      } else {
        on_stop(++stops);
      }
    }
  }).detach();
}

}  // namespace kiln
