#include "queue/listener.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <pqxx/pqxx>

namespace kiln::queue {
namespace {

class Receiver : public pqxx::notification_receiver {
 public:
  Receiver(pqxx::connection_base& c, const std::string& channel, const Listener::Handler& h)
      : pqxx::notification_receiver(c, channel), handler_(h) {}
  void operator()(const std::string& payload, int) override { handler_(channel(), payload); }

 private:
  const Listener::Handler& handler_;
};

}  // namespace

Listener::Listener(std::string url, std::vector<std::string> channels, Handler on_notify,
                   std::function<void()> on_reconnect)
    : url_(std::move(url)),
      channels_(std::move(channels)),
      on_notify_(std::move(on_notify)),
      on_reconnect_(std::move(on_reconnect)) {}

Listener::~Listener() { Stop(); }

void Listener::Start() { thread_ = std::thread([this] { Run(); }); }

void Listener::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void Listener::Run() {
  bool first = true;
  auto backoff = std::chrono::milliseconds(100);
  while (!stop_) {
    try {
      // A fresh connection each time: libpqxx 6.4 does not restore LISTEN
      // after reactivating a broken connection.
      pqxx::connection c(url_);
      std::vector<std::unique_ptr<Receiver>> receivers;
      for (const auto& ch : channels_) receivers.push_back(std::make_unique<Receiver>(c, ch, on_notify_));
      c.get_notifs();
      if (!first) spdlog::info("database listener reconnected");
      first = false;
      backoff = std::chrono::milliseconds(100);
      // Whatever was notified while we were away is re-polled by the owner.
      on_reconnect_();
      while (!stop_) {
        c.await_notification(0, 200000);
        if (!c.is_open()) throw pqxx::broken_connection("listener connection closed");
      }
    } catch (const std::exception& e) {
      if (stop_) break;
      spdlog::warn("database listener lost its connection: {}; retrying in {} ms", e.what(), backoff.count());
      for (auto waited = std::chrono::milliseconds(0); waited < backoff && !stop_; waited += std::chrono::milliseconds(50)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
  }
}

}  // namespace kiln::queue
