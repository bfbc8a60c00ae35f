// The farm's leader (db/leader.h) against a real PostgreSQL: one process
// leads, and when its session is killed or it stops, another takes over
// within seconds.

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "db/leader.h"
#include "db/pool.h"
#include "harness/harness.h"

namespace kiln {
namespace {

using namespace std::chrono_literals;

constexpr int64_t kKey = 4242;  // a lock of this test's own (classid 0, objid 4242)

// The backend pid holding the lock, or "".
std::string Holder(const std::string& url) {
  return test::Sql(url, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = 0 AND objid = " +
                            std::to_string(kKey));
}

// Sessions that asked for the lock and did not get it: their last statement
// was the try, and they hold nothing.
int Tried(const std::string& url) {
  return std::stoi(test::Sql(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                                  " AND query LIKE 'SELECT pg_try_advisory_lock%'"
                                  " AND pid NOT IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"));
}

std::unique_ptr<db::Leader> Start(const std::string& url, const std::string& name,
                                  std::chrono::milliseconds retry = 100ms) {
  return db::Leader::Start({url, kKey, retry, name, {}});
}

TEST(Leader, AnotherTakesOverWhenTheHoldersSessionIsKilled) {
  const std::string url = test::NewDatabase();
  // a checks its session every 3 s, b asks every 100 ms: once a's session
  // is gone, b is the one that gets the lock, before a even notices.
  auto a = Start(url, "a", 3s);
  ASSERT_TRUE(a->WaitLeader(10s)) << "the only candidate leads";
  auto b = Start(url, "b");
  ASSERT_TRUE(test::WaitFor([&] { return Tried(url) >= 1; }, 10s)) << "b asked for the lock";
  EXPECT_FALSE(b->IsLeader()) << "the lock is a's";
  EXPECT_TRUE(a->IsLeader());

  const std::string pid = Holder(url);
  ASSERT_FALSE(pid.empty());
  EXPECT_EQ(test::Sql(url, "SELECT pg_terminate_backend(" + pid + ")"), "t");
  EXPECT_TRUE(b->WaitLeader(10s)) << "b takes over once a's session is gone";
  EXPECT_TRUE(test::WaitFor([&] { return !a->IsLeader(); }, 10s)) << "a learns it lost the lock";
  // a reconnects and asks again, and does not get it while b holds it.
  EXPECT_TRUE(test::WaitFor([&] { return Tried(url) >= 1; }, 15s));
  EXPECT_FALSE(a->IsLeader());
  EXPECT_NE(Holder(url), pid);
}

TEST(Leader, AnotherTakesOverWhenTheLeaderStops) {
  const std::string url = test::NewDatabase();
  auto a = Start(url, "a");
  ASSERT_TRUE(a->WaitLeader(10s));
  auto b = Start(url, "b");
  ASSERT_TRUE(test::WaitFor([&] { return Tried(url) >= 1; }, 10s));
  EXPECT_FALSE(b->IsLeader());
  a.reset();  // closes its session: the lock is released
  EXPECT_TRUE(b->WaitLeader(10s));
}

TEST(Leader, KeepalivesAreAddedInTheUrlsOwnForm) {
  const std::string server_uri =
      "options=-c%20tcp_keepalives_idle%3D5%20-c%20tcp_keepalives_interval%3D2%20-c%20tcp_keepalives_count%3D3";
  EXPECT_EQ(db::WithKeepalives("postgresql://u@h/db"),
            "postgresql://u@h/db?keepalives=1&keepalives_idle=5&keepalives_interval=2&keepalives_count=3"
            "&connect_timeout=10&" + server_uri);
  EXPECT_EQ(db::WithKeepalives("postgresql://u@h/db?sslmode=require&keepalives_idle=30&options=-c%20x%3Dy"),
            "postgresql://u@h/db?sslmode=require&keepalives_idle=30&options=-c%20x%3Dy&keepalives=1"
            "&keepalives_interval=2&keepalives_count=3&connect_timeout=10");
  EXPECT_EQ(db::WithKeepalives("host=/tmp dbname=kiln"),
            "host=/tmp dbname=kiln keepalives=1 keepalives_idle=5 keepalives_interval=2 keepalives_count=3 "
            "connect_timeout=10 options='-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=2 "
            "-c tcp_keepalives_count=3'");
}

// Both forms connect, and the server takes the session's keepalive
// settings (on the test's Unix socket they are accepted; TCP uses them).
TEST(Leader, AUrlWithKeepalivesConnects) {
  const std::string url = test::NewDatabase();
  auto c = db::Connect(db::WithKeepalives(url));
  ASSERT_TRUE(c.ok()) << c.status().message() << " url=" << db::WithKeepalives(url);
  pqxx::nontransaction tx(**c);
  EXPECT_EQ(tx.exec("SELECT 1")[0][0].as<int>(), 1);
}

}  // namespace
}  // namespace kiln
