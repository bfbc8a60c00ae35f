#pragma once
// Farm-wide leadership among processes sharing one database: whoever holds
// a PostgreSQL session advisory lock leads. The lock lives on a connection
// of the Leader's own (never a pool's: a pool that reconnects silently
// would lose the lock and still believe it held it), opened with TCP
// keepalives so that a holder cut off by the network loses it within
// seconds, not hours. Non-leaders try again every `retry`; the leader
// checks its connection as often, so a killed leader (or one whose session
// was terminated) is replaced within about `retry`.
//
// Two leaders can overlap for at most one `retry` (an old leader learns it
// lost its session at its next check): use it for work where that is
// harmless (exporting the farm's gauges, a scaler that re-reads the state it
// acts on), never as a mutex for correctness.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace kiln::db {

// The lock of the farm's leader (metrics of the farm as a whole; issue 27's
// autoscaler). Other uses take keys of their own.
constexpr int64_t kFarmLeaderLock = 0x6b696c6e'00000001;  // "kiln", 1

class Leader {
 public:
  struct Options {
    std::string url;        // the farm's database
    int64_t key = kFarmLeaderLock;
    std::chrono::milliseconds retry{2000};
    std::string name;       // for the log: this process's id
    // Called on the Leader's thread when leadership is won (true) or lost.
    std::function<void(bool)> on_change;
  };
  // Starts trying at once (on a thread of its own). Never fails: an
  // unreachable database is retried, and logged.
  static std::unique_ptr<Leader> Start(Options o);
  // Stops trying and closes the connection (releasing the lock if held).
  ~Leader();

  // Whether this process held the lock at its last check.
  bool IsLeader() const;
  // Waits until this process leads, up to `timeout`; returns IsLeader().
  bool WaitLeader(std::chrono::milliseconds timeout) const;

  struct Impl;

 private:
  explicit Leader(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// `url` with TCP keepalives asked for (libpq's keepalives=1 and an idle,
// interval and count that notice a dead peer in about 10 seconds), in the
// URL's own form (postgresql:// URI or key=value words).
std::string WithKeepalives(const std::string& url);

}  // namespace kiln::db
