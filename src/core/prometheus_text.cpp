#include "core/prometheus_text.hpp"

#include <algorithm>
#include <cmath>
#include <iterator>

#include <fmt/format.h>

namespace mtasts::prometheus {
namespace {

void append_escaped(std::string& out, std::string_view text, bool quotes) {
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

void append_name_and_labels(std::string& out, std::string_view name,
                            std::initializer_list<Label> labels) {
  out.append(name);
  if (labels.size() == 0) return;
  out += '{';
  bool first = true;
  for (const Label& label : labels) {
    if (!first) out += ',';
    first = false;
    out.append(label.name).append("=\"");
    append_escaped(out, label.value, true);
    out += '"';
  }
  out += '}';
}

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", value);
}

}  // namespace

void append_header(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
  out.append("# HELP ").append(name).append(1, ' ');
  append_escaped(out, help, false);
  out.append("\n# TYPE ").append(name).append(1, ' ').append(type).append(1, '\n');
}

void append_sample(std::string& out, std::string_view name, std::initializer_list<Label> labels,
                   double value) {
  append_name_and_labels(out, name, labels);
  out.append(1, ' ').append(format_value(value)).append(1, '\n');
}

void append_sample(std::string& out, std::string_view name, std::initializer_list<Label> labels,
                   std::uint64_t value) {
  append_name_and_labels(out, name, labels);
  fmt::format_to(std::back_inserter(out), " {}\n", value);
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  std::sort(bounds_.begin(), bounds_.end());
  bounds_.erase(std::unique(bounds_.begin(), bounds_.end()), bounds_.end());
  counts_.assign(bounds_.size() + 1, 0);
}

void Histogram::observe(double value) {
  // Buckets are "less than or equal to" their bound.
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  ++counts_[static_cast<std::size_t>(it - bounds_.begin())];
  sum_ += value;
  ++count_;
}

void Histogram::append(std::string& out, std::string_view name, std::string_view help) const {
  append_header(out, name, "histogram", help);
  const std::string bucket = fmt::format("{}_bucket", name);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = format_value(bounds_[i]);
    append_sample(out, bucket, {{"le", le}}, cumulative);
  }
  cumulative += counts_.back();
  append_sample(out, bucket, {{"le", "+Inf"}}, cumulative);
  append_sample(out, fmt::format("{}_sum", name), {}, sum_);
  append_sample(out, fmt::format("{}_count", name), {}, count_);
}

}  // namespace mtasts::prometheus
