#pragma once
// A real Prometheus for tests (Debian's prometheus package, installed by
// deploy/install-deps.sh): started on loopback with a scrape config of the
// test's own, queried over its HTTP API. Also fetches a /metrics page and
// runs promtool.

#include <httplib.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "harness/harness.h"

namespace kiln::test {

constexpr const char* kPrometheus = "/usr/bin/prometheus";
constexpr const char* kPromtool = "/usr/bin/promtool";

// Why Prometheus cannot be used here ("" if it can).
inline std::string PrometheusMissing() {
  for (const char* b : {kPrometheus, kPromtool}) {
    if (::access(b, X_OK) != 0) return std::string(b) + " not found: run deploy/install-deps.sh (Debian's prometheus)";
  }

// In a test body: skips the test where Prometheus is missing, unless
// KILN_REQUIRE_PROMETHEUS is set (tests/run.sh, which installs it): then
// the test fails, so a broken install cannot pass as a skip.
#define KILN_NEED_PROMETHEUS()                                              \
  if (auto why_missing = ::kiln::test::PrometheusMissing(); !why_missing.empty()) { \
    if (::getenv("KILN_REQUIRE_PROMETHEUS") != nullptr) FAIL() << why_missing; \
    GTEST_SKIP() << why_missing;                                            \
  }
  return "";
}

// GET http://host:port/path; the body, or "" (with a test failure) on error.
inline std::string HttpGet(const std::string& host_port, const std::string& path) {
  auto colon = host_port.rfind(':');
  httplib::Client c(host_port.substr(0, colon), std::stoi(host_port.substr(colon + 1)));
  c.set_connection_timeout(5);
  c.set_read_timeout(10);
  auto r = c.Get(path.c_str());
  if (!r || r->status != 200) {
    ADD_FAILURE() << "GET http://" << host_port << path << " failed: "
                  << (r ? std::to_string(r->status) : httplib::to_string(r.error()));
    return "";
  }
  return r->body;
}

// A daemon's /metrics (Prometheus' text format) as a map of series
// ("name{labels}") to values.
inline std::map<std::string, double> ScrapeSeries(const std::string& host_port) {
  std::map<std::string, double> out;
  const std::string text = HttpGet(host_port, "/metrics");
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    auto sp = line.rfind(' ');
    if (line.empty() || line[0] == '#' || sp == std::string::npos) continue;
    out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return out;
}

// The sum of the series of `name` whose labels include `label` (e.g.
// project="web"; "" for all).
inline double SumSeries(const std::map<std::string, double>& m, const std::string& name, const std::string& label) {
  double v = 0;
  for (auto it = m.lower_bound(name + "{"); it != m.end() && it->first.rfind(name + "{", 0) == 0; ++it)
    if (it->first.find(label) != std::string::npos) v += it->second;
  return v;
}

// promtool check metrics on a scrape: its exit code (0 clean) and output.
inline CommandResult CheckMetrics(const std::string& dir, const std::string& scrape) {
  WriteFile(dir + "/scrape.txt", scrape);
  return RunCommand({"/bin/sh", "-c", std::string(kPromtool) + " check metrics < " + dir + "/scrape.txt"},
                    std::chrono::seconds(30));
}

class Prometheus {
 public:
  // Scrapes `jobs` (job name -> host:port targets) every 500 ms. Ports are
  // picked the way the harness picks PostgreSQL's: a pseudo-random one,
  // another if that one is taken (Prometheus cannot bind port 0).
  Prometheus(const std::string& dir, const std::map<std::string, std::vector<std::string>>& jobs) {
    std::string conf = "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\nscrape_configs:\n";
    for (const auto& [job, targets] : jobs) {
      conf += "  - job_name: " + job + "\n    static_configs:\n      - targets: [";
      for (size_t i = 0; i < targets.size(); ++i) conf += (i ? ", '" : "'") + targets[i] + "'";
      conf += "]\n";
    }
    WriteFile(dir + "/prometheus.yml", conf);
    for (int tries = 0; tries < 20 && !process_; ++tries) {
      int port = 20000 + static_cast<int>((getpid() * 11 + tries * 137 + time(nullptr)) % 30000);
      address_ = "127.0.0.1:" + std::to_string(port);
      log_ = dir + "/prometheus" + std::to_string(tries) + ".log";
      auto p = std::make_unique<Process>(
          std::vector<std::string>{kPrometheus, "--config.file=" + dir + "/prometheus.yml",
                                   "--web.listen-address=" + address_,
                                   "--storage.tsdb.path=" + dir + "/tsdb" + std::to_string(tries)},
          log_);
      bool ready = WaitFor(
          [&] {
            if (!p->Running()) return true;
            httplib::Client c("127.0.0.1", port);
            c.set_connection_timeout(1);
            auto r = c.Get("/-/ready");
            return r && r->status == 200;
          },
          std::chrono::seconds(30));
      if (ready && p->Running()) process_ = std::move(p);
    }
    if (!process_) ADD_FAILURE() << "prometheus did not start; see " << log_;
  }

  bool ok() const { return process_ != nullptr; }
  const std::string& log() const { return log_; }

  // The instant vector of `promql`: each sample's labels (as a JSON object
  // dump, or the value of `label` if given) -> value. Empty on error.
  std::map<std::string, double> Query(const std::string& promql, const std::string& label = "") {
    std::map<std::string, double> out;
    if (!process_) return out;
    httplib::Client c("127.0.0.1", std::stoi(address_.substr(address_.rfind(':') + 1)));
    c.set_read_timeout(10);
    auto r = c.Get("/api/v1/query", httplib::Params{{"query", promql}}, httplib::Headers{});
    if (!r || r->status != 200) return out;
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success") return out;
    for (const auto& s : j["data"]["result"]) {
      std::string key = label.empty() ? s["metric"].dump() : s["metric"].value(label, "");
      out[key] = std::stod(s["value"][1].get<std::string>());
    }
    return out;
  }

  // The value of a query that yields one sample (e.g. a sum), if it does.
  std::optional<double> Value(const std::string& promql) {
    auto v = Query(promql);
    if (v.size() != 1) return std::nullopt;
    return v.begin()->second;
  }

 private:
  std::string address_, log_;
  std::unique_ptr<Process> process_;
};

}  // namespace kiln::test
