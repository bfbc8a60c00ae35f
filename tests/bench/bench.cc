// kiln-bench: measures the queue and the farm, printing key=value lines.
// Run it through tests/bench/run.sh, which starts a durable PostgreSQL.
//
//   queue     queue library claim+complete, one job and 50 jobs per claim,
//             beside pgbench running the same statements (the floor)
//   e2e       no-op jobs through controller and worker on loopback
//   dispatch  submit-to-running latency on an idle farm
//   requeue   kill -9 of a worker until its job runs again elsewhere (the
//             controller waits reconnect_grace, 5 s, for the worker first)
//
//   kiln-bench hash DIR [--cache-file F]   (no database; run.sh's cas mode)
//             hashes DIR into a Merkle tree as kiln submit does, with the
//             local hash cache F when given (loaded before, saved after)

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <pqxx/pqxx>
#include <thread>

#include "cas/unpack.h"
#include "cas/walk.h"
#include "common/util.h"
#include "config/config.h"
#include "harness/harness.h"
#include "kiln/v1/kiln.grpc.pb.h"
#include "queue/dispatch_store.h"
#include "queue/open_pool.h"
#include "queue/worker_store.h"
#include "api/channel.h"
#include "cas/client.h"
#include "worker/checkout.h"
#include "worker/local_cas.h"
#include "worker/sandbox.h"

namespace kiln::bench {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

std::string g_url;

// run.sh makes the CA and the tokens (KILN_BENCH_TLS_DIR, KILN_TOKEN_FILE,
// KILN_BENCH_SUBMIT_TOKEN_FILE); KILN_BENCH_INSECURE=1 runs without TLS.
bool Insecure() {
  const char* v = std::getenv("KILN_BENCH_INSECURE");
  return v != nullptr && std::string(v) == "1";
}
std::string TlsDir() {
  const char* v = std::getenv("KILN_BENCH_TLS_DIR");
  return v != nullptr ? v : "";
}
// KILN_BENCH_HISTORY=off runs the controller without the farm's history (no
// job timings, no samples); on (the default) with timings and a sample every
// second, sixty times the default rate.
bool History() {
  const char* v = std::getenv("KILN_BENCH_HISTORY");
  return v == nullptr || std::string(v) != "off";
}
// The token its submits use: run.sh's project-scoped submit token
// (KILN_BENCH_SUBMIT_TOKEN_FILE), else KILN_TOKEN_FILE's.
std::string TokenFile() {
  const char* v = std::getenv("KILN_BENCH_SUBMIT_TOKEN_FILE");
  if (v == nullptr || *v == '\0') v = std::getenv("KILN_TOKEN_FILE");
  return v != nullptr ? v : "";
}
// A single-use join token for one worker.
std::string JoinToken() {
  static int n = 0;
  std::string file = TlsDir() + "/../join" + std::to_string(n++);
  test::RunCommand({test::BinPath("kiln-controller"), "join-token", "--database-url", g_url, "--out", file},
                   std::chrono::seconds(30));
  return file;
}
std::string g_pghost, g_pgport, g_pgdb;
constexpr int kClients = 8;

void Out(const std::string& k, double v) {
  std::printf("%s=%.1f\n", k.c_str(), v);
  std::fflush(stdout);
}

void Exec(const std::string& sql) {
  pqxx::connection c(g_url);
  pqxx::nontransaction tx(c);
  tx.exec(sql);
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

// Empties the queue and every table that refers to its jobs (logs, the
// action cache, compile records).
void EmptyQueue() { Exec("TRUNCATE build_jobs RESTART IDENTITY CASCADE"); }

// Empties the queue and fills it with n queued jobs; registers the
// benchmark's claimers bw0..bw7.
void Prefill(queue::WorkerStore& workers, int n) {
  EmptyQueue();
  Exec("INSERT INTO build_jobs (project_id, spec) SELECT 1, '{\"argv\": [\"true\"]}' FROM generate_series(1, " +
       std::to_string(n) + ")");
  Exec("VACUUM ANALYZE build_jobs");
  for (int i = 0; i < kClients; ++i) {
    queue::WorkerRegistration w{"bw" + std::to_string(i), "bench", "default", "x86_64", "linux", {}, 64, "", "", "s", false, ""};
    (void)workers.Register(w, 3600s);
  }
}

double LibraryRun(queue::DispatchStore& q, int batch, int iterations) {
  std::atomic<int64_t> done{0};
  auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (int i = 0; i < kClients; ++i) {
    ts.emplace_back([&, i] {
      std::string w = "bw" + std::to_string(i);
      for (int k = 0; k < iterations; ++k) {
        auto c = q.Claim(w, "s", batch, config::ControllerConfig{}.workspace_grace);
        if (!c.ok() || c->empty()) continue;
        std::vector<queue::Update> ups;
        for (const auto& j : *c) {
          queue::Update u;
          u.worker_id = w;
          u.job_id = j.id;
          u.attempt = j.attempt;
          u.status = queue::JobStatus::kSucceeded;
          u.result = queue::JobResult{0, 0, "", false, "", ""};
          ups.push_back(u);
        }
        if (q.Apply(ups, {}).ok()) done += static_cast<int64_t>(c->size());
      }
    });
  }
  for (auto& t : ts) t.join();
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return static_cast<double>(done) / s;
}

// pgbench with the library's own claim and update statements.
double PgbenchRun(int batch, int iterations) {
  std::string claim = queue::ClaimSql();
  claim = Replace(claim, "$1", "('bw' || :client_id)");
  claim = Replace(claim, "$2", "'s'");
  claim = Replace(claim, "$3", std::to_string(batch));
  claim = Replace(claim, "$4", "10");
  std::string update = Replace(queue::ApplyUpdatesSql(), "$1::jsonb", ":js::jsonb");
  std::string script = "/tmp/kiln-bench-" + std::to_string(getpid()) + ".sql";
  std::ofstream(script) << "WITH c AS (" << claim
                        << ") SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'attempt', attempt, 'status', "
                           "'succeeded', 'result', '{\"exit_code\": 0}'::jsonb, 'started_ms', 0, 'finished_ms', 0, "
                           "'worker', 'bw' || :client_id)), '[]') AS js FROM c\n\\gset\n"
                        << update << ";\n";
  std::string cmd = "/usr/lib/postgresql/15/bin/pgbench -n -M prepared -c " + std::to_string(kClients) +
                    " -j 2 -t " + std::to_string(iterations) + " -f " + script + " -h " + g_pghost + " -p " +
                    g_pgport + " -U postgres " + g_pgdb + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  pclose(p);
  std::remove(script.c_str());
  const std::string marker = "tps = ";
  size_t at = out.find(marker);
  if (at == std::string::npos || out.find("without initial connection time", at) == std::string::npos) {
    std::cerr << "pgbench failed:\n" << out << "\n";
    return 0;
  }
  double tps = std::stod(out.substr(at + marker.size()));
  // Count jobs actually completed: a claim that found nothing is still a
  // pgbench transaction.
  double completed = std::stod(test::Sql(g_url, "SELECT count(*) FROM build_jobs WHERE status = 'succeeded'"));
  double transactions = static_cast<double>(kClients) * iterations;
  return tps * completed / transactions;
}

void QueueBench() {
  auto pool = queue::OpenPool(g_url, kClients);
  if (!pool.ok()) {
    std::cerr << pool.status().message() << "\n";
    std::exit(1);
  }
  queue::WorkerStore workers(**pool);
  queue::DispatchStore dispatch(**pool);
  struct Mode {
    const char* name;
    int batch, iterations;
  } modes[] = {{"single", 1, 1500}, {"batched", 50, 200}};
  for (const auto& m : modes) {
    int n = kClients * m.batch * m.iterations;
    // Alternate, twice each, and keep the best: the machine is shared.
    double lib = 0, pg = 0;
    for (int round = 0; round < 2; ++round) {
      Prefill(workers, n + n / 10);
      lib = std::max(lib, LibraryRun(dispatch, m.batch, m.iterations));
      Prefill(workers, n + n / 10);
      pg = std::max(pg, PgbenchRun(m.batch, m.iterations));
    }
    Out(std::string("queue_jobs_per_s_") + m.name, lib);
    Out(std::string("pgbench_jobs_per_s_") + m.name, pg);
    Out(std::string("queue_vs_pgbench_ratio_") + m.name, pg > 0 ? lib / pg * 100 : 0);
  }
}

// ---- farm benchmarks ----

struct Farm {
  test::TempDir dir;
  std::unique_ptr<test::Process> controller;
  std::vector<std::unique_ptr<test::Process>> workers;
  std::string address;
  std::unique_ptr<v1::JobService::Stub> jobs;

  explicit Farm(int nworkers, int slots) {
    EmptyQueue();
    Exec("DELETE FROM workers");
    std::string addr_file = dir.path() + "/addr";
    controller = std::make_unique<test::Process>(
        std::vector<std::string>{test::BinPath("kiln-controller"), "--database-url", g_url, "--listen", "127.0.0.1:0",
                                 "--address-file", addr_file, "--cas-dir", dir.path() + "/cas", "--log-level", "warn",
                                 "--set", Insecure() ? "insecure=true" : "tls_dir=" + TlsDir(), "--set",
                                 History() ? "job_timings=true" : "job_timings=false", "--set",
                                 History() ? "sample_interval=1s" : "sample_interval=0"},
        dir.path() + "/controller.log");
    test::WaitFor([&] { return static_cast<bool>(std::getline(std::ifstream(addr_file) >> std::ws, address)); }, 20s);
    for (int i = 0; i < nworkers; ++i) StartWorker(i, slots);
    api::ChannelOptions o;
    o.address = address;
    o.insecure = Insecure();
    if (!o.insecure) o.ca_pem = test::ReadFile(TlsDir() + "/ca.crt");
    o.token = Trim(test::ReadFile(TokenFile()));
    jobs = v1::JobService::NewStub(api::MakeChannel(o, grpc::ChannelArguments()));
  }

  void StartWorker(int i, int slots) {
    if (static_cast<int>(workers.size()) <= i) workers.resize(i + 1);
    std::string n = std::to_string(i);
    workers[i] = std::make_unique<test::Process>(
        std::vector<std::string>{test::BinPath("kiln-worker"), "--controller", address, "--slots", std::to_string(slots),
                                 "--work-dir", dir.path() + "/w" + n, "--label", "bench=" + n, "--log-level", "warn",
                                 "--set", "allow_plain_jobs=true", "--set",
                                 Insecure() ? "insecure=true" : "ca_file=" + TlsDir() + "/ca.crt", "--set",
                                 "join_token_file=" + JoinToken()},
        dir.path() + "/worker" + n + ".log");
    test::WaitFor([&] { return test::Sql(g_url, "SELECT count(*) FROM workers WHERE state = 'connected' AND properties->>'bench' = '" + n + "'") == "1"; }, 20s);
  }

  int64_t Submit(const std::vector<std::string>& argv) {
    grpc::ClientContext ctx;
    v1::SubmitRequest r;
    for (const auto& a : argv) r.mutable_spec()->add_argv(a);
    v1::SubmitResponse resp;
    auto st = jobs->Submit(&ctx, r, &resp);
    if (!st.ok()) {
      std::cerr << "submit failed: " << st.error_code() << " " << st.error_message() << "\n";
      return 0;
    }
    return resp.job().id();
  }

  void Follow(int64_t id) {
    grpc::ClientContext ctx;
    v1::WatchJobRequest r;
    r.set_job_id(id);
    r.set_follow(true);
    auto reader = jobs->WatchJob(&ctx, r);
    v1::JobEvent ev;
    while (reader->Read(&ev)) {
    }
    reader->Finish();
  }
};

void E2eBench() {
  Farm farm(1, 8);
  constexpr int kJobs = 3000, kSubmitters = 16;  // concurrent clients, as CI pipelines are
  std::vector<std::thread> ts;
  for (int t = 0; t < kSubmitters; ++t) {
    ts.emplace_back([&, t] {
      for (int i = t; i < kJobs; i += kSubmitters) farm.Submit({"true"});
    });
  }
  for (auto& t : ts) t.join();
  Out("e2e_submit_per_s", kJobs / std::stod(test::Sql(g_url, "SELECT extract(epoch FROM max(submitted_at) - min(submitted_at)) FROM build_jobs")));
  // Poll on one connection, not a new one (a backend fork) each time.
  pqxx::connection c(g_url);
  pqxx::nontransaction tx(c);
  auto deadline = Clock::now() + 300s;
  while (Clock::now() < deadline &&
         tx.exec1("SELECT count(*) FROM build_jobs WHERE status = 'succeeded'")[0].as<int>() < kJobs) {
    std::this_thread::sleep_for(50ms);
  }
  double span = std::stod(test::Sql(g_url, "SELECT extract(epoch FROM max(finished_at) - min(submitted_at)) FROM build_jobs"));
  Out("e2e_jobs_per_s", kJobs / span);
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

void DispatchBench() {
  Farm farm(1, 2);
  constexpr int kJobs = 500;
  for (int i = 0; i < 20; ++i) farm.Follow(farm.Submit({"true"}));  // warm up connections
  EmptyQueue();
  for (int i = 0; i < kJobs; ++i) farm.Follow(farm.Submit({"true"}));
  pqxx::connection c(g_url);
  pqxx::nontransaction tx(c);
  std::vector<double> ms;
  for (const auto& r : tx.exec("SELECT extract(epoch FROM started_at - submitted_at) * 1000 FROM build_jobs")) {
    ms.push_back(r[0].as<double>());
  }
  Out("dispatch_p50_ms", Percentile(ms, 0.50));
  Out("dispatch_p99_ms", Percentile(ms, 0.99));
}

void RequeueBench() {
  Farm farm(2, 1);
  std::vector<double> ms;
  for (int round = 0; round < 5; ++round) {
    int64_t id = farm.Submit({"sleep", "60"});
    std::string holder;
    test::WaitFor([&] {
      holder = test::Sql(g_url, "SELECT w.properties->>'bench' FROM build_jobs j JOIN workers w ON w.id = j.worker_id"
                                " WHERE j.id = " + std::to_string(id) + " AND j.status = 'running'");
      return !holder.empty();
    }, 20s);
    int victim = std::stoi(holder);
    int64_t killed_ms = NowUnixMs();
    farm.workers[victim]->Signal(SIGKILL);
    std::string started;
    test::WaitFor([&] {
      started = test::Sql(g_url, "SELECT (extract(epoch FROM started_at) * 1000)::bigint FROM build_jobs WHERE id = " +
                                     std::to_string(id) + " AND attempt = 2 AND status = 'running'");
      return !started.empty();
    }, 30s);
    if (!started.empty()) ms.push_back(static_cast<double>(std::stoll(started) - killed_ms));
    farm.workers[victim]->Wait(5s);
    grpc::ClientContext ctx;
    v1::CancelJobRequest cr;
    cr.set_job_id(id);
    v1::Job j;
    farm.jobs->CancelJob(&ctx, cr, &j);
    test::WaitFor([&] { return test::Sql(g_url, "SELECT status FROM build_jobs WHERE id = " + std::to_string(id)) == "cancelled"; }, 10s);
    farm.StartWorker(victim, 1);
  }
  if (ms.empty()) return;
  Out("requeue_after_worker_kill_ms", Percentile(ms, 0.5));
  Out("requeue_after_worker_kill_max_ms", *std::max_element(ms.begin(), ms.end()));
}

// kiln-bench hash DIR [--cache-file F]: seconds covers loading the cache,
// BuildTree and saving the cache (what kiln submit spends before uploading);
// walk_seconds is BuildTree alone.
int HashMain(int argc, char** argv) {
  std::string dir, cache_file;
  bool bad = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--cache-file" && i + 1 < argc) cache_file = argv[++i];
    else if (dir.empty() && !a.empty() && a[0] != '-') dir = a;
    else bad = true;
  }
  if (dir.empty() || bad) {
    std::cerr << "usage: kiln-bench hash DIR [--cache-file FILE]\n";
    return 2;
  }
  auto t0 = Clock::now();
  cas::WalkOptions opts;  // use_git false: every file under DIR
  cas::HashCache cache;
  if (!cache_file.empty()) {
    cache = cas::HashCache::Load(cache_file);
    opts.cache = &cache;
  }
  auto t1 = Clock::now();
  auto tree = cas::BuildTree(dir, opts);
  auto t2 = Clock::now();
  if (!tree.ok()) {
    std::cerr << "kiln-bench hash: " << tree.status().message() << "\n";
    return 1;
  }
  if (!cache_file.empty()) {
    if (auto s = cache.Save(); !s.ok()) {
      std::cerr << "kiln-bench hash: " << s.message() << "\n";
      return 1;
    }
  }
  auto t3 = Clock::now();
  std::printf("seconds=%.3f\nwalk_seconds=%.3f\nfiles=%lld\nbytes=%lld\nhashed=%lld\ndirs=%lld\nroot=%s\n",
              std::chrono::duration<double>(t3 - t0).count(), std::chrono::duration<double>(t2 - t1).count(),
              static_cast<long long>(tree->file_count), static_cast<long long>(tree->file_bytes),
              static_cast<long long>(tree->hashed_files), static_cast<long long>(tree->dir_count),
              tree->root.ToString().c_str());
  return 0;
}

// kiln-bench sandbox BUSYBOX_TAR [TOOLCHAIN_TAR]: the runc sandbox's cost per
// job against bare runc, and the image unpack time.
//   sandbox_start_ms: the worker's whole per-job path (bundle, runc run,
//     limit readout, runc delete, bundle removal) for `true`, image unpacked;
//   runc_bare_ms: `runc run` of the same prepared bundle, nothing else;
// both the median of 50, alternating; image_unpack_s: the toolchain layer.
int SandboxMain(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: kiln-bench sandbox BUSYBOX_TAR [TOOLCHAIN_TAR]\n";
    return 2;
  }
  test::TempDir dir;
  std::string rootfs = dir.path() + "/rootfs";
  fs::create_directories(rootfs);
  if (auto u = cas::Unpack(argv[2], rootfs, {}); !u.ok()) {
    std::cerr << "kiln-bench sandbox: " << u.status().message() << "\n";
    return 1;
  }
  ::chmod((rootfs + "/tmp").c_str(), 01777);
  worker::SandboxCaps caps;
  auto sb = worker::MakeRuncSandbox(dir.path() + "/runc", dir.path() + "/bundles", "kiln-bench-", caps);
  if (auto s = sb->Check(); !s.ok()) {
    std::cerr << "kiln-bench sandbox: " << s.message() << "\n";
    return 1;
  }
  sb->CleanUp();
  std::atomic<bool> no{false};
  std::vector<double> kiln_ms, bare_ms;
  // A bare bundle: the same config, written once.
  std::string bare = dir.path() + "/bare";
  fs::create_directories(bare + "/ws");
  worker::RunRequest br;
  br.job_id = 0;
  br.spec.argv = {"true"};
  br.job_dir = bare + "/ws";
  ::chown(br.job_dir.c_str(), caps.uid, caps.gid);
  std::ofstream(bare + "/config.json") << worker::RuncConfig(br, rootfs, caps, "kiln-bench-bare");
  for (int i = 0; i < 50; ++i) {
    worker::RunRequest req;
    req.job_id = i + 1;
    req.attempt = 1;
    req.spec.argv = {"true"};
    req.job_dir = dir.path() + "/job" + std::to_string(i);
    fs::create_directories(req.job_dir);
    auto t0 = Clock::now();
    auto out = sb->Run(req, rootfs, [](int64_t) {}, [](const std::string&) {}, no, no);
    kiln_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (out.status != queue::JobStatus::kSucceeded) {
      std::cerr << "kiln-bench sandbox: the trivial job failed: " << out.result.error << "\n";
      return 1;
    }
    auto t1 = Clock::now();
    int rc = std::system(("runc --root " + dir.path() + "/runc-bare run --bundle " + bare + " bare" +
                          std::to_string(i) + " >/dev/null 2>&1").c_str());
    bare_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t1).count());
    if (rc != 0) {
      std::cerr << "kiln-bench sandbox: bare runc run failed\n";
      return 1;
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  double k = median(kiln_ms), b = median(bare_ms);
  std::printf("sandbox_start_ms=%.1f\nrunc_bare_ms=%.1f\nsandbox_vs_bare=%.2f\n", k, b, k / b);
  if (argc >= 4) {
    std::string root2 = dir.path() + "/toolchain";
    fs::create_directories(root2);
    auto t0 = Clock::now();
    auto u = cas::Unpack(argv[3], root2, {});
    if (!u.ok()) {
      std::cerr << "kiln-bench sandbox: " << u.status().message() << "\n";
      return 1;
    }
    std::printf("image_unpack_s=%.2f\nimage_unpack_bytes=%lld\n",
                std::chrono::duration<double>(Clock::now() - t0).count(), static_cast<long long>(u->bytes));
  }
  return 0;
}

// kiln-bench checkout DIR [ROUNDS]: the setup of a fresh job's tree on a
// worker, everything already in its local cache (DIR: PostgreSQL's source
// tree in run.sh), median of ROUNDS (default 15), alternating:
//   job_setup_ms_pg_tree_before: as before the writable checkout: the
//     tree's hard links written into the job directory and its directories
//     given to the build user;
//   job_setup_ms_pg_tree: the checkout (worker::Checkouts::Make): the same
//     links as the overlay's lower layer while the job's disk is copied from
//     its template and loop-mounted, then the overlay mounted.
// Teardown (unmount, delete) is after the job's report on a worker, and is
// not timed.
int CheckoutMain(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: kiln-bench checkout DIR [ROUNDS]\n";
    return 2;
  }
  const int rounds = argc >= 4 ? std::atoi(argv[3]) : 15;
  auto fail = [](const std::string& what) {
    std::cerr << "kiln-bench checkout: " << what << "\n";
    return 1;
  };
  // On the disk a worker's work_dir is on (not a tmpfs /tmp).
  char tmpl[] = "/var/tmp/kiln-bench-checkout.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return fail("cannot create a directory in /var/tmp");
  struct Dir {
    std::string p;
    const std::string& path() const { return p; }
    ~Dir() {
      UnmountUnder(p);
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } dir{tmpl};
  auto built = cas::BuildTree(argv[2], cas::WalkOptions{});
  if (!built.ok()) return fail(built.status().message());
  const uint32_t uid = 100000;
  worker::LocalCas local(dir.path() + "/cas", int64_t{64} << 30, uid, uid);
  for (const auto& [d, path] : built->files) {
    std::ifstream in(path, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (auto s = local.Put(d, data, [](const std::string&) { return Status::Ok(); }); !s.ok()) return fail(s.message());
  }
  cas::FetchedTree tree;
  tree.root = built->root;
  for (const auto& [d, node] : built->nodes) tree.nodes.emplace_back(d, node);
  // Nothing is fetched: every blob is cached.
  cas::CasClient nowhere(grpc::CreateChannel("unix:" + dir.path() + "/none.sock", grpc::InsecureChannelCredentials()));
  worker::Checkouts checkouts(dir.path() + "/disks", uid, uid);
  if (!checkouts.overlay().ok()) return fail("no overlay checkouts here: " + checkouts.overlay().message());
  std::vector<double> before_ms, after_ms;
  for (int i = 0; i < rounds; ++i) {
    std::string old_dir = dir.path() + "/old" + std::to_string(i);
    auto t0 = Clock::now();
    fs::create_directories(old_dir);
    auto made = local.Materialize(nowhere, tree, old_dir);
    if (!made.ok()) return fail(made.status().message());
    worker::OwnDirs(old_dir, uid, uid);
    before_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());

    std::string base = dir.path() + "/job" + std::to_string(i);
    auto t1 = Clock::now();
    auto src = checkouts.Make(base, int64_t{20} << 30, [&](const std::string& lower) {
      return local.Materialize(nowhere, tree, lower).status();
    });
    after_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t1).count());
    if (!src.ok()) return fail(src.status().message());
    checkouts.Unmount(base);
    fs::remove_all(base);
    fs::remove_all(old_dir);
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  double b = median(before_ms), a = median(after_ms);
  std::printf("pg_tree_files=%lld\njob_setup_ms_pg_tree_before=%.1f\njob_setup_ms_pg_tree=%.1f\n"
              "job_setup_pg_tree_after_vs_before=%.2f\n",
              static_cast<long long>(built->file_count), b, a, a / b);
  return 0;
}

}  // namespace
}  // namespace kiln::bench

int main(int argc, char** argv) {
  using namespace kiln::bench;
  if (argc >= 2 && std::string(argv[1]) == "hash") return HashMain(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "sandbox") return SandboxMain(argc, argv);
  if (argc >= 2 && std::string(argv[1]) == "checkout") return CheckoutMain(argc, argv);
  std::vector<std::string> names;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--database-url" && i + 1 < argc) g_url = argv[++i];
    else names.push_back(a);
  }
  const char* host = std::getenv("KILN_BENCH_PGHOST");
  const char* port = std::getenv("KILN_BENCH_PGPORT");
  const char* db = std::getenv("KILN_BENCH_PGDATABASE");
  if (g_url.empty() || !host || !port || !db) {
    std::cerr << "usage: KILN_BENCH_PGHOST=.. KILN_BENCH_PGPORT=.. KILN_BENCH_PGDATABASE=.. kiln-bench --database-url URL "
                 "[queue|e2e|dispatch|requeue]...\n       kiln-bench hash DIR [--cache-file FILE]\n"
                 "(tests/bench/run.sh sets all of this up)\n";
    return 2;
  }
  g_pghost = host;
  g_pgport = port;
  g_pgdb = db;
  if (names.empty()) names = {"queue", "e2e", "dispatch", "requeue"};
  for (const auto& n : names) {
    if (n == "queue") QueueBench();
    else if (n == "e2e") E2eBench();
    else if (n == "dispatch") DispatchBench();
    else if (n == "requeue") RequeueBench();
    else {
      std::cerr << "unknown benchmark \"" << n << "\" (queue, e2e, dispatch, requeue)\n";
      return 2;
    }
  }
  return 0;
}
