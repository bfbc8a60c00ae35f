// kiln-controller: parse flags, load and validate config, compose, run.

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include <pwd.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <vector>

#include "auth/secrets.h"
#include "auth/trust_store.h"
#include "auth/x509.h"
#include "common/log.h"
#include "common/util.h"
#include "common/signals.h"
#include "common/version.h"
#include "config/config.h"
#include "config/reload.h"
#include "controller/controller.h"
#include "db/migrate.h"
#include "queue/open_pool.h"

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
  // The daemon's options also after a subcommand (kiln-controller migrate
  // --database-url URL): subcommands made from here on inherit this.
  app.fallthrough();
  auto* migrate = app.add_subcommand("migrate", "Apply pending schema migrations and exit");

  // Trust, on the controller's host (the bootstrap: no token exists yet).
  auto* certs = app.add_subcommand("certs", "The farm's TLS certificates");
  certs->require_subcommand(1);
  auto* certs_init = certs->add_subcommand(
      "init", "Create the farm's CA and this controller's server certificate in tls_dir (see docs/operations.md)");
  std::string certs_dir;
  std::vector<std::string> hosts;
  bool force = false;
  certs_init->add_option("--dir", certs_dir, "Directory to create them in (default: tls_dir of the config)");
  certs_init->add_option("--host", hosts,
                         "A name or address clients use to reach this controller (repeatable; localhost, 127.0.0.1, "
                         "::1 and this host's name are always included)");
  certs_init->add_flag("--force", force, "Replace an existing CA (every enrolled worker must enrol again)");
  auto* certs_server = certs->add_subcommand(
      "server", "Issue a new server certificate (server.key, server.crt) from the CA in the directory (ca.key, "
                "ca.crt): for another controller, new host names, or after a CA rotation");
  certs_server->add_option("--dir", certs_dir, "Directory holding ca.key and ca.crt (default: tls_dir of the config)");
  certs_server->add_option("--host", hosts, "A name or address clients use to reach the controller (repeatable)");
  auto* tokens = app.add_subcommand("tokens", "API tokens, made directly in the database (the first admin token)");
  tokens->require_subcommand(1);
  auto* tokens_create = tokens->add_subcommand("create", "Create an API token and print it (shown once)");
  std::string role = "admin", expires, out_file, description;
  std::vector<std::string> projects;
  tokens_create->add_option("--role", role, "read, submit or admin (default admin)");
  tokens_create->add_option("--project", projects, "Project a read or submit token may act on (repeatable)");
  tokens_create->add_option("--expires", expires, "Lifetime, e.g. 30d, 12h (default: never)");
  tokens_create->add_option("--description", description, "What the token is for");
  tokens_create->add_option("--out", out_file, "Write the token to this file (mode 0600) instead of printing it");
  auto* join = app.add_subcommand("join-token", "Create a single-use join token for a new worker and print it");
  std::string join_expires = "1h", join_out;
  join->add_option("--expires", join_expires, "Lifetime (default 1h)");
  join->add_option("--out", join_out, "Write the token to this file (mode 0600) instead of printing it");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  // Defaults, the file, the environment, then the command line: at start
  // and again on SIGHUP.
  auto load = [&]() -> Result<config::ControllerConfig> {
    auto c = config::LoadController(config_file);
    if (!c.ok()) return c;
    if (!listen.empty()) c->listen = listen;
    if (!database_url.empty()) c->database_url = database_url;
    if (!address_file.empty()) c->address_file = address_file;
    if (!log_level.empty()) c->log_level = log_level;
    if (!cas_dir.empty()) c->cas_dir = cas_dir;
    if (no_migrate) c->migrate_on_start = false;
    for (const auto& kv : sets) KILN_RETURN_IF_ERROR(config::ApplySetting(*c, kv));
    return c;
  };
  auto cfg = load();
  if (!cfg.ok()) {
    std::cerr << "kiln-controller: " << cfg.status().message() << "\n";
    return 2;
  }
  if (*certs_server) {
    std::string dir = certs_dir.empty() ? cfg->tls_dir : certs_dir;
    auto key = auth::ReadFile(dir + "/ca.key");
    auto crt = auth::ReadFile(dir + "/ca.crt");
    if (!key.ok() || !crt.ok()) {
      std::cerr << "kiln-controller: " << (key.ok() ? crt : key).status().message()
                << " (the CA's key and certificate are needed to issue a server certificate)\n";
      return 1;
    }
    std::vector<std::string> all{"localhost", "127.0.0.1", "::1"};
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) == 0 && host[0] != '\0') all.emplace_back(host);
    all.insert(all.end(), hosts.begin(), hosts.end());
    auto pair = auth::IssueServerCert({*key, *crt}, all, 825);
    Status st = pair.ok() ? auth::WriteSecretFile(dir + "/server.key", pair->key_pem, 0600) : pair.status();
    if (st.ok()) st = auth::WriteSecretFile(dir + "/server.crt", pair->cert_pem, 0644);
    if (!st.ok()) {
      std::cerr << "kiln-controller: " << st.message() << "\n";
      return 1;
    }
    std::cout << "issued " << dir << "/server.crt (and server.key) for";
    for (const auto& h : all) std::cout << " " << h;
    std::cout << "; a running controller picks them up within a minute\n";
    return 0;
  }

  if (*certs_init) {
    auth::FarmCaOptions o;
    o.hosts = hosts;
    o.force = force;
    std::string dir = certs_dir.empty() ? cfg->tls_dir : certs_dir;
    auto ca = auth::InitFarmCertDir(dir, o);
    if (!ca.ok()) {
      // A farm made before secrets existed: its CA stays, the key is added.
      if (ca.status().code() == Code::kAlreadyExists) {
        auto made = auth::EnsureSecretKey(dir + "/secrets.key");
        if (made.ok() && *made) std::cout << "created " << dir << "/secrets.key (0600): copy it to every controller\n";
      }
      std::cerr << "kiln-controller: " << ca.status().message() << "\n";
      return 1;
    }
    std::cout << "created the farm's CA and server certificate in " << dir << "\n"
              << "  ca.key      the CA's private key: keep it secret, on the controllers that enrol workers only\n"
              << "  ca.crt      give it to workers (ca_file) and clients (KILN_CA)\n"
              << "  server.key  this controller's key (0600)\n"
              << "  secrets.key seals jobs' secret env in the database: every controller needs the same one (0600)\n"
              << "  server.crt  valid for: localhost, 127.0.0.1, ::1, this host";
    for (const auto& h : hosts) std::cout << ", " << h;
    std::cout << "\n";
    return 0;
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

  if (*tokens_create || *join) {
    if (cfg->migrate_on_start) {
      if (auto m = db::Migrate(cfg->database_url); !m.ok()) {
        std::cerr << "kiln-controller: " << m.status().message() << "\n";
        return 1;
      }
    }
    auto pool = queue::OpenPool(cfg->database_url, 1);
    if (!pool.ok()) {
      std::cerr << "kiln-controller: " << pool.status().message() << "\n";
      return 1;
    }
    auth::TrustStore store(**pool);
    // The audit trail names the operator on this host.
    const passwd* pw = getpwuid(geteuid());
    const audit::Who local{"local " + (pw != nullptr ? std::string(pw->pw_name) : "uid " + std::to_string(geteuid())),
                           "local"};
    Result<std::string> text = std::string();
    std::string out = *join ? join_out : out_file;
    if (*join) {
      auto ttl = ParseDuration(join_expires);
      if (!ttl.ok()) {
        std::cerr << "kiln-controller: --expires: " << ttl.status().message() << "\n";
        return 2;
      }
      text = store.CreateJoinToken("kiln-controller join-token (local)", ttl->count(), local);
    } else {
      auth::NewApiToken t;
      auto r = auth::ParseRole(role);
      if (!r.ok()) {
        std::cerr << "kiln-controller: " << r.status().message() << "\n";
        return 2;
      }
      t.role = *r;
      t.projects = projects;
      t.description = description;
      t.created_by = "kiln-controller tokens create (local)";
      if (!expires.empty()) {
        auto ttl = ParseDuration(expires);
        if (!ttl.ok()) {
          std::cerr << "kiln-controller: --expires: " << ttl.status().message() << "\n";
          return 2;
        }
        t.ttl_ms = ttl->count();
      }
      text = store.CreateToken(t, local);
    }
    if (!text.ok()) {
      std::cerr << "kiln-controller: " << text.status().message() << "\n";
      return 1;
    }
    if (out.empty()) {
      std::cout << *text << "\n";
    } else if (Status st = auth::WriteSecretFile(out, *text + "\n", 0600); !st.ok()) {
      std::cerr << "kiln-controller: " << st.message() << "\n";
      return 1;
    }
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

  config::Reloader<config::ControllerConfig> reloader(config_file, config::ControllerReloadable);
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
      [&] {
        reloader.Reload(load, [&](const config::ControllerConfig& next) {
          if (auto* c = running.load()) c->Reload(next);
        });
      });

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
