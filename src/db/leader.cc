#include "db/leader.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "db/pool.h"

namespace kiln::db {

std::string WithKeepalives(const std::string& url) {
  const bool uri = url.rfind("postgresql://", 0) == 0 || url.rfind("postgres://", 0) == 0;
  // The client's keepalives notice a dead server; the server's (its
  // tcp_keepalives_* for this session, in `options`) notice a dead client
  // and end its session, releasing its locks, in about 10 s rather than
  // the kernel's two hours. (On a Unix socket both are moot.)
  const char* kServer = "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 -c tcp_keepalives_count=3";
  const std::string server = uri ? "-c%20tcp_keepalives_idle%3D5%20-c%20tcp_keepalives_interval%3D2%20-c%20"
                                   "tcp_keepalives_count%3D3"
                                 : std::string("'") + kServer + "'";
  const std::pair<std::string, std::string> kParams[] = {{"keepalives", "1"},         {"keepalives_idle", "5"},
                                                         {"keepalives_interval", "2"}, {"keepalives_count", "3"},
                                                         {"connect_timeout", "10"},    {"options", server}};
  std::string out = url;
  for (const auto& [k, v] : kParams) {
    if (url.find(k + "=") != std::string::npos) continue;  // the operator's own value wins
    if (uri) {
      out += (out.find('?') == std::string::npos ? "?" : "&");
    } else if (!out.empty()) {
      out += " ";
    }
    out += k + "=" + v;
  }
  return out;
}

struct Leader::Impl {
  Options o;
  std::atomic<bool> leader{false};
  mutable std::mutex mu;
  mutable std::condition_variable cv;
  bool stop = false;
  std::thread thread;
  std::unique_ptr<pqxx::connection> conn;

  void Set(bool now, bool stopping = false) {
    {
      std::lock_guard g(mu);
      if (leader.exchange(now) == now) return;
    }
    cv.notify_all();
    if (now) {
      spdlog::info("this process now leads the farm name={} lock={}", o.name, o.key);
    } else if (stopping) {
      spdlog::info("this process stops leading the farm: it is shutting down name={} lock={}", o.name, o.key);
    } else {
      spdlog::warn("this process no longer leads the farm name={} lock={}", o.name, o.key);
    }
    if (o.on_change) o.on_change(now);
  }

  // One check: the leader pings its session; others try the lock.
  // Returns a message when the database could not be asked.
  std::string Check() {
    try {
      if (!conn || !conn->is_open()) {
        conn = std::make_unique<pqxx::connection>(WithKeepalives(o.url));
        conn->prepare("leader_try_lock", "SELECT pg_try_advisory_lock($1)");
        conn->prepare("leader_ping", "SELECT 1");
        Set(false);  // a new session holds nothing
      }
      pqxx::nontransaction tx(*conn);
      if (leader) {
        tx.exec_prepared("leader_ping");
      } else if (tx.exec_prepared1("leader_try_lock", o.key)[0].as<bool>()) {
        Set(true);
      }
      return "";
    } catch (const std::exception& e) {
      conn.reset();  // its session, and the lock with it, is gone
      Set(false);
      return e.what();
    }
  }

  void Loop() {
    std::string last_error;
    std::unique_lock lk(mu);
    while (!stop) {
      lk.unlock();
      std::string err = Check();
      if (!err.empty() && err != last_error) {
        spdlog::warn("cannot ask the database who leads the farm, retrying every {} ms: {}", o.retry.count(), err);
      }
      last_error = err;
      lk.lock();
      cv.wait_for(lk, o.retry, [&] { return stop; });
    }
    lk.unlock();
    conn.reset();  // closing the session releases the lock
    Set(false, true);
  }
};

Leader::Leader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<Leader> Leader::Start(Options o) {
  auto impl = std::make_unique<Impl>();
  impl->o = std::move(o);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->Loop(); });
  return std::unique_ptr<Leader>(new Leader(std::move(impl)));
}

Leader::~Leader() {
  {
    std::lock_guard g(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

bool Leader::IsLeader() const { return impl_->leader; }

bool Leader::WaitLeader(std::chrono::milliseconds timeout) const {
  std::unique_lock lk(impl_->mu);
  return impl_->cv.wait_for(lk, timeout, [&] { return impl_->leader.load(); });
}

}  // namespace kiln::db
