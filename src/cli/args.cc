#include "cli/args.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "common/util.h"

namespace kiln::cli {

Result<int64_t> ParseJobId(std::string_view text) {
  auto bad = [&] { return InvalidArgument("invalid job id \"" + std::string(text) + "\": expected a positive number"); };
  if (text.empty() || text.size() > 18) return bad();
  int64_t v = 0;
  for (char ch : text) {
    if (!std::isdigit(static_cast<unsigned char>(ch))) return bad();
    v = v * 10 + (ch - '0');
  }
  if (v <= 0) return bad();
  return v;
}

Result<v1::JobStatus> ParseJobStatus(std::string_view text) {
  std::string lower;
  for (char ch : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (lower == "canceled") lower = "cancelled";
  for (int i = v1::QUEUED; i <= v1::LOST; ++i) {
    auto s = static_cast<v1::JobStatus>(i);
    std::string name = v1::JobStatus_Name(s);
    for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (name == lower) return s;
  }
  return InvalidArgument("invalid status \"" + std::string(text) +
                         "\": expected queued, setup, running, succeeded, failed, cancelled or lost");
}

Result<std::map<std::string, std::string>> ParseKeyValues(const std::vector<std::string>& items,
                                                          std::string_view what) {
  std::map<std::string, std::string> out;
  for (const auto& item : items) {
    auto kv = ParseKeyValue(item);
    if (!kv.ok()) return InvalidArgument(std::string(what) + ": " + kv.status().message());
    out[kv->first] = kv->second;
  }
  return out;
}

Result<int64_t> SinceMs(const std::string& since) {
  if (since.empty()) return int64_t{0};
  auto d = ParseDuration(since);
  if (!d.ok()) return InvalidArgument("--since: " + d.status().message());
  return NowUnixMs() - d->count();
}

Result<std::string> ReadDocumentArg(const std::string& arg) {
  if (arg == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    if (std::cin.bad()) return InvalidArgument("cannot read the document from standard input");
    return ss.str();
  }
  if (!arg.empty() && arg[0] == '@') {
    std::string path = arg.substr(1);
    std::ifstream in(path, std::ios::binary);
    if (!in) return InvalidArgument("cannot read \"" + path + "\": " + std::strerror(errno));
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) return InvalidArgument("cannot read \"" + path + "\": " + std::strerror(errno));
    return text;
  }
  return arg;
}

}  // namespace kiln::cli
