#pragma once
// Test harness: a throwaway PostgreSQL per test binary, a fresh migrated
// database per test, child processes of the real binaries, and waiting on
// conditions with deadlines (never sleep-and-hope).

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace kiln::test {

// Starts (once per process) a private PostgreSQL cluster in a temp directory,
// holding a template database with the kiln migrations applied, and removes
// everything at exit. The cluster is a copy of one made (initdb as the postgres
// user when running as root, then the migrations) once per set of migrations
// and kept in /tmp; KILN_TEST_FRESH_PG=1 makes each process run initdb itself.
// Returns the URL of a new database cloned from the template.
std::string NewDatabase();

// The cluster's data directory (what a grep for leaked values searches:
// tables, indexes, WAL).
std::string DatabaseFiles();

// Stops the cluster (fast shutdown: every connection is dropped) and starts it again.
void RestartDatabase();

// Runs SQL on a database and returns the first column of the first row ("" if none).
std::string Sql(const std::string& url, const std::string& sql);

// Polls `cond` every 10 ms until it is true or `timeout` passes.
bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

// Path of a built binary (build/bin/NAME).
std::string BinPath(const std::string& name);

// Writes a file (creating its directories), mode 0755 if exec else 0644.
void WriteFile(const std::string& path, const std::string& data, bool exec = false);
std::string ReadFile(const std::string& path);

// A temp directory removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A child process with stdout+stderr captured to a file; killed (SIGKILL)
// on destruction if still running.
class Process {
 public:
  Process(const std::vector<std::string>& argv, const std::string& log_path,
          const std::map<std::string, std::string>& env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Waits for exit up to timeout; returns the exit code, 128+signal, or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout);
  bool Running();
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string log_path_;
};

// Runs a command to completion; returns exit code and captured stdout/stderr.
struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
// Runs argv to completion (killed after `timeout`), in `cwd` if given.
CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const std::map<std::string, std::string>& env = {}, const std::string& cwd = "");

}  // namespace kiln::test
