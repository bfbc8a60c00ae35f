// What a store puts in an audit row's change: a JSON object PostgreSQL's
// jsonb takes, whatever bytes a caller sent.

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "audit/entry.h"

namespace kiln::audit {
namespace {

using nlohmann::json;

TEST(AuditEntry, FieldsOfEachKindMakeOneObject) {
  Entry e({"token 1a2b3c4d5e6f", "ipv4:127.0.0.1:1"}, "token.create", "", "token 0123456789ab");
  e.Set("role", "submit").Set("projects", std::vector<std::string>{"a", "b"}).Set("ttl_s", int64_t{60});
  e.SetJson("config", R"({"timeout_s": 5})").SetJson("broken", "{not json");
  json j = json::parse(e.change());
  EXPECT_EQ(j["role"], "submit");
  EXPECT_EQ(j["projects"], json::array({"a", "b"}));
  EXPECT_EQ(j["ttl_s"], 60);
  EXPECT_EQ(j["config"]["timeout_s"], 5);
  EXPECT_EQ(j["broken"], "{not json") << "a text that is not JSON is kept as a string";
  EXPECT_EQ(json::parse(Entry({}, "x.y", "", "").change()), json::object());
}

// jsonb refuses \u0000 and nlohmann would throw on bytes that are not UTF-8:
// neither may make a change fail because of what a caller sent.
TEST(AuditEntry, NulAndBytesThatAreNotUtf8NeverBreakTheRow) {
  Entry e({}, "job.submit", "p", "job 1");
  e.Set("argv", std::vector<std::string>{std::string("a\0b", 3), "\xff\xfe"});
  e.Set("reason", std::string("x\0y", 3));
  json j = json::parse(e.change());
  EXPECT_EQ(j["argv"][0], "a\\x00b");
  EXPECT_EQ(j["reason"], "x\\x00y");
  EXPECT_EQ(e.change().find("\\u0000"), std::string::npos);
  EXPECT_TRUE(j["argv"][1].is_string()) << "replaced, not thrown";
}

}  // namespace
}  // namespace kiln::audit
