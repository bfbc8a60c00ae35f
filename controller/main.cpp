// kiln-controller: parse flags, load and validate config, compose, run.

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <iostream>
#include <vector>

#include "common/log.h"
#include "common/signals.h"
#include "common/version.h"
#include "config/config.h"
#include "controller/controller.h"
#include "db/migrate.h"

int main(int argc, char** argv) {
  using namespace kiln;
  CLI::App app{"kiln-controller: queues builds in PostgreSQL and dispatches them to kiln-worker daemons"};
  app.set_version_flag("--version", std::string("kiln-controller ") + kVersion);
  std::string config_file, listen, database_url, address_file, log_level, cas_dir;
  std::vector<std::string> sets;
  bool check_config = false, no_migrate = false;
  app.add_option("--config", config_file, "Config file (key = value lines; see deploy/controller.conf.example)");
  app.add_option("--listen", listen, "Address to serve gRPC on (default 127.0.0.1:7070; port 0 picks one)");
  app.add_option("--database-url", database_url, "PostgreSQL connection string (else KILN_DATABASE_URL)");
  app.add_option("--address-file", address_file, "Write the bound address to this file once serving");
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error");
  app.add_option("--cas-dir", cas_dir, "Directory of the content-addressed store (default /var/lib/kiln-controller/cas)");
  app.add_option("--set", sets, "Override one config setting, KEY=VALUE (repeatable), e.g. --set cas_max_bytes=50GiB");
  app.add_flag("--no-migrate", no_migrate, "Do not apply schema migrations on start (fail if the schema is old)");
  app.add_flag("--check-config", check_config, "Validate the configuration and exit");
  auto* migrate = app.add_subcommand("migrate", "Apply pending schema migrations and exit");
  migrate->fallthrough();  // kiln-controller migrate --database-url URL

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  auto cfg = config::LoadController(config_file);
  if (!cfg.ok()) {
    std::cerr << "kiln-controller: " << cfg.status().message() << "\n";
    return 2;
  }
  if (!listen.empty()) cfg->listen = listen;
  if (!database_url.empty()) cfg->database_url = database_url;
  if (!address_file.empty()) cfg->address_file = address_file;
  if (!log_level.empty()) cfg->log_level = log_level;
  if (!cas_dir.empty()) cfg->cas_dir = cas_dir;
  if (no_migrate) cfg->migrate_on_start = false;
  for (const auto& kv : sets) {
    if (Status s = config::ApplySetting(*cfg, kv); !s.ok()) {
      std::cerr << "kiln-controller: " << s.message() << "\n";
      return 2;
    }
  }
  if (Status s = config::Validate(*cfg); !s.ok()) {
    std::cerr << "kiln-controller: invalid configuration: " << s.message() << "\n";
    return 2;
  }
  if (!InitLogging("kiln-controller", cfg->log_level)) {
    std::cerr << "kiln-controller: unknown log level \"" << cfg->log_level << "\"\n";
    return 2;
  }
  if (check_config) {
    std::cout << "configuration ok\n";
    return 0;
  }

  if (*migrate) {
    auto r = db::Migrate(cfg->database_url);
    if (!r.ok()) {
      std::cerr << "kiln-controller: " << r.status().message() << "\n";
      return 1;
    }
    if (r->applied.empty()) std::cout << "schema is up to date (version " << r->current_version << ")\n";
    for (const auto& m : r->applied) std::cout << "applied " << m << "\n";
    return 0;
  }

  std::atomic<controller::Controller*> running{nullptr};
  std::atomic<bool> stop_requested{false};
  HandleSignals(
      [&running, &stop_requested](int n) {
        stop_requested = true;
        if (n > 1) {
          spdlog::warn("second stop signal: exiting at once");
          std::_Exit(1);
        }
        if (auto* c = running.load()) c->Shutdown();
      },
      [] { spdlog::info("SIGHUP: nothing to reload (restart to apply config changes)"); });

  auto c = controller::Controller::Create(*cfg);
  if (!c.ok()) {
    spdlog::error("cannot start: {}", c.status().message());
    return 1;
  }
  running = c->get();
  if (stop_requested) return 0;  // stopped while starting
  (*c)->Run();
  running = nullptr;
  spdlog::info("stopped");
  return 0;
}
