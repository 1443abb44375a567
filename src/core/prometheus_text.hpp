// The Prometheus text exposition format (version 0.0.4), as far as mtastsd's metrics need it:
// HELP/TYPE headers, samples with labels, and a histogram with fixed buckets. Pure formatting.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace mtasts::prometheus {

inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

struct Label {
  std::string_view name;
  std::string_view value;
};

// "# HELP name help\n# TYPE name type\n"; help text escaped (backslash, newline).
void append_header(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help);

// "name{a="x",b="y"} value\n"; label values escaped (backslash, quote, newline).
void append_sample(std::string& out, std::string_view name, std::initializer_list<Label> labels,
                   double value);
void append_sample(std::string& out, std::string_view name, std::initializer_list<Label> labels,
                   std::uint64_t value);

// A histogram with fixed upper bounds (seconds, ascending); +Inf is implicit.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // The whole family: header, cumulative name_bucket{le=...} lines, name_sum and name_count.
  void append(std::string& out, std::string_view name, std::string_view help) const;
  [[nodiscard]] std::uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;  // per bucket, not cumulative; one more for +Inf
  double sum_ = 0;
  std::uint64_t count_ = 0;
};

}  // namespace mtasts::prometheus
