#pragma once
// Running the real compiler from the wrapper: its output captured (and
// streamed, for the preprocessor), its standard input inherited.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kiln::cc {

struct ProcessResult {
  int exit_code = -1;  // the exit status, 128+N if signal N ended it, -1 if it could not start
  std::string error;   // why it could not start
  std::string out;     // standard output, unless streamed
  std::string err;     // standard error
};

// Runs argv[0] (a path) with argv and the wrapper's environment. With
// on_stdout, standard output is passed on in chunks instead of kept.
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         const std::function<void(std::string_view)>& on_stdout = nullptr);

// Runs argv[0] (a path) with exactly `env` ("NAME=value") in `cwd`, both
// outputs kept in memory; after `timeout_ms` (0: none) it is killed with
// SIGKILL and *timed_out set. Does not wait for processes it left behind.
ProcessResult RunIn(const std::vector<std::string>& argv, const std::vector<std::string>& env, const std::string& cwd,
                    int64_t timeout_ms, bool* timed_out);

// Replaces this process with argv[0] (a path); returns only on failure,
// with errno set.
void ExecProcess(const std::vector<std::string>& argv);

}  // namespace kiln::cc
