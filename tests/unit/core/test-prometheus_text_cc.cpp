// Prometheus text exposition (core/prometheus_text.hpp): headers, escaping, histograms.
#include "core/prometheus_text.hpp"

#include <gtest/gtest.h>

namespace mtasts::prometheus {
namespace {

TEST(PrometheusText, HeaderAndSamples) {
  std::string out;
  append_header(out, "mtastsd_lookups_total", "counter", "Lookups by answer.\nSecond \\ line");
  append_sample(out, "mtastsd_lookups_total", {{"answer", "enforce"}}, std::uint64_t{3});
  append_sample(out, "mtastsd_lookups_total", {{"answer", "a\"b\\c\nd"}, {"x", "y"}},
                std::uint64_t{0});
  append_sample(out, "mtastsd_up", {}, 1.5);
  EXPECT_EQ(out,
            "# HELP mtastsd_lookups_total Lookups by answer.\\nSecond \\\\ line\n"
            "# TYPE mtastsd_lookups_total counter\n"
            "mtastsd_lookups_total{answer=\"enforce\"} 3\n"
            "mtastsd_lookups_total{answer=\"a\\\"b\\\\c\\nd\",x=\"y\"} 0\n"
            "mtastsd_up 1.5\n");
}

TEST(PrometheusText, HistogramBucketsAreCumulativeAndInclusive) {
  Histogram histogram({0.01, 0.001, 0.1});  // sorted on construction
  for (double v : {0.0005, 0.001, 0.002, 0.05, 3.0}) histogram.observe(v);
  std::string out;
  histogram.append(out, "lat_seconds", "Latency.");
  EXPECT_EQ(out,
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{le=\"0.001\"} 2\n"
            "lat_seconds_bucket{le=\"0.01\"} 3\n"
            "lat_seconds_bucket{le=\"0.1\"} 4\n"
            "lat_seconds_bucket{le=\"+Inf\"} 5\n"
            "lat_seconds_sum 3.0535\n"
            "lat_seconds_count 5\n");
  EXPECT_EQ(histogram.count(), 5u);
}

}  // namespace
}  // namespace mtasts::prometheus
