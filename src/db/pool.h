#pragma once
// PostgreSQL connections and the one way the stores run statements on them.
// This header includes libpqxx and is meant for the stores' own sources
// (src/queue, src/cache, src/cas); other modules talk to the database through
// the stores' headers, which are free of libpqxx.

#include <pqxx/pqxx>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "common/status.h"
#include "db/pool_stats.h"

namespace kiln::db {

// Maps a libpqxx (or std) exception to a Status: lost connections become
// Unavailable, unique violations AlreadyExists, check and foreign-key
// violations InvalidArgument, everything else Internal.
Status FromException(const std::exception& e, const std::string& what);

// Opens a connection; Unavailable with libpq's reason on failure.
Result<std::unique_ptr<pqxx::connection>> Connect(const std::string& url);

// A named statement, prepared on every connection of a pool that runs it.
struct Statement {
  std::string name;
  std::string sql;
};

// A fixed-size set of connections shared by threads. A broken connection is
// thrown away on return and replaced on next use, with its session set up
// again by the `prepare` callback and its named statements prepared again.
class Pool {
 public:
  using Prepare = std::function<void(pqxx::connection&)>;

  // `prepare` (may be empty) runs once on each new connection, first.
  Pool(std::string url, size_t size, Prepare prepare = {});
  ~Pool();
  // The database it connects to.
  const std::string& url() const { return url_; }

  // Adds named statements, which each connection prepares before its next
  // use (libpqxx sends the PREPARE on a statement's first execution). Stores
  // call this from their constructors with the statements they own; a name
  // given again with the same text is ignored (two stores of one kind), with
  // another text it is a programming error (abort).
  void AddStatements(const std::vector<Statement>& statements);

  // A pooled connection and how many of the pool's statements it knows.
  struct Conn {
    std::unique_ptr<pqxx::connection> c;
    size_t prepared = 0;
  };

  class Lease {
   public:
    Lease(Pool* pool, Conn c) : pool_(pool), c_(std::move(c)) {}
    Lease(Lease&&) = default;
    ~Lease();
    pqxx::connection& operator*() { return *c_.c; }
    pqxx::connection* operator->() { return c_.c.get(); }
    // Marks the connection as unusable: it is closed instead of returned.
    void Discard() { broken_ = true; }

   private:
    Pool* pool_;
    Conn c_;
    bool broken_ = false;
  };

  // Blocks until a connection is free; Unavailable if none can be opened.
  Result<Lease> Acquire();

  // Runs fn with a connection; converts exceptions to Status and discards
  // the connection if it broke. fn returns the Status of its work.
  Status Run(const std::function<Status(pqxx::connection&)>& fn, const std::string& what);

  // The same for work that returns a value: fn returns Result<T>, and so
  // does Query. `what` prefixes the message of a database error ("cannot
  // read job 7: ...").
  template <typename Fn, typename R = std::invoke_result_t<Fn&, pqxx::connection&>>
  R Query(const std::string& what, Fn&& fn) {
    std::optional<R> out;
    Status s = Run(
        [&](pqxx::connection& c) -> Status {
          out.emplace(fn(c));
          return out->status();
        },
        what);
    if (!s.ok()) return s;
    return std::move(*out);
  }

  // A snapshot for metrics (db/pool_stats.h).
  PoolStats stats() const;

 private:
  void Return(Conn c, bool broken);
  // Prepares the statements added since the connection last looked.
  void Catch(Conn& c);

  std::string url_;
  size_t size_;
  Prepare prepare_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Conn> idle_;
  std::vector<Statement> statements_;
  size_t open_ = 0;
  size_t waiting_ = 0;
  std::atomic<uint64_t> errors_{0};
};

// Runs the pool's named statement `statement`, a DELETE of rows unused for
// longer than $1 seconds, with max_age; returns how many rows it deleted.
// The caches' expiry (action cache, compile cache) is this one call.
Result<int64_t> DeleteUnused(Pool& pool, const std::string& statement, std::chrono::milliseconds max_age,
                             const std::string& what);

}  // namespace kiln::db
