#pragma once
// LISTEN on PostgreSQL channels from a dedicated thread and connection.
// After any reconnect the listener re-LISTENs and calls on_reconnect, so the
// owner re-polls whatever it may have missed while disconnected.

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace kiln::queue {

class Listener {
 public:
  using Handler = std::function<void(const std::string& channel, const std::string& payload)>;

  Listener(std::string database_url, std::vector<std::string> channels, Handler on_notify,
           std::function<void()> on_reconnect);
  ~Listener();  // stops the thread

  void Start();
  void Stop();

 private:
  void Run();

  std::string url_;
  std::vector<std::string> channels_;
  Handler on_notify_;
  std::function<void()> on_reconnect_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace kiln::queue
