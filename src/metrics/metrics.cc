#include "metrics/metrics.h"

#include <prometheus/check_names.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <mutex>

#include "metrics/registry_impl.h"

namespace kiln::metrics {

namespace p = prometheus;

void Counter::Inc(double v) const {
  if (m_) static_cast<p::Counter*>(m_)->Increment(v);
}
void Gauge::Set(double v) const {
  if (m_) static_cast<p::Gauge*>(m_)->Set(v);
}
void Gauge::Inc(double v) const {
  if (m_) static_cast<p::Gauge*>(m_)->Increment(v);
}
void Gauge::Dec(double v) const {
  if (m_) static_cast<p::Gauge*>(m_)->Decrement(v);
}
void Histogram::Observe(double v) const {
  if (m_) static_cast<p::Histogram*>(m_)->Observe(v);
}

// Family::Add returns the existing series for known labels; it is
// thread-safe (the family's own lock).
Counter CounterFamily::With(const Labels& labels) const {
  if (!f_) return {};
  return Counter(&static_cast<p::Family<p::Counter>*>(f_)->Add(labels));
}
Gauge GaugeFamily::With(const Labels& labels) const {
  if (!f_) return {};
  return Gauge(&static_cast<p::Family<p::Gauge>*>(f_)->Add(labels));
}
void GaugeFamily::Remove(const Labels& labels) const {
  if (!f_) return;
  auto* f = static_cast<p::Family<p::Gauge>*>(f_);
  if (f->Has(labels)) f->Remove(&f->Add(labels));
}
Histogram HistogramFamily::With(const Labels& labels) const {
  if (!f_) return {};
  return Histogram(&static_cast<p::Family<p::Histogram>*>(f_)->Add(labels, *buckets_));
}

std::vector<double> SecondsBuckets() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
}

std::vector<p::MetricFamily> Registry::Impl::Collect() const {
  {
    std::lock_guard g(mu);
    if (when && !when()) return {};
    for (const auto& fn : hooks) fn();
  }
  return registry->Collect();
}

Registry::Registry() : impl_(std::make_shared<Impl>()) {}
Registry::~Registry() = default;

namespace {
void CheckName(const std::string& name) {
  if (!p::CheckMetricName(name) || name.rfind("kiln_", 0) != 0) {
    spdlog::critical("metric name {} is not a valid kiln_ metric name", name);
    std::abort();
  }
}
}  // namespace

CounterFamily Registry::Counters(const std::string& name, const std::string& help) {
  CheckName(name);
  return CounterFamily(&p::BuildCounter().Name(name).Help(help).Register(*impl_->registry));
}

GaugeFamily Registry::Gauges(const std::string& name, const std::string& help) {
  CheckName(name);
  return GaugeFamily(&p::BuildGauge().Name(name).Help(help).Register(*impl_->registry));
}

HistogramFamily Registry::Histograms(const std::string& name, const std::string& help, std::vector<double> buckets) {
  CheckName(name);
  return HistogramFamily(&p::BuildHistogram().Name(name).Help(help).Register(*impl_->registry),
                         std::make_shared<const std::vector<double>>(std::move(buckets)));
}

void Registry::OnScrape(std::function<void()> fn) {
  std::lock_guard g(impl_->mu);
  impl_->hooks.push_back(std::move(fn));
}

void Registry::ExportWhen(std::function<bool()> when) {
  std::lock_guard g(impl_->mu);
  impl_->when = std::move(when);
}

std::string Registry::Text() const { return p::TextSerializer().Serialize(impl_->Collect()); }

}  // namespace kiln::metrics
