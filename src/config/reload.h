#pragma once
// SIGHUP: a daemon reads its configuration again (docs/operations.md,
// "Reload"). A file that does not load or validate keeps the old settings;
// a good one applies the reloadable settings and warns about changed ones
// that need a restart.

#include <spdlog/spdlog.h>

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"

namespace kiln::config {

template <class C>
class Reloader {
 public:
  // file: the daemon's --config ("" : none, nothing to read again).
  // reloadable: ControllerReloadable or WorkerReloadable.
  Reloader(std::string file, bool (*reloadable)(const std::string&)) : file_(std::move(file)), reloadable_(reloadable) {
    if (auto kv = Contents(); kv.ok()) seen_ = *kv;
  }

  // Loads the configuration again with `load` (defaults, file, environment,
  // command line, as at start) and validates it. Failure: logs
  // "configuration not reloaded" with the error, changes nothing. Else
  // calls apply(new configuration) and logs what changed.
  void Reload(const std::function<Result<C>()>& load, const std::function<void(const C&)>& apply) {
    std::lock_guard g(mu_);
    auto next = load();
    Status s = next.ok() ? Validate(*next) : next.status();
    if (s.ok() && spdlog::level::from_str(next->log_level) == spdlog::level::off && next->log_level != "off")
      s = InvalidArgument("log_level: unknown level \"" + next->log_level + "\"");
    auto kv = Contents();
    if (s.ok() && !kv.ok()) s = kv.status();  // changed since load() read it
    if (!s.ok()) {
      spdlog::error("configuration not reloaded file={} error=\"{}\"; the running settings are kept", file_,
                    s.message());
      return;
    }
    std::string applied, restart;
    for (const auto& k : ChangedKeys(seen_, *kv)) {
      std::string& list = reloadable_(k) ? applied : restart;
      list += (list.empty() ? "" : ",") + k;
    }
    apply(*next);
    seen_ = *kv;
    spdlog::info("configuration reloaded file={} changed={}", file_, applied.empty() ? "none" : applied);
    if (!restart.empty())
      spdlog::warn("configuration file={} changed settings that need a restart: {}; their running values are kept",
                   file_, restart);
  }

 private:
  Result<std::map<std::string, std::string>> Contents() {
    if (file_.empty()) return std::map<std::string, std::string>{};
    return ReadKeyValueFile(file_);
  }

  std::mutex mu_;
  std::string file_;
  bool (*reloadable_)(const std::string&);
  std::map<std::string, std::string> seen_;  // the file's settings as last applied
};

}  // namespace kiln::config
