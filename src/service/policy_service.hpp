// PolicyService: lookup -> cache -> (single-flight) DNS + fetch -> store (design §3).
// Owns concurrency: one lookup in flight per domain however many callers ask.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <spdlog/logger.h>

#include "adapters/asio.hpp"
#include "adapters/dns/resolver.hpp"
#include "adapters/https/policy_fetcher.hpp"
#include "adapters/store/policy_store.hpp"
#include "core/decide.hpp"

namespace mtasts {

enum class AnswerSource { cache, network };

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
};

using Clock = std::function<UnixTime()>;

class PolicyService {
 public:
  PolicyService(asio::any_io_executor executor, store::PolicyStore& store, dns::Resolver& resolver,
                https::PolicyFetcher& fetcher, Clock clock, ServiceOptions options,
                std::shared_ptr<spdlog::logger> logger);

  // Answers for an already normalized domain. Fresh cache: no network. Otherwise DNS (TXT and
  // TLSRPT together), a fetch when needed, the decision, one store write. Concurrent callers for
  // the same domain share one lookup. Never throws for expected failures.
  asio::awaitable<LookupResult> lookup(std::string domain);

  // Looks at DNS (and fetches when needed) even if the cache is fresh: `refresh`.
  asio::awaitable<LookupResult> refresh(std::string domain);

 private:
  struct InFlight;
  asio::awaitable<LookupResult> run_lookup(std::string domain, bool force);

  asio::any_io_executor executor_;
  store::PolicyStore& store_;
  dns::Resolver& resolver_;
  https::PolicyFetcher& fetcher_;
  Clock clock_;
  ServiceOptions options_;
  std::shared_ptr<spdlog::logger> logger_;
  std::map<std::string, std::shared_ptr<InFlight>> in_flight_;
};

}  // namespace mtasts
