#pragma once
// The kiln command line: flags, subcommands, dispatch.

namespace kiln::cli {

// Parses argv, runs the chosen subcommand and returns the process exit code
// (see main.cpp). Usage errors return 2 after printing the problem; --help and
// --version print and return 0.
int Main(int argc, char** argv);

}  // namespace kiln::cli
