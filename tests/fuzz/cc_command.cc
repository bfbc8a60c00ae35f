// kiln-cc's command classification: cc::ClassifyCompile on any argument
// list (the input split at NUL bytes), with ObjectRecordsOptions and
// SearchOrder. A command is either cacheable, with one source, an output
// and a preprocessor command line, or refused with a reason.

#include <algorithm>
#include <vector>

#include "cc/command.h"
#include "fuzz.h"

using namespace kiln;
using kiln::fuzz::Require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> args;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t i = 0;
  while (i < in.size() && args.size() < 256) {
    size_t j = in.find('\0', i);
    if (j == std::string_view::npos) j = in.size();
    args.emplace_back(in.substr(i, j - i));
    i = j + 1;
  }

  cc::CompileCommand c = cc::ClassifyCompile(args);
  Require(c.args == args, "args not kept verbatim");
  if (c.cacheable) {
    Require(c.reason.empty(), "a cacheable command has a reason");
    Require(!c.source.empty() && !c.output.empty() && c.output != "-", "a cacheable command lacks source or output");
    Require(std::count(args.begin(), args.end(), c.source) >= 1, "the source is not one of the arguments");
    Require(!c.preprocess_args.empty() && c.preprocess_args.back() == "-E", "no -E at the end of the cpp command");
    Require(c.preprocess_args.size() <= args.size() + 1, "the cpp command grew");
  } else {
    Require(!c.reason.empty(), "a command is refused without a reason");
  }
  (void)cc::ObjectRecordsOptions(args);
  auto order = cc::SearchOrder(c, {"/usr/include"});
  Require(order.size() == c.quote_dirs.size() + c.dirs.size() + c.system_dirs.size() + 1 + c.after_dirs.size(),
          "SearchOrder lost a directory");
  return 0;
}
