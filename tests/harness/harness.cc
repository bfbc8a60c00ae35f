#include "harness/harness.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <pqxx/pqxx>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <utility>

#include "common/mounts.h"
#include "db/migrate.h"
#include "db/migrations_embedded.h"

extern char** environ;

namespace kiln::test {
namespace fs = std::filesystem;

namespace {

const char* kPgBin = "/usr/lib/postgresql/15/bin";

int Shell(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// "runuser -u postgres -- " when running as root (PostgreSQL refuses to run
// as root), after handing `dir` to that user; "" otherwise.
std::string AsPostgres(const std::string& dir) {
  if (geteuid() != 0) return "";
  passwd* pw = getpwnam("postgres");
  if (!pw) throw std::runtime_error("running as root but there is no postgres user to run initdb as");
  if (chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0) throw std::runtime_error("chown " + dir + " failed");
  return "runuser -u postgres -- ";
}

// Starts the server of `dir`/data on a free port, its socket in `dir` (no TCP).
// Returns the port and the command that started it.
std::pair<int, std::string> StartServer(const std::string& dir, const std::string& as) {
  for (int tries = 0; tries < 20; ++tries) {
    int port = 20000 + static_cast<int>((getpid() * 7 + tries * 131 + time(nullptr)) % 30000);
    std::string start = as + kPgBin + "/pg_ctl -D " + dir + "/data -l " + dir + "/server.log -w -t 30 -o \"-k " +
                        dir + " -p " + std::to_string(port) +
                        " -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                        " -c max_connections=200\" start > /dev/null 2>&1";
    if (Shell(start) == 0) return {port, start};
  }
  throw std::runtime_error("cannot start PostgreSQL; see " + dir + "/server.log");
}

std::string SocketUrl(const std::string& dir, int port, const std::string& db) {
  return "host=" + dir + " port=" + std::to_string(port) + " user=postgres dbname=" + db;
}

// initdb's options, also part of the template's cache key: 1 MB WAL
// segments, so that a copy moves 1 MB of WAL, not 16.
const char* kInitdbOptions = "-U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync --wal-segsize=1";

// A new cluster in `dir`/data.
void InitDb(const std::string& dir, const std::string& as) {
  if (Shell(as + kPgBin + "/initdb -D " + dir + "/data " + kInitdbOptions + " > " + dir + "/initdb.log 2>&1") != 0)
    throw std::runtime_error("initdb failed; see " + dir + "/initdb.log");
}

// kiln_template, with every migration of this build, in the running cluster of `dir`.
void MakeTemplateDatabase(const std::string& dir, int port) {
  pqxx::connection c(SocketUrl(dir, port, "postgres"));
  pqxx::nontransaction tx(c);
  tx.exec0("CREATE DATABASE kiln_template");
  auto m = db::Migrate(SocketUrl(dir, port, "kiln_template"));
  if (!m.ok()) throw std::runtime_error("migrations failed: " + m.status().message());
}

// The data directory of a stopped cluster holding `kiln_template` with every
// migration of this build applied. initdb and the migrations cost a test
// process about two seconds (more under load, much more under ASan), so one
// is made per set of migrations and each test process starts from a copy:
// /tmp/kiln-pg-template-<hash of PostgreSQL's path and the migrations>.
// KILN_TEST_FRESH_PG=1 makes every process run initdb itself instead.
std::string MigratedTemplate() {
  uint64_t h = 14695981039346656037ull;  // FNV-1a: a cache key, not a defence
  auto mix = [&h](const std::string& s) {
    for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  };
  mix(kPgBin);
  mix(std::to_string(geteuid()));  // its files belong to postgres only when made by root
  mix(kInitdbOptions);
  for (const auto& m : db::EmbeddedMigrations()) {
    mix(std::to_string(m.version));
    mix(m.name);
    mix(m.sql);
  }
  char key[17];
  snprintf(key, sizeof key, "%016llx", static_cast<unsigned long long>(h));
  const std::string cached = std::string("/tmp/kiln-pg-template-") + key;
  // In use: touched, so that no other run prunes it as unused (below).
  auto used = [&cached] {
    std::error_code ec;
    fs::last_write_time(cached, fs::file_time_type::clock::now(), ec);
    return cached + "/data";
  };
  if (fs::exists(cached + "/ready")) return used();

  // One process builds it; the others wait on the lock and then find it.
  int lock = open("/tmp/kiln-pg-template.lock", O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock < 0 || flock(lock, LOCK_EX) != 0) throw std::runtime_error("cannot lock /tmp/kiln-pg-template.lock");
  struct Unlock {
    int fd;
    ~Unlock() { close(fd); }
  } unlock{lock};
  if (fs::exists(cached + "/ready")) return used();

  char tmpl[] = "/tmp/kiln-pg-build-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  std::string dir = tmpl;
  chmod(dir.c_str(), 0755);
  std::string as = AsPostgres(dir);
  InitDb(dir, as);
  auto [port, start] = StartServer(dir, as);
  std::string stop = as + kPgBin + "/pg_ctl -D " + dir + "/data -m fast -w stop > /dev/null 2>&1";
  try {
    MakeTemplateDatabase(dir, port);
  } catch (...) {
    Shell(stop);
    throw;
  }
  // A clean stop: the copies start without recovery.
  if (Shell(stop) != 0) throw std::runtime_error("cannot stop the template cluster in " + dir);
  WriteFile(dir + "/ready", "");
  std::error_code ec;
  fs::remove_all(cached, ec);  // a half-made one from a killed run
  fs::rename(dir, cached);
  // Templates of other migration sets, unused for a day, go.
  for (const auto& e : fs::directory_iterator("/tmp", ec)) {
    std::string name = e.path().filename();
    if (name.rfind("kiln-pg-template-", 0) != 0 || e.path() == cached) continue;
    auto age = fs::file_time_type::clock::now() - fs::last_write_time(e.path(), ec);
    if (!ec && age > std::chrono::hours(24)) fs::remove_all(e.path(), ec);
  }
  return cached + "/data";
}

class Cluster {
 public:
  Cluster() {
    char tmpl[] = "/tmp/kiln-pg-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);
    const bool fresh = std::getenv("KILN_TEST_FRESH_PG") != nullptr;
    std::string as;
    if (fresh) {
      as = AsPostgres(dir_);
      InitDb(dir_, as);
    } else {
      std::string data = MigratedTemplate();
      as = AsPostgres(dir_);
      // cp -a keeps the postgres user's ownership and the 0700 of the data directory.
      if (Shell("cp -a " + data + " " + dir_ + "/data") != 0) throw std::runtime_error("cannot copy " + data);
    }
    std::tie(port_, start_cmd_) = StartServer(dir_, as);
    started_ = true;
    stop_cmd_ = as + kPgBin + "/pg_ctl -D " + dir_ + "/data -m immediate -w stop > /dev/null 2>&1";
    restart_stop_cmd_ = as + kPgBin + "/pg_ctl -D " + dir_ + "/data -m fast -w stop > /dev/null 2>&1";
    if (fresh) MakeTemplateDatabase(dir_, port_);
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
  std::string Url(const std::string& db) const { return SocketUrl(dir_, port_, db); }

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
  // A killed worker's mount(8) child may still attach a disk after that:
  // the directory is gone only once nothing is mounted in it.
  std::error_code ec;
  WaitFor(
      [&] {
        UnmountUnder(path_);
        fs::remove_all(path_, ec);
        return !fs::exists(path_, ec);
      },
      std::chrono::seconds(10));
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
