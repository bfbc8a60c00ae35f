// The rules for strings from the network (common/text.h) and the daemons'
// log line format (common/log.h).

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>

#include "common/log.h"
#include "common/text.h"

namespace kiln {
namespace {

TEST(Text, RejectsNulAndControlCharactersNamingTheField) {
  EXPECT_TRUE(CheckText("ci-build-42", "request_id", 200).ok());
  EXPECT_TRUE(CheckText("", "reason").ok());
  EXPECT_TRUE(CheckText("ünïcödé, spaces and quotes \"'", "reason").ok());
  for (std::string bad : {std::string("a\0b", 3), std::string("a\nb"), std::string("a\rb"), std::string("\t"),
                          std::string("a\x1b[2Jb"), std::string("a\x7f")}) {
    Status s = CheckText(bad, "request_id", 200);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << Printable(bad);
    EXPECT_EQ(s.message().rfind("request_id \"", 0), 0u) << s.message();
    EXPECT_NE(s.message().find("only printable characters are allowed"), std::string::npos) << s.message();
    EXPECT_FALSE(HasControl(s.message())) << "the message quotes the value escaped: " << Printable(s.message());
  }
  Status nul = CheckText(std::string("a\0b", 3), "request_id");
  EXPECT_NE(nul.message().find("request_id \"a\\x00b\" contains a NUL byte"), std::string::npos) << nul.message();
  Status nl = CheckText("a\nb", "hostname");
  EXPECT_NE(nl.message().find("hostname \"a\\x0ab\" contains the control character \\x0a"), std::string::npos)
      << nl.message();
  Status long_id = CheckText(std::string(201, 'x'), "request_id", 200);
  EXPECT_EQ(long_id.message(), "request_id is too long: 201 bytes, at most 200");
}

TEST(Text, NamesAreTheCatalogsRule) {
  for (const char* good : {"a", "web", "Team-1.main_x", "0abc"}) EXPECT_TRUE(CheckName("project", good).ok()) << good;
  for (std::string bad : {std::string(), std::string("a\0junk", 6), std::string("a\n"), std::string(".a"),
                          std::string("-a"), std::string("a b"), std::string("a/b"), std::string(64, 'a')}) {
    Status s = CheckName("project", bad);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << Printable(bad);
    EXPECT_NE(s.message().find("use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"),
              std::string::npos)
        << s.message();
    EXPECT_FALSE(HasControl(s.message())) << Printable(s.message());
  }
  EXPECT_EQ(CheckName("cluster", std::string("c\0", 2)).message(),
            "invalid cluster name \"c\\x00\": use 1-63 letters, digits, '.', '_' or '-', starting with a letter or "
            "digit");
}

TEST(Text, PrintableEscapesAndCuts) {
  EXPECT_EQ(Printable(std::string("a\0\n\x7f", 4)), "a\\x00\\x0a\\x7f");
  EXPECT_EQ(Printable("abcdef", 3), "abc...");
  EXPECT_EQ(Printable("ünï"), "ünï");
}

// Finding 1: a name with a NUL and a newline forged a line of the log.
TEST(Logging, AControlCharacterCannotForgeALogLine) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  sink->set_formatter(LogFormatter());
  spdlog::logger log("kiln-controller", sink);
  log.info("project configuration changed: {}",
           std::string("a\0\n2030-01-01 00:00:00.000 kiln-controller[1] info: forged", 58));
  const std::string line = out.str();
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one record, one line: " << line;
  EXPECT_EQ(line.find('\0'), std::string::npos);
  EXPECT_NE(line.find("kiln-controller["), std::string::npos) << line;
  EXPECT_NE(line.find("info: project configuration changed: a\\x00\\x0a2030-01-01"), std::string::npos) << line;
}

}  // namespace
}  // namespace kiln
