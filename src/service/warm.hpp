// `mtasts warm`: looks up a list of domains so the cache holds their answers before mail needs
// them, a bounded number at once. Through mtastsd when it answers on its Exim socket (its single
// flight and backoff then apply, and its cache is the one filled); directly otherwise.
#pragma once

#include <chrono>
#include <cstddef>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "core/decide.hpp"
#include "core/error.hpp"
#include "service/config.hpp"
#include "service/wiring.hpp"

namespace mtasts {

enum class WarmOutcome {
  policy,     // a policy applies (any mode)
  no_policy,  // the domain publishes no MTA-STS: remembered as such
  failed,     // could not be had now (DNS, fetch, deadline, daemon): the reason says why
};

struct WarmResult {
  std::string domain;
  WarmOutcome outcome = WarmOutcome::failed;
  std::string reason;  // for failed
};

struct WarmProgress {
  std::size_t total = 0;
  std::size_t done = 0;
  std::size_t policy = 0;
  std::size_t no_policy = 0;
  std::size_t failed = 0;
};
// Called on the caller's thread after each domain and at least every WarmOptions::tick.
using WarmProgressFn = std::function<void(const WarmProgress&)>;

struct WarmOptions {
  std::size_t concurrency = 8;  // lookups (or daemon requests) at once; at least 1
  bool through_daemon = true;   // false: always directly
  std::chrono::milliseconds tick{250};
};

struct WarmReport {
  std::vector<WarmResult> results;  // in the order of the domains given
  bool through_daemon = false;
  std::string how;  // one line for the admin: which way, and why not through the daemon
};

// Warms `domains` (normalized, no duplicates needed). Errors: store (the cache cannot be
// opened), config.
[[nodiscard]] std::expected<WarmReport, Error> warm_cache(const Config& config,
                                                          std::shared_ptr<spdlog::logger> logger,
                                                          const std::vector<std::string>& domains,
                                                          const WarmOptions& options,
                                                          const WarmProgressFn& progress,
                                                          Wiring& wiring = system_wiring());

// How an answer counts: `finished` false when the lookup outlasted its deadline.
[[nodiscard]] WarmResult warm_result(std::string domain, const Answer& answer,
                                     const std::optional<CacheEntry>& entry, bool finished);

}  // namespace mtasts
