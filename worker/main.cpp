// kiln-worker: parse flags, load and validate config, compose, run.

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <iostream>

#include "common/log.h"
#include "common/signals.h"
#include "config/reload.h"
#include "common/util.h"
#include "common/version.h"
#include "config/config.h"
#include "worker/worker.h"

int main(int argc, char** argv) {
  using namespace kiln;
  CLI::App app{"kiln-worker: runs builds assigned by a kiln-controller"};
  app.set_version_flag("--version", std::string("kiln-worker ") + kVersion);
  std::string config_file, controller, work_dir, cluster, log_level, drain_grace;
  std::vector<std::string> labels, sets;
  int slots = -1;
  bool check_config = false;
  app.add_option("--config", config_file, "Config file (key = value lines; see deploy/worker.conf.example)");
  app.add_option("--controller", controller, "Controller address (else KILN_CONTROLLER, default 127.0.0.1:7070)");
  app.add_option("--slots", slots, "Jobs run at once (default: number of CPUs)");
  app.add_option("--work-dir", work_dir, "Directory for job workspaces (default /var/lib/kiln-worker)");
  app.add_option("--cluster", cluster, "Cluster this worker serves (default \"default\")");
  app.add_option("--label", labels, "KEY=VALUE property jobs may require (repeatable)");
  app.add_option("--drain-grace", drain_grace, "On SIGTERM, how long running jobs may finish (e.g. 10m)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error");
  app.add_option("--set", sets, "Override one config setting, KEY=VALUE (repeatable), e.g. --set allow_plain_jobs=true");
  app.add_flag("--check-config", check_config, "Validate the configuration and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  // Defaults, the file, the environment, then the command line: at start
  // and again on SIGHUP.
  auto load = [&]() -> Result<config::WorkerConfig> {
    auto c = config::LoadWorker(config_file);
    if (!c.ok()) return c;
    if (!controller.empty()) c->controller = controller;
    if (slots >= 0) c->slots = slots;
    if (!work_dir.empty()) c->work_dir = work_dir;
    if (!cluster.empty()) c->cluster = cluster;
    if (!log_level.empty()) c->log_level = log_level;
    for (const auto& l : labels) {
      auto kv = ParseKeyValue(l);
      if (!kv.ok()) return InvalidArgument("--label: " + kv.status().message());
      c->labels[kv->first] = kv->second;
    }
    if (!drain_grace.empty()) {
      auto d = ParseDuration(drain_grace);
      if (!d.ok()) return InvalidArgument("--drain-grace: " + d.status().message());
      c->drain_grace = *d;
    }
    for (const auto& kv : sets) KILN_RETURN_IF_ERROR(config::ApplySetting(*c, kv));
    return c;
  };
  auto cfg = load();
  if (!cfg.ok()) {
    std::cerr << "kiln-worker: " << cfg.status().message() << "\n";
    return 2;
  }
  if (Status s = config::Validate(*cfg); !s.ok()) {
    std::cerr << "kiln-worker: invalid configuration: " << s.message() << "\n";
    return 2;
  }
  if (!InitLogging("kiln-worker", cfg->log_level)) {
    std::cerr << "kiln-worker: unknown log level \"" << cfg->log_level << "\"\n";
    return 2;
  }
  if (check_config) {
    std::cout << "configuration ok\n";
    return 0;
  }

  config::Reloader<config::WorkerConfig> reloader(config_file, config::WorkerReloadable);
  std::atomic<worker::Worker*> running{nullptr};
  std::atomic<int> stops{0};
  HandleSignals(
      [&](int n) {
        stops = n;
        if (auto* w = running.load()) w->Stop(n);
        else if (n >= 1) std::_Exit(1);
      },
      [&] {
        reloader.Reload(load, [&](const config::WorkerConfig& next) {
          if (auto* w = running.load()) w->Reload(next);
        });
      });
  auto w = worker::Worker::Create(*cfg);
  if (!w.ok()) {
    spdlog::error("cannot start: {}", w.status().message());
    return 1;
  }
  running = w->get();
  if (stops > 0) (*w)->Stop(stops);
  int rc = (*w)->Run();
  running = nullptr;
  return rc;
}
