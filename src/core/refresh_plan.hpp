// When mtastsd refreshes a cached entry on its own (RFC 8461 §3.3: "MTAs SHOULD proactively
// refresh cached policies before they expire"; STS-27, STS-28), and when it forgets one nobody
// uses. Pure: `now` and the random jitter draw are arguments; what a refresh does (TXT id first,
// HTTPS only for a new id or from refresh_from()) stays with should_fetch() and decide().
#pragma once

#include <cstdint>

#include "core/decide.hpp"

namespace mtasts {

// Tunables of the scheduler; defaults are the documented [daemon] defaults.
struct RefreshTiming {
  std::int64_t ahead = 600;       // refresh_ahead: refresh this long before an entry goes stale
  std::int64_t retry_max = 3600;  // refresh_retry_max: the doubling pause after failures stops here
  std::int64_t drop_unused_after = 30 * 86400;  // drop_unused_after; 0: never
  // refresh_ttl_window: the TXT id of a domain used within this is re-checked as its TTL runs
  // out, so lookups find it current; 0: never (the next lookup re-checks).
  std::int64_t ttl_window = 86400;
  friend bool operator==(const RefreshTiming&, const RefreshTiming&) = default;
};

// What the scheduler remembers about one domain (in memory; last_used and own_check are also
// persisted now and then, see usage_file.hpp).
struct RefreshState {
  UnixTime last_used = 0;     // the latest time a front-end needed the domain
  UnixTime own_check = 0;     // checked_at of the entry as the scheduler's own refresh left it
  UnixTime last_attempt = 0;  // when the scheduler last refreshed it; 0: never
  int failures = 0;           // refreshes in a row that failed
  friend bool operator==(const RefreshState&, const RefreshState&) = default;
};

enum class RefreshAction {
  idle,     // nothing to do (no policy to keep fresh; or unused and waiting for its policy to
            // expire, from `at`)
  refresh,  // refresh at `at` (or at once when that is past)
  drop,     // unused for drop_unused_after and holding no unexpired policy: erase it
};

struct RefreshPlan {
  RefreshAction action = RefreshAction::idle;
  UnixTime at = 0;
  friend bool operator==(const RefreshPlan&, const RefreshPlan&) = default;
};

// The plan for one cached entry at `now`. `draw` is a uniform random number in [0, 1) (taken
// outside the core) that spreads refreshes over the earlier half of the `ahead` window.
//
// - Only entries holding a policy are refreshed (expired ones too: their fetch is failing and a
//   retry may recover them). Entries without one (no MTA-STS, a first fetch that failed) are
//   looked up again by the front-ends when they need them.
// - An entry is refreshed `ahead` seconds (at most a quarter of the time since its last check)
//   before next_check, so lookups keep finding it fresh; but never before refresh_from() when
//   next_check is due for the same-id fetch (earlier, should_fetch() would not fetch and the
//   entry would stay due), and never before a failed fetch's backoff ends (STS-23).
// - An entry due only because its TXT answer's TTL (below txt_max_ttl) runs out (RFC 8461
//   §8.1) is re-checked just after that, with no window ahead (the resolver's cache would answer
//   the same until then), when the domain was used within ttl_window; otherwise it waits for its
//   proactive fetch, and the next lookup re-checks. DNS traffic follows the domains in use, not
//   the size of the cache.
// - Failed refreshes are retried after refresh_retry_pause(), and no entry is refreshed twice
//   within dns_retry (a policy with max_age 0 is due again at once).
// - Unused for drop_unused_after: no longer refreshed; dropped once it holds no unexpired policy
//   (a cached policy is what protects the next delivery from a downgrade: never thrown away
//   early).
[[nodiscard]] RefreshPlan plan_refresh(const CacheEntry& entry, const RefreshState& state,
                                       UnixTime now, const Timing& timing,
                                       const RefreshTiming& refresh, double draw);

// Pause after `failures` failed refreshes in a row: dns_retry, doubling, at most retry_max.
[[nodiscard]] std::int64_t refresh_retry_pause(int failures, const Timing& timing,
                                               const RefreshTiming& refresh);

// The last use seen in an entry read from the cache: any DNS check the scheduler did not make
// itself (the daemon answering a client, the Exim module or the CLI after the entry went stale)
// is a use at checked_at. Cache hits write nothing, so they are invisible here; the daemon
// counts its own hits, and the module's and CLI's show up once the entry goes stale.
[[nodiscard]] UnixTime observed_last_use(const CacheEntry& entry, const RefreshState& state);

// A refresh failed when decide() left a reason in the entry (DNS cannot tell, the fetch failed
// or is backing off, the TXT record became unusable).
[[nodiscard]] bool refresh_failed(const CacheEntry& entry);

// A failed refresh deserves a warning when an unexpired enforce or testing policy is at stake
// (STS-28); for mode none, or nothing cached, it is routine.
[[nodiscard]] bool refresh_failure_matters(const CacheEntry& entry, UnixTime now);

}  // namespace mtasts
