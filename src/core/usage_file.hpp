// The file in which mtastsd keeps, across restarts, when each cached domain was last needed
// ("<cache>-usage" beside the LMDB file): cache hits write nothing to the cache, so last use
// lives in the daemon's memory and is saved now and then. Text, one domain a line:
//
//   mtasts-usage 1
//   <domain> <last_used> <own_check>
//
// (Unix seconds; own_check is RefreshState::own_check). Pure: parsing and formatting only.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/decide.hpp"

namespace mtasts {

inline constexpr std::string_view kUsageFileHeader = "mtasts-usage 1";

struct UsageRecord {
  UnixTime last_used = 0;
  UnixTime own_check = 0;
  friend bool operator==(const UsageRecord&, const UsageRecord&) = default;
};

struct ParsedUsage {
  std::map<std::string, UsageRecord> records;
  std::vector<std::string> problems;  // lines skipped, for the admin's log (at most a few)
};

// Never fails: a wrong header yields nothing (and a problem line); malformed lines are skipped.
// Domains must be lower-case A-label hostnames; times 0 to 9999-12-31.
[[nodiscard]] ParsedUsage parse_usage_file(std::string_view text);

[[nodiscard]] std::string format_usage_file(const std::map<std::string, UsageRecord>& records);

}  // namespace mtasts
