#pragma once
// Prometheus metrics: counters, gauges and histograms in a Registry, served
// as Prometheus' text format on /metrics (server.h). The daemons' composition
// roots build one Registry and hand each service the handles it uses; the
// handles are cheap copies, thread-safe, and do nothing when default-built
// (a service made without metrics, as tests do). prometheus-cpp stays behind
// this header.
//
// Names follow Prometheus' conventions: a kiln_ prefix, base units
// (_seconds, _bytes), _total for counters. Label values must come from
// bounded sets (outcomes, methods, admin-created project and cluster names):
// never a job id, path or token.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kiln::metrics {

using Labels = std::map<std::string, std::string>;

class Counter {
 public:
  Counter() = default;
  void Inc(double v = 1) const;

 private:
  friend class CounterFamily;
  explicit Counter(void* m) : m_(m) {}
  void* m_ = nullptr;  // prometheus::Counter, owned by its family
};

class Gauge {
 public:
  Gauge() = default;
  void Set(double v) const;
  void Inc(double v = 1) const;
  void Dec(double v = 1) const;

 private:
  friend class GaugeFamily;
  explicit Gauge(void* m) : m_(m) {}
  void* m_ = nullptr;
};

class Histogram {
 public:
  Histogram() = default;
  void Observe(double v) const;

 private:
  friend class HistogramFamily;
  explicit Histogram(void* m) : m_(m) {}
  void* m_ = nullptr;
};

// One metric name; With(labels) is its series for those labels, made on
// first use. A default-built family hands out handles that do nothing.
class CounterFamily {
 public:
  CounterFamily() = default;
  Counter With(const Labels& labels = {}) const;

 private:
  friend class Registry;
  explicit CounterFamily(void* f) : f_(f) {}
  void* f_ = nullptr;
};

class GaugeFamily {
 public:
  GaugeFamily() = default;
  Gauge With(const Labels& labels = {}) const;
  // Drops the series of these labels (a project or cluster that is gone).
  void Remove(const Labels& labels) const;

 private:
  friend class Registry;
  explicit GaugeFamily(void* f) : f_(f) {}
  void* f_ = nullptr;
};

class HistogramFamily {
 public:
  HistogramFamily() = default;
  Histogram With(const Labels& labels = {}) const;

 private:
  friend class Registry;
  HistogramFamily(void* f, std::shared_ptr<const std::vector<double>> buckets)
      : f_(f), buckets_(std::move(buckets)) {}
  void* f_ = nullptr;
  std::shared_ptr<const std::vector<double>> buckets_;
};

// Bucket bounds in seconds for durations from milliseconds to an hour.
std::vector<double> SecondsBuckets();

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers a family (the same name again returns the same family). A
  // name that is not a valid metric name is a programming error (abort).
  CounterFamily Counters(const std::string& name, const std::string& help);
  GaugeFamily Gauges(const std::string& name, const std::string& help);
  HistogramFamily Histograms(const std::string& name, const std::string& help, std::vector<double> buckets);

  // Runs before each scrape of this registry: for cheap in-memory reads
  // (pool sizes, busy slots). Never a database round trip.
  void OnScrape(std::function<void()> fn);
  // The registry is in a scrape only while `when` returns true (e.g. the
  // gauges only the farm's leader exports); always, by default.
  void ExportWhen(std::function<bool()> when);

  // The text exposition of this registry (what /metrics serves of it).
  std::string Text() const;

  struct Impl;
  const std::shared_ptr<Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace kiln::metrics
