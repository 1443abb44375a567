// PolicyService: lookup -> cache -> (single-flight) DNS + fetch -> store (design §3).
// Owns concurrency: one lookup in flight per domain however many callers ask.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <spdlog/logger.h>

#include "adapters/asio.hpp"
#include "adapters/dns/resolver.hpp"
#include "adapters/https/policy_fetcher.hpp"
#include "adapters/store/policy_store.hpp"
#include "adapters/store/shared_cache.hpp"
#include "core/decide.hpp"
#include "service/fleet_tier.hpp"

namespace mtasts {

enum class AnswerSource {
  cache,    // the local cache, no network
  network,  // this process looked at DNS (and fetched when needed)
  shared,   // the fleet's shared cache (mtastsd with shared_cache): no DNS, no fetch
};

[[nodiscard]] std::string_view to_string(AnswerSource source);

struct LookupResult {
  std::string domain;  // normalized
  Answer answer;
  std::optional<CacheEntry> entry;  // what is stored now (absent if the store failed)
  AnswerSource source = AnswerSource::cache;
};

struct ServiceOptions {
  Timing timing;
  bool strict = false;
  std::chrono::milliseconds lookup_timeout{15000};
  // DANE discovery (core/dane.hpp) before MTA-STS; only meaningful with a validating resolver.
  bool dane = false;
  std::vector<std::string> dane_required;  // normalized domains with mandatory DANE
  DaneTiming dane_timing;
};

// Whether the entry's DANE state may answer by itself at `now`: DANE is off and the entry holds
// no DANE state (one left from when DANE was on is dropped by the next lookup), or the state is
// unexpired and was made under the same mandatory-DANE setting.
[[nodiscard]] bool dane_is_fresh(const std::optional<CacheEntry>& cached, UnixTime now,
                                 const ServiceOptions& options, std::string_view domain);

using Clock = std::function<UnixTime()>;
// Hears how each policy fetch ended: "ok", or an ErrorCategory name (policy_syntax for a body
// that is not a valid policy).
using FetchListener = std::function<void(std::string_view outcome)>;

// The DANE state to answer with when a lookup did not finish: the cached one while it is fresh,
// otherwise failed (a DANE check that could not be made is never "no DANE"); none when DANE is
// off.
[[nodiscard]] std::optional<DaneState> dane_fallback(const CacheEntry& entry, UnixTime now,
                                                     const ServiceOptions& options,
                                                     std::string_view domain,
                                                     std::string_view failure);

class PolicyService {
 public:
  PolicyService(asio::any_io_executor executor, store::PolicyStore& store, dns::Resolver& resolver,
                https::PolicyFetcher& fetcher, Clock clock, ServiceOptions options,
                std::shared_ptr<spdlog::logger> logger, FetchListener on_fetch = {},
                store::SharedCache* shared = nullptr);

  // Answers for an already normalized domain. Fresh cache: no network. Otherwise DNS (TXT and
  // TLSRPT together), a fetch when needed, the decision, one store write. Concurrent callers for
  // the same domain share one lookup. Never throws for expected failures.
  asio::awaitable<LookupResult> lookup(std::string domain);

  // Looks at DNS (and fetches when needed) even if the cache is fresh: `refresh`.
  asio::awaitable<LookupResult> refresh(std::string domain);

  // The fleet tier's counters; nullptr without a shared cache.
  [[nodiscard]] const FleetTier* fleet() const { return fleet_.get(); }

 private:
  struct InFlight;
  asio::awaitable<LookupResult> run_lookup(std::string domain, bool force);
  // The MTA-STS part: TXT records, a fetch when needed, the decision (core/decide.hpp).
  // `candidate`: a policy from the shared cache, taken instead of a fetch when the TXT record
  // shows its id.
  asio::awaitable<Decision> check_sts(std::string domain, std::optional<CacheEntry> cached,
                                      std::optional<CachedPolicy> candidate = std::nullopt);
  // The DANE part: MX, then per host A/AAAA before TLSA (core/dane.hpp).
  asio::awaitable<DaneState> check_dane(std::string domain);

  asio::any_io_executor executor_;
  store::PolicyStore& store_;
  dns::Resolver& resolver_;
  https::PolicyFetcher& fetcher_;
  Clock clock_;
  ServiceOptions options_;
  std::shared_ptr<spdlog::logger> logger_;
  FetchListener on_fetch_;
  std::map<std::string, std::shared_ptr<InFlight>> in_flight_;
  std::unique_ptr<FleetTier> fleet_;  // with a shared cache (mtastsd in a fleet)
};

}  // namespace mtasts
