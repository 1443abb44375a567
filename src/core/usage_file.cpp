#include "core/usage_file.hpp"

#include <charconv>

#include <fmt/format.h>

#include "core/domain.hpp"
#include "core/text_quote.hpp"

namespace mtasts {
namespace {

constexpr UnixTime kMaxTime = 253402300799;  // 9999-12-31T23:59:59Z
constexpr std::size_t kMaxProblems = 5;

bool parse_time(std::string_view text, UnixTime& out) {
  if (text.empty() || text.size() > 12) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && out >= 0 && out <= kMaxTime;
}

// Splits at single spaces into exactly `n` fields.
bool split_fields(std::string_view line, std::string_view (&fields)[3]) {
  std::size_t start = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    const std::size_t space = line.find(' ', start);
    if ((space == std::string_view::npos) != (i == 2)) return false;
    fields[i] = line.substr(start, space == std::string_view::npos ? line.npos : space - start);
    start = space + 1;
  }
  return true;
}

}  // namespace

ParsedUsage parse_usage_file(std::string_view text) {
  ParsedUsage parsed;
  auto problem = [&](std::size_t number, std::string_view line, std::string_view why) {
    if (parsed.problems.size() < kMaxProblems) {
      parsed.problems.push_back(fmt::format("line {}: {}: {}", number, why, quote_input(line)));
    }
  };
  std::size_t number = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find('\n', start);
    const std::string_view line =
        text.substr(start, end == std::string_view::npos ? text.npos : end - start);
    start = end == std::string_view::npos ? text.size() : end + 1;
    ++number;
    if (number == 1) {
      if (line != kUsageFileHeader) {
        problem(number, line, fmt::format("expected the header \"{}\"", kUsageFileHeader));
        return parsed;
      }
      continue;
    }
    if (line.empty()) continue;
    std::string_view fields[3];
    UsageRecord record;
    if (!split_fields(line, fields)) {
      problem(number, line, "expected \"<domain> <last_used> <own_check>\"");
      continue;
    }
    const auto domain = check_ldh_hostname(fields[0]);
    if (!domain || *domain != fields[0]) {
      problem(number, line, "not a lower-case hostname");
      continue;
    }
    if (!parse_time(fields[1], record.last_used) || !parse_time(fields[2], record.own_check)) {
      problem(number, line, "times must be Unix seconds");
      continue;
    }
    parsed.records.insert_or_assign(*domain, record);
  }
  if (number == 0) problem(1, "", "empty file");
  return parsed;
}

std::string format_usage_file(const std::map<std::string, UsageRecord>& records) {
  std::string out;
  out.reserve(32 + records.size() * 48);
  out.append(kUsageFileHeader).append(1, '\n');
  for (const auto& [domain, record] : records) {
    fmt::format_to(std::back_inserter(out), "{} {} {}\n", domain, record.last_used,
                   record.own_check);
  }
  return out;
}

}  // namespace mtasts
