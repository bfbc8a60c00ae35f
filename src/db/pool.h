#pragma once
// PostgreSQL connections for the queue and the daemons. This header includes
// libpqxx and is meant for the db and queue libraries' own sources; other
// modules talk to the database through queue/queue.h.

#include <pqxx/pqxx>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::db {

// Maps a libpqxx (or std) exception to a Status: lost connections become
// Unavailable, unique violations AlreadyExists, check and foreign-key
// violations InvalidArgument, everything else Internal.
Status FromException(const std::exception& e, const std::string& what);

// Opens a connection; Unavailable with libpq's reason on failure.
Result<std::unique_ptr<pqxx::connection>> Connect(const std::string& url);

// A fixed-size set of connections shared by threads. A broken connection is
// thrown away on return and replaced on next use, with its prepared
// statements set up again by the `prepare` callback.
class Pool {
 public:
  using Prepare = std::function<void(pqxx::connection&)>;

  Pool(std::string url, size_t size, Prepare prepare);
  ~Pool();

  class Lease {
   public:
    Lease(Pool* pool, std::unique_ptr<pqxx::connection> c) : pool_(pool), c_(std::move(c)) {}
    Lease(Lease&&) = default;
    ~Lease();
    pqxx::connection& operator*() { return *c_; }
    pqxx::connection* operator->() { return c_.get(); }
    // Marks the connection as unusable: it is closed instead of returned.
    void Discard() { broken_ = true; }

   private:
    Pool* pool_;
    std::unique_ptr<pqxx::connection> c_;
    bool broken_ = false;
  };

  // Blocks until a connection is free; Unavailable if none can be opened.
  Result<Lease> Acquire();

  // Runs fn with a connection; converts exceptions to Status and discards
  // the connection if it broke. fn returns the Status of its work.
  Status Run(const std::function<Status(pqxx::connection&)>& fn, const std::string& what);

  const std::string& url() const { return url_; }

 private:
  void Return(std::unique_ptr<pqxx::connection> c, bool broken);

  std::string url_;
  size_t size_;
  Prepare prepare_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<pqxx::connection>> idle_;
  size_t open_ = 0;
};

}  // namespace kiln::db
