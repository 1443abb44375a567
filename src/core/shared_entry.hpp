// What a member of a fleet may do with an entry found in the shared cache (design §8). Anybody
// who can write to the shared cache wrote it, so it is trusted no more than the RFC trusts the
// network: it may spare this member DNS queries and a fetch, but it can never weaken an
// unexpired policy this member holds unless this member's own TXT lookup shows the id it came
// with (a Redis writer alone can never downgrade a delivery). Pure: `now` is an argument.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "core/decide.hpp"

namespace mtasts {

// Clock skew between members we tolerate before a time stamp counts as "from the future".
inline constexpr std::int64_t kSharedClockSkew = 300;

// A shared entry cut down to what this member's own settings allow, so a writer cannot make it
// trust an answer longer than it would have itself: next_check within the longest re-check
// interval, a policy's life within its max_age, a backoff within fetch_backoff_max. The DANE
// state is dropped: each member validates DNSSEC itself. std::nullopt (with `why`) for an entry
// that claims checks or fetches in the future.
[[nodiscard]] std::optional<CacheEntry> sanitize_shared(CacheEntry entry, UnixTime now,
                                                        const Timing& timing, std::string& why);

enum class SharedUse {
  adopt,    // copy it into the local cache and answer from it: no DNS, no fetch
  confirm,  // its policy has an id not held here and would weaken the unexpired one held here,
            // or the entry is stale or older than ours: use the policy only if this member's own
            // TXT lookup shows its id (then without a fetch)
  ignore,   // stale, not newer than what is held here, not what a refresh needs, or it would
            // weaken the unexpired policy held here under the same id
};

struct SharedJudgement {
  SharedUse use = SharedUse::ignore;
  std::string reason;  // why not adopt, for logs
};

// `local` is this member's entry (std::nullopt when none), `shared` a sanitized shared entry.
// `force`: a refresh, which wants a check newer than the local one and a policy not due for its
// own proactive fetch.
[[nodiscard]] SharedJudgement judge_shared(const std::optional<CacheEntry>& local,
                                           const CacheEntry& shared, UnixTime now,
                                           const Timing& timing, bool force);

// True when `offered` would weaken `held` (an unexpired policy): no policy or an expired one, a
// weaker mode (enforce > testing > none), other mx patterns, or a shorter life.
[[nodiscard]] bool weakens(const CachedPolicy& held, const std::optional<CachedPolicy>& offered,
                           UnixTime now);

// The local entry with the fetch backoff of a shared entry folded in, when the shared one is
// waiting out a failed fetch of an id the local one would fetch now: a failing policy host is
// then fetched once per backoff period by the whole fleet. Only ever postpones a fetch (bounded
// by sanitize_shared()); never changes what a cached policy answers.
[[nodiscard]] std::optional<CacheEntry> with_shared_backoff(std::optional<CacheEntry> local,
                                                            const CacheEntry& shared, UnixTime now);

// How long the shared cache keeps an entry: until the last of its policy's end, its next check
// and its backoff; at least a minute, at most a policy's longest life.
[[nodiscard]] std::int64_t shared_ttl(const CacheEntry& entry, UnixTime now);

}  // namespace mtasts
