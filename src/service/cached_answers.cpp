#include "service/cached_answers.hpp"

#include <utility>

#include <fmt/format.h>

#include "core/domain.hpp"
#include "core/text_quote.hpp"

namespace mtasts {

std::expected<Target, Error> target_of(std::string_view raw_domain) {
  auto domain = normalize_domain(raw_domain);
  if (domain) return Target{std::move(*domain), std::nullopt};
  if (domain.error().category != ErrorCategory::address_literal) {
    Error error = domain.error();
    error.reason = fmt::format("invalid domain {}: {}", quote_input(raw_domain), error.reason);
    return std::unexpected(std::move(error));
  }
  // STS-30: no policy can exist for an address literal; no lookup.
  Answer none;
  none.kind = AnswerKind::no_policy;
  none.reason = "address literal: no MTA-STS policy can apply (STS-30)";
  return Target{std::string(), std::move(none)};
}

std::optional<CachedAnswer> usable_answer(std::optional<CacheEntry> cached,
                                          const std::string& domain, UnixTime now,
                                          const ServiceOptions& options, bool allow_stale) {
  if (!cached || !dane_is_fresh(cached, now, options, domain)) return std::nullopt;
  CacheHit hit = CacheHit::fresh;
  if (!is_fresh(cached, now)) {
    // RFC 8461 §8.1: the cached policy holds until a re-check shows a new id.
    if (!allow_stale || !serves_while_revalidating(cached, now)) return std::nullopt;
    hit = CacheHit::stale;
  }
  Answer answer = answer_from_entry(*cached, now, options.strict);
  return CachedAnswer{
      LookupResult{domain, std::move(answer), std::move(cached), AnswerSource::cache}, hit};
}

std::optional<CachedAnswer> answer_from_cache(store::PolicyStore& store, const std::string& domain,
                                              UnixTime now, const ServiceOptions& options,
                                              bool allow_stale, spdlog::logger& logger) {
  auto loaded = store.load(domain);
  if (!loaded) {
    logger.error("cache read for {} failed: {}", domain, loaded.error().reason);
    return std::nullopt;
  }
  return usable_answer(std::move(*loaded), domain, now, options, allow_stale);
}

LookupResult answer_after_failure(store::PolicyStore& store, const std::string& domain,
                                  const std::string& failure, UnixTime now,
                                  const ServiceOptions& options, spdlog::logger& logger) {
  logger.warn("{}: {}", domain, failure);
  CacheEntry entry;
  if (auto loaded = store.load(domain); loaded && *loaded) entry = **loaded;
  entry.unavailable = true;
  entry.last_error = fmt::format("dns_temporary: {}", failure);
  entry.dane = dane_fallback(entry, now, options, domain, failure);
  Answer answer = answer_from_entry(entry, now, options.strict);
  return LookupResult{domain, std::move(answer), std::move(entry), AnswerSource::cache};
}

}  // namespace mtasts
