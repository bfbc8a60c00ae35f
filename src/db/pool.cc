#include "db/pool.h"

#include <spdlog/spdlog.h>

#include <cstdlib>

namespace kiln::db {

Status FromException(const std::exception& e, const std::string& what) {
  std::string msg = what + ": " + e.what();
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
      dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return Unavailable(msg + " (is PostgreSQL running and reachable?)");
  }
  if (dynamic_cast<const pqxx::unique_violation*>(&e) != nullptr) return AlreadyExists(msg);
  if (dynamic_cast<const pqxx::check_violation*>(&e) != nullptr ||
      dynamic_cast<const pqxx::foreign_key_violation*>(&e) != nullptr ||
      dynamic_cast<const pqxx::not_null_violation*>(&e) != nullptr ||
      dynamic_cast<const pqxx::data_exception*>(&e) != nullptr) {
    return InvalidArgument(msg);
  }
  if (auto* s = dynamic_cast<const pqxx::sql_error*>(&e)) {
    // 40001 serialization failure, 40P01 deadlock, 57P01 admin shutdown: retryable.
    const std::string& st = s->sqlstate();
    if (st == "40001" || st == "40P01") return Aborted(msg);
    if (st.rfind("57P", 0) == 0 || st.rfind("08", 0) == 0) return Unavailable(msg);
  }
  return Internal(msg);
}

Result<std::unique_ptr<pqxx::connection>> Connect(const std::string& url) {
  try {
    return std::make_unique<pqxx::connection>(url);
  } catch (const std::exception& e) {
    return FromException(e, "cannot connect to the database");
  }
}

Pool::Pool(std::string url, size_t size, Prepare prepare)
    : url_(std::move(url)), size_(size == 0 ? 1 : size), prepare_(std::move(prepare)) {}

Pool::~Pool() = default;

void Pool::AddStatements(const std::vector<Statement>& statements) {
  std::lock_guard g(mu_);
  for (const auto& st : statements) {
    bool known = false;
    for (const auto& k : statements_) {
      if (k.name != st.name) continue;
      if (k.sql != st.sql) {
        // Two stores chose one name: a programming error, found at start.
        spdlog::critical("statement {} is given two texts on one pool", st.name);
        std::abort();
      }
      known = true;  // a second store of one kind on this pool
    }
    if (!known) statements_.push_back(st);
  }
}

Pool::Lease::~Lease() {
  if (pool_ && c_.c) pool_->Return(std::move(c_), broken_);
}

void Pool::Catch(Conn& c) {
  std::vector<Statement> todo;
  {
    std::lock_guard g(mu_);
    if (c.prepared == statements_.size()) return;
    todo.assign(statements_.begin() + static_cast<std::ptrdiff_t>(c.prepared), statements_.end());
  }
  for (const auto& st : todo) {
    c.c->prepare(st.name, st.sql);
    ++c.prepared;
  }
}

Result<Pool::Lease> Pool::Acquire() {
  std::unique_lock lk(mu_);
  ++waiting_;
  cv_.wait(lk, [&] { return !idle_.empty() || open_ < size_; });
  --waiting_;
  Conn conn;
  if (!idle_.empty()) {
    conn = std::move(idle_.back());
    idle_.pop_back();
    lk.unlock();
  } else {
    ++open_;
    lk.unlock();
    auto c = Connect(url_);
    if (!c.ok()) {
      std::lock_guard g(mu_);
      --open_;
      cv_.notify_one();
      return c.status();
    }
    conn.c = std::move(c).value();
    try {
      if (prepare_) prepare_(*conn.c);
    } catch (const std::exception& e) {
      std::lock_guard g(mu_);
      --open_;
      cv_.notify_one();
      return FromException(e, "cannot prepare statements");
    }
  }
  try {
    Catch(conn);
  } catch (const std::exception& e) {
    std::lock_guard g(mu_);
    --open_;
    cv_.notify_one();
    return FromException(e, "cannot prepare statements");
  }
  return Lease(this, std::move(conn));
}

void Pool::Return(Conn c, bool broken) {
  std::lock_guard g(mu_);
  if (broken || !c.c->is_open()) {
    --open_;
  } else {
    idle_.push_back(std::move(c));
  }
  cv_.notify_one();
}

Status Pool::Run(const std::function<Status(pqxx::connection&)>& fn, const std::string& what) {
  auto lease = Acquire();
  if (!lease.ok()) {
    ++errors_;
    return lease.status();
  }
  try {
    return fn(**lease);
  } catch (const pqxx::broken_connection& e) {
    ++errors_;
    lease->Discard();
    return FromException(e, what);
  } catch (const pqxx::in_doubt_error& e) {
    ++errors_;
    lease->Discard();
    return FromException(e, what);
  } catch (const std::exception& e) {
    ++errors_;
    if (!(**lease).is_open()) lease->Discard();
    return FromException(e, what);
  }
}

PoolStats StatsOf(const Pool& pool) { return pool.stats(); }

PoolStats Pool::stats() const {
  std::lock_guard g(mu_);
  PoolStats s;
  s.size = size_;
  s.open = open_;
  s.in_use = open_ - idle_.size();
  s.waiting = waiting_;
  s.errors = errors_;
  return s;
}

Result<int64_t> DeleteUnused(Pool& pool, const std::string& statement, std::chrono::milliseconds max_age,
                             const std::string& what) {
  return pool.Query(what, [&](pqxx::connection& c) -> Result<int64_t> {
    pqxx::nontransaction tx(c);
    return static_cast<int64_t>(
        tx.exec_prepared(statement, static_cast<double>(max_age.count()) / 1000.0).affected_rows());
  });
}

}  // namespace kiln::db
