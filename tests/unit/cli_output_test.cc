// The one-line summary of an audit row's change that kiln audit prints.

#include <gtest/gtest.h>

#include "cli/output.h"

namespace kiln::cli {
namespace {

TEST(ChangeSummary, FieldsOnOneLineListsBracketed) {
  EXPECT_EQ(ChangeSummary(R"({"role": "submit", "projects": ["a", "b"], "ttl_s": 0})", 200),
            "projects=[a,b], role=submit, ttl_s=0");
  EXPECT_EQ(ChangeSummary("{}", 200), "");
}

TEST(ChangeSummary, AReplacedDocumentShowsWhatDiffers) {
  EXPECT_EQ(ChangeSummary(R"({"old": {"timeout_s": 60, "image": "x"}, "new": {"timeout_s": 120, "image": "x",
                              "env": {"A": "1"}}})",
                          200),
            R"(env: (none) -> {"A":"1"}, timeout_s: 60 -> 120)");
  EXPECT_EQ(ChangeSummary(R"({"old": {"a": 1}, "new": {"a": 1}})", 200), "no change");
}

TEST(ChangeSummary, ControlBytesAreEscapedAndTheLineCut) {
  EXPECT_EQ(ChangeSummary(R"({"argv": ["echo", "a\nb"]})", 200), "argv=[echo,a\\x0ab]");
  std::string s = ChangeSummary(R"({"reason": ")" + std::string(500, 'x') + R"("})", 40);
  EXPECT_EQ(s.size(), 40u);
  EXPECT_EQ(s.substr(37), "...");
  EXPECT_EQ(ChangeSummary("not json", 200), "not json");
}

}  // namespace
}  // namespace kiln::cli
