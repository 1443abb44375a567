// The fleet's shared tier as the service sees it (design §8): before a lookup goes to the
// network, ask the shared cache; after it went, tell the shared cache. Between the two, one
// member of the fleet does the work for a domain: the others wait for its result (up to the
// lock's life) and take it from the shared cache. What a shared entry may change here is
// core/shared_entry.hpp's decision; a shared cache that is down, slow or full of garbage only
// costs this member the work it would have done alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <spdlog/logger.h>

#include "adapters/store/shared_cache.hpp"
#include "core/decide.hpp"
#include "core/log_limiter.hpp"
#include "service/asio.hpp"

namespace mtasts {

// What the shared tier says before a lookup.
struct FleetStep {
  std::optional<CacheEntry> adopted;      // answer from this (MTA-STS needs no network)
  std::optional<CachedPolicy> candidate;  // take this policy if our own TXT lookup shows its id
  bool candidate_is_fresh = false;        // it came from an entry still fresh (a recent check)
  std::optional<CacheEntry> local;        // the local entry, with a shared fetch backoff folded in
};

struct FleetStats {
  std::uint64_t adopted = 0;     // answers taken from the shared cache, no DNS, no fetch
  std::uint64_t confirmed = 0;   // shared policies taken after our own TXT lookup
  std::uint64_t refused = 0;     // shared entries that would have weakened a policy held here
  std::uint64_t invalid = 0;     // shared values that failed validation
  std::uint64_t lock_waits = 0;  // lookups that waited for another member's result
  std::uint64_t went_alone = 0;  // lookups that went to the network without the shared tier
  std::uint64_t published = 0;   // entries written after our own lookup
};

class FleetTier {
 public:
  using Clock = std::function<UnixTime()>;
  FleetTier(asio::any_io_executor executor, store::SharedCache& shared, Timing timing, Clock clock,
            std::shared_ptr<spdlog::logger> logger);

  // `local` is what this member holds for the normalized `domain` (std::nullopt: nothing);
  // `force` for a refresh. Never fails: with the shared cache unusable, the step says "alone".
  asio::awaitable<FleetStep> before_network(std::string domain, std::optional<CacheEntry> local,
                                            bool force);
  // After this member's own lookup stored `entry`: share it (and release the domain's lock).
  // Not shared when our TXT lookup disagrees with a recent check another member shared (a
  // resolver's cache at the TTL's edge can still give the old id): that entry stays for the
  // others to confirm, rather than flip back and forth.
  void after_network(const std::string& domain, const CacheEntry& entry, const FleetStep& step);
  // Our own TXT lookup showed the id of a shared candidate, taken without a fetch.
  void confirmed() { ++stats_.confirmed; }

  [[nodiscard]] const FleetStats& stats() const { return stats_; }
  [[nodiscard]] store::SharedCacheStats shared_stats() const { return shared_.stats(); }

 private:
  enum class Verdict { use, keep_looking };
  // Looks at one read: sets step.adopted / step.candidate (use) or folds its backoff in.
  Verdict consider(const std::string& domain, const store::SharedRead& read, bool force,
                   FleetStep& step);

  // Counts (and logs, at a bounded rate) a lookup that goes on without the shared cache.
  void alone(const std::string& domain, const std::string& why);

  asio::any_io_executor executor_;
  store::SharedCache& shared_;
  Timing timing_;
  Clock clock_;
  std::shared_ptr<spdlog::logger> logger_;
  LogLimiter invalid_log_{5, std::chrono::minutes(1)};
  LogLimiter alone_log_{5, std::chrono::minutes(1)};
  FleetStats stats_;
};

}  // namespace mtasts
