#pragma once
// Input trees and outputs for kiln submit / kiln outputs: hash a directory,
// upload what the farm lacks, download an output tree.

#include <string>
#include <vector>

#include "cli/client.h"
#include "common/status.h"

namespace kiln::cli {

struct SendOptions {
  std::string dir;
  std::vector<std::string> include, exclude;
  bool use_git = true;
  bool hash_cache = true;
  int64_t max_files = 1'000'000;  // a submit from the wrong directory (say $HOME) stops early
  // The command's declared outputs and where they are downloaded ("": dir):
  // what kiln downloaded there and is unchanged is left out (downloads.h).
  std::vector<std::string> outputs;
  std::string outputs_dir;
};

struct SentTree {
  v1::Digest root;
  std::vector<std::string> left_out;  // downloaded outputs left out of the tree, sorted
};

// Hashes `o.dir`, uploads what CAS lacks, and prints what it did to stderr.
// Returns the input tree's digest ("<hex>/<size>") and what was left out.
Result<SentTree> SendTree(Client& c, const SendOptions& o);

// Writes the output tree `root` into `dest`, replacing files of the same
// names, and records what it wrote (downloads.h); prints a summary line to
// stderr.
Status DownloadOutputs(Client& c, const v1::Digest& root, const std::string& dest);

// "1.2 MiB".
std::string HumanBytes(int64_t n);

}  // namespace kiln::cli
