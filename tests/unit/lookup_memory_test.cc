// The worker's memory of recent compile cache lookups: the least recently
// used answers go first when it is full.

#include <gtest/gtest.h>

#include <string>

#include "worker/compile_cache.h"

namespace kiln::worker {
namespace {

v1::LookupCompileResponse Answer(const std::string& scope, size_t bytes) {
  v1::LookupCompileResponse r;
  r.set_scope(scope + std::string(bytes, 'x'));
  return r;
}

TEST(LookupMemory, ForgetsTheLeastRecentlyUsedAnswerFirst) {
  // Each answer takes a bit over 1,000 bytes: four fit in 4,500.
  LookupMemory m(4500);
  for (const char* k : {"a", "b", "c", "d"}) m.Put("s", k, Answer("s", 1000));
  for (const char* k : {"a", "b", "c", "d"}) EXPECT_NE(m.Get("s", k), nullptr) << k;
  ASSERT_NE(m.Get("s", "a"), nullptr);  // a is now the most recently used, b the least
  m.Put("s", "e", Answer("s", 1000));
  EXPECT_EQ(m.Get("s", "b"), nullptr) << "the least recently used went";
  for (const char* k : {"a", "c", "d", "e"}) EXPECT_NE(m.Get("s", k), nullptr) << k;
  // Replacing an answer does not count it twice; forgetting frees its room.
  m.Put("s", "e", Answer("s", 1000));
  m.Forget("s", "a");
  m.Put("s", "f", Answer("s", 1000));
  for (const char* k : {"c", "d", "e", "f"}) EXPECT_NE(m.Get("s", k), nullptr) << k;
  EXPECT_EQ(m.Get("s", "a"), nullptr);
  // Scopes are apart; an answer larger than a quarter of the memory is not kept.
  EXPECT_EQ(m.Get("t", "c"), nullptr);
  m.Put("s", "big", Answer("s", 2000));
  EXPECT_EQ(m.Get("s", "big"), nullptr);
  EXPECT_NE(m.Get("s", "c"), nullptr) << "and pushes nothing out";
}

}  // namespace
}  // namespace kiln::worker
