#pragma once
// kiln-cc: the compiler wrapper the sandbox puts first on PATH (as gcc, cc,
// g++, c++) and that also works as `kiln-cc gcc ...`. It asks the worker,
// over the unix socket bound into the sandbox, for a cached object of the
// translation unit; on a miss it compiles and stores the result. Whatever
// it does not fully understand, and whenever the cache cannot be reached,
// it runs the compiler exactly as asked. It never makes a build fail that
// would have succeeded without it.

#include <string>
#include <vector>

#include "common/status.h"

namespace kiln::cc {

// The compiler a wrapper invocation stands for.
struct Invocation {
  std::string name;                // as invoked: "gcc"
  std::string path;                // where it was found on PATH: "/usr/bin/gcc"
  std::vector<std::string> args;   // its arguments
};

// Finds the real compiler: argv[1] when invoked as kiln-cc, else argv[0]'s
// name, looked up on PATH skipping every directory where that name is
// kiln-cc itself (`self` is this executable's real path). NotFound when
// there is no such compiler.
Result<Invocation> ResolveInvocation(const std::vector<std::string>& argv, const std::string& path_env,
                                     const std::string& self);

// Runs the wrapper; returns the process's exit code.
int RunWrapper(int argc, char** argv);

}  // namespace kiln::cc
