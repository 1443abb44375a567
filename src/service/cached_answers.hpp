// The answers every front-end gives without waiting for the network: an address literal's
// (STS-30), a cached entry's, and the one after a lookup that did not finish in time. The CLI,
// the Exim module, mtastsd and PolicyService all take them from here, so a hit, a stale entry
// and a fallback mean the same thing on every way in.
#pragma once

#include <expected>
#include <optional>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

#include "service/policy_service.hpp"

namespace mtasts {

// A domain as a front-end received it (any case, maybe a root dot or U-labels): the normalized
// domain to look up, or, for an address literal, the answer itself (no policy can apply; no
// cache, no network). Anything else that is not a hostname is an error naming the input.
struct Target {
  std::string domain;            // normalized; empty for an address literal
  std::optional<Answer> answer;  // set for an address literal
};
[[nodiscard]] std::expected<Target, Error> target_of(std::string_view raw_domain);

// How a cached entry may answer at `now`.
enum class CacheHit {
  fresh,  // its next_check is ahead: no network at all
  stale,  // its TXT TTL has passed but its policy holds (serves_while_revalidating): mtastsd
          // answers with it and re-checks in the background
};

struct CachedAnswer {
  LookupResult result;
  CacheHit hit = CacheHit::fresh;
};

// The answer `cached` gives for `domain` (normalized) at `now` without the network: a fresh
// entry always; a stale one only when `allow_stale`. Nothing when the entry is missing, stale,
// or holds a DANE state that is not fresh.
[[nodiscard]] std::optional<CachedAnswer> usable_answer(std::optional<CacheEntry> cached,
                                                        const std::string& domain, UnixTime now,
                                                        const ServiceOptions& options,
                                                        bool allow_stale);

// The same, read from the store (a failed read is logged and answers nothing).
[[nodiscard]] std::optional<CachedAnswer> answer_from_cache(store::PolicyStore& store,
                                                            const std::string& domain, UnixTime now,
                                                            const ServiceOptions& options,
                                                            bool allow_stale,
                                                            spdlog::logger& logger);

// The answer after a lookup that did not finish (deadline, or an exception): what is cached,
// marked unavailable, decides, as for a temporary DNS failure: an unexpired policy still holds,
// a DANE check that did not finish is never "no DANE" (dane_fallback). Logs `failure`.
[[nodiscard]] LookupResult answer_after_failure(store::PolicyStore& store,
                                                const std::string& domain,
                                                const std::string& failure, UnixTime now,
                                                const ServiceOptions& options,
                                                spdlog::logger& logger);

}  // namespace mtasts
