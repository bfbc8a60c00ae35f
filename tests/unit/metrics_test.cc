// The metrics facade (src/metrics): what a scrape shows of counters, gauges
// and histograms, scrape hooks, a registry exported only while allowed, and
// handles that do nothing when default-built.

#include <gtest/gtest.h>
#include <httplib.h>

#include "metrics/metrics.h"
#include "metrics/server.h"

namespace kiln {
namespace {

TEST(Metrics, AScrapeShowsEachSeriesWithItsLabels) {
  metrics::Registry r;
  auto jobs = r.Counters("kiln_test_jobs_total", "Jobs.");
  jobs.With({{"project", "web"}, {"outcome", "failed"}}).Inc();
  jobs.With({{"project", "web"}, {"outcome", "failed"}}).Inc(2);
  auto h = r.Histograms("kiln_test_wait_seconds", "Waits.", {0.1, 1});
  h.With().Observe(0.5);
  std::string text = r.Text();
  EXPECT_NE(text.find("# TYPE kiln_test_jobs_total counter"), std::string::npos) << text;
  EXPECT_NE(text.find("kiln_test_jobs_total{outcome=\"failed\",project=\"web\"} 3"), std::string::npos) << text;
  EXPECT_NE(text.find("kiln_test_wait_seconds_bucket{le=\"0.1\"} 0"), std::string::npos) << text;
  EXPECT_NE(text.find("kiln_test_wait_seconds_bucket{le=\"1\"} 1"), std::string::npos) << text;
  EXPECT_NE(text.find("kiln_test_wait_seconds_count 1"), std::string::npos) << text;
}

TEST(Metrics, HooksRunBeforeEachScrapeAndExportWhenHidesTheRegistry) {
  metrics::Registry r;
  auto g = r.Gauges("kiln_test_busy", "Busy.").With();
  int busy = 3;
  r.OnScrape([&] { g.Set(busy); });
  EXPECT_NE(r.Text().find("kiln_test_busy 3"), std::string::npos);
  busy = 5;
  EXPECT_NE(r.Text().find("kiln_test_busy 5"), std::string::npos);
  bool leader = false;
  r.ExportWhen([&] { return leader; });
  EXPECT_EQ(r.Text(), "");
  leader = true;
  EXPECT_NE(r.Text().find("kiln_test_busy 5"), std::string::npos);
}

TEST(Metrics, RemovedGaugeSeriesLeaveTheScrape) {
  metrics::Registry r;
  auto slots = r.Gauges("kiln_test_slots", "Slots.");
  slots.With({{"cluster", "a"}}).Set(4);
  slots.With({{"cluster", "b"}}).Set(2);
  slots.Remove({{"cluster", "a"}});
  slots.Remove({{"cluster", "never"}});
  std::string text = r.Text();
  EXPECT_EQ(text.find("cluster=\"a\""), std::string::npos) << text;
  EXPECT_NE(text.find("kiln_test_slots{cluster=\"b\"} 2"), std::string::npos) << text;
}

TEST(Metrics, TheServerPicksAPortAndServesEveryRegistryOnSlashMetrics) {
  metrics::Registry a, b;
  a.Counters("kiln_test_a_total", "A.").With().Inc();
  b.Gauges("kiln_test_b", "B.").With().Set(7);
  auto server = metrics::Server::Start("127.0.0.1:0", {&a, &b});
  ASSERT_TRUE(server.ok()) << server.status().message();
  const std::string& addr = (*server)->address();
  ASSERT_EQ(addr.rfind("127.0.0.1:", 0), 0u) << addr;
  const int port = std::stoi(addr.substr(10));
  ASSERT_GT(port, 0) << addr;
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/metrics");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("kiln_test_a_total 1"), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("kiln_test_b 7"), std::string::npos) << r->body;

  auto again = metrics::Server::Start(addr, {&a});
  ASSERT_FALSE(again.ok()) << "the port is taken";
  EXPECT_EQ(again.status().code(), Code::kUnavailable);
  EXPECT_NE(again.status().message().find("cannot serve metrics on " + addr), std::string::npos)
      << again.status().message();
}

TEST(Metrics, DefaultBuiltHandlesDoNothing) {
  metrics::CounterFamily f;
  f.With({{"a", "b"}}).Inc();
  metrics::HistogramFamily h;
  h.With().Observe(1);
  metrics::Gauge g;
  g.Set(1);
  metrics::GaugeFamily gf;
  gf.Remove({});
  SUCCEED() << "no crash: services built without metrics count nothing";
}

}  // namespace
}  // namespace kiln
