#include "harness/harness.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <pqxx/pqxx>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "common/mounts.h"
#include "db/migrate.h"

extern char** environ;

namespace kiln::test {
namespace fs = std::filesystem;

namespace {

const char* kPgBin = "/usr/lib/postgresql/15/bin";

int Shell(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

class Cluster {
 public:
  Cluster() {
    char tmpl[] = "/tmp/kiln-pg-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);
    std::string as;
    if (geteuid() == 0) {
      passwd* pw = getpwnam("postgres");
      if (!pw) throw std::runtime_error("running as root but there is no postgres user to run initdb as");
      if (chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) throw std::runtime_error("chown failed");
      as = "runuser -u postgres -- ";
    }
    std::string initdb = as + kPgBin + "/initdb -D " + dir_ + "/data -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync > " +
                         dir_ + "/initdb.log 2>&1";
    if (Shell(initdb) != 0) throw std::runtime_error("initdb failed; see " + dir_ + "/initdb.log");
    for (int tries = 0; tries < 20; ++tries) {
      port_ = 20000 + static_cast<int>((getpid() * 7 + tries * 131 + time(nullptr)) % 30000);
      std::string start = as + kPgBin + "/pg_ctl -D " + dir_ + "/data -l " + dir_ + "/server.log -w -t 30 -o \"-k " +
                          dir_ + " -p " + std::to_string(port_) +
                          " -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                          " -c max_connections=200\" start > /dev/null 2>&1";
      if (Shell(start) == 0) {
        started_ = true;
        start_cmd_ = start;
        break;
      }
    }
    if (!started_) throw std::runtime_error("cannot start PostgreSQL; see " + dir_ + "/server.log");
    stop_cmd_ = as + kPgBin + "/pg_ctl -D " + dir_ + "/data -m immediate -w stop > /dev/null 2>&1";
    restart_stop_cmd_ = as + kPgBin + "/pg_ctl -D " + dir_ + "/data -m fast -w stop > /dev/null 2>&1";
    pqxx::connection c(Url("postgres"));
    pqxx::nontransaction tx(c);
    tx.exec0("CREATE DATABASE kiln_template");
    auto m = db::Migrate(Url("kiln_template"));
    if (!m.ok()) throw std::runtime_error("migrations failed: " + m.status().message());
  }
  ~Cluster() {
    if (started_) Shell(stop_cmd_);
    std::error_code ec;
    if (std::getenv("KILN_TEST_KEEP_PG") == nullptr) fs::remove_all(dir_, ec);
  }
  void Restart() {
    if (Shell(restart_stop_cmd_) != 0) throw std::runtime_error("cannot stop PostgreSQL");
    if (Shell(start_cmd_) != 0) throw std::runtime_error("cannot restart PostgreSQL; see " + dir_ + "/server.log");
  }
  std::string DataDir() const { return dir_ + "/data"; }
  std::string Url(const std::string& db) const {
    return "host=" + dir_ + " port=" + std::to_string(port_) + " user=postgres dbname=" + db;
  }

 private:
  std::string dir_;
  int port_ = 0;
  bool started_ = false;
  std::string stop_cmd_, restart_stop_cmd_, start_cmd_;
};

Cluster& TheCluster() {
  static Cluster c;  // destroyed at exit: stops the server, removes the directory
  return c;
}

}  // namespace

std::string DatabaseFiles() { return TheCluster().DataDir(); }

std::string NewDatabase() {
  static std::mutex mu;
  static int n = 0;
  std::lock_guard g(mu);
  Cluster& c = TheCluster();
  std::string name = "t" + std::to_string(getpid()) + "_" + std::to_string(++n);
  pqxx::connection conn(c.Url("postgres"));
  pqxx::nontransaction tx(conn);
  tx.exec0("CREATE DATABASE " + name + " TEMPLATE kiln_template");
  return c.Url(name);
}

void RestartDatabase() { TheCluster().Restart(); }

std::string Sql(const std::string& url, const std::string& sql) {
  pqxx::connection c(url);
  pqxx::nontransaction tx(c);
  auto r = tx.exec(sql);
  if (r.empty() || r[0].empty() || r[0][0].is_null()) return "";
  return r[0][0].as<std::string>();
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string BinPath(const std::string& name) { return std::string(KILN_BIN_DIR) + "/" + name; }

TempDir::TempDir() {
  char tmpl[] = "/tmp/kiln-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}
TempDir::~TempDir() {
  // A worker killed mid-job leaves its checkouts mounted (its restart
  // would unmount them): never delete through a mount, nor leave it.
  UnmountUnder(path_);
  std::error_code ec;
  fs::remove_all(path_, ec);
}

namespace {
std::vector<std::string> MergedEnv(const std::map<std::string, std::string>& extra) {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string s = *e;
    auto eq = s.find('=');
    if (eq != std::string::npos) env[s.substr(0, eq)] = s.substr(eq + 1);
  }
  for (const auto& [k, v] : extra) env[k] = v;
  std::vector<std::string> out;
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

pid_t Spawn(const std::vector<std::string>& argv, int out_fd, int err_fd, const std::map<std::string, std::string>& env,
            const std::string& cwd = "") {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!cwd.empty()) posix_spawn_file_actions_addchdir_np(&fa, cwd.c_str());
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
  posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
  std::vector<std::string> a = argv, e = MergedEnv(env);
  std::vector<char*> av, ev;
  for (auto& s : a) av.push_back(s.data());
  av.push_back(nullptr);
  for (auto& s : e) ev.push_back(s.data());
  ev.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, av[0], &fa, nullptr, av.data(), ev.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0] + ": " + strerror(rc));
  return pid;
}

int DecodeStatus(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}
}  // namespace

Process::Process(const std::vector<std::string>& argv, const std::string& log_path,
                 const std::map<std::string, std::string>& env)
    : log_path_(log_path) {
  int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open " + log_path);
  pid_ = Spawn(argv, fd, fd, env);
  close(fd);
}

Process::~Process() {
  if (!reaped_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
}

void Process::Signal(int sig) {
  if (!reaped_) kill(pid_, sig);
}

bool Process::Running() {
  if (reaped_) return false;
  if (waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
  return !reaped_;
}

int Process::Wait(std::chrono::milliseconds timeout) {
  if (!WaitFor([&] { return !Running(); }, timeout)) return -1;
  return DecodeStatus(status_);
}

std::string Process::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& data, bool exec) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
  chmod(path.c_str(), exec ? 0755 : 0644);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

CommandResult RunCommand(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const std::map<std::string, std::string>& env, const std::string& cwd) {
  TempDir d;
  std::string out = d.path() + "/out", err = d.path() + "/err";
  int ofd = open(out.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  int efd = open(err.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  pid_t pid = Spawn(argv, ofd, efd, env, cwd);
  close(ofd);
  close(efd);
  int st = 0;
  CommandResult r;
  bool done = WaitFor([&] { return waitpid(pid, &st, WNOHANG) == pid; }, timeout);
  if (!done) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    r.exit_code = -1;
  } else {
    r.exit_code = DecodeStatus(st);
  }
  std::ifstream o(out), e(err);
  std::stringstream so, se;
  so << o.rdbuf();
  se << e.rdbuf();
  r.out = so.str();
  r.err = se.str();
  return r;
}

}  // namespace kiln::test
