#include "core/refresh_plan.hpp"

#include <algorithm>

namespace mtasts {

RefreshPlan plan_refresh(const CacheEntry& entry, const RefreshState& state, UnixTime now,
                         const Timing& timing, const RefreshTiming& refresh, double draw) {
  const bool unexpired = entry.policy && now < entry.policy->expires_at;
  if (refresh.drop_unused_after > 0 && now - state.last_used >= refresh.drop_unused_after) {
    if (unexpired) return {RefreshAction::idle, entry.policy->expires_at};
    return {RefreshAction::drop, now};
  }
  if (!entry.policy) return {RefreshAction::idle, 0};

  UnixTime due = entry.next_check;
  UnixTime not_before = 0;  // running earlier could not do what the entry is due for
  // STS-23: nothing can be fetched before the backoff of a failed id ends; re-checking the TXT
  // record meanwhile would only repeat what is known.
  if (!entry.failed_id.empty() && entry.retry_fetch_at > due) {
    due = entry.retry_fetch_at;
    not_before = entry.retry_fetch_at;
  }
  const UnixTime fetch_from = refresh_from(*entry.policy, timing);
  // RFC 8461 §8.1: due only because the TXT answer's TTL runs out. Asked earlier, the resolver
  // would serve the same answer from its cache with the rest of that TTL, so the re-check runs
  // just after it (a TTL cut to txt_max_ttl is another matter: asked ahead, the rest is still
  // above the cap). Only for a domain used within ttl_window: for the others the front-end's
  // next lookup re-checks (mtastsd meanwhile answers from the cached policy), and the scheduler
  // waits for the proactive fetch.
  bool txt_recheck = false;
  const std::int64_t ttl = entry.txt_expires_at - entry.checked_at;
  if (entry.txt_expires_at > 0 && due == entry.txt_expires_at && due < fetch_from &&
      ttl < timing.txt_max_ttl) {
    if (refresh.ttl_window > 0 && now - state.last_used < refresh.ttl_window) {
      txt_recheck = true;
      due += 1;
    } else {
      due = fetch_from;
    }
  }
  // STS-27: due for the same-id fetch, which should_fetch() allows only from refresh_from();
  // starting before would only re-check the TXT id and leave the entry due.
  if (due >= fetch_from) not_before = std::max(not_before, fetch_from);

  const std::int64_t since_check = std::max<std::int64_t>(due - entry.checked_at, 0);
  const std::int64_t window =
      txt_recheck ? 0 : std::clamp<std::int64_t>(refresh.ahead, 0, since_check / 4);
  const double spread = std::clamp(draw, 0.0, 1.0) * static_cast<double>(window / 2);
  UnixTime at = std::max(due - window + static_cast<std::int64_t>(spread), not_before);
  if (state.failures > 0) {
    at = std::max(at, state.last_attempt + refresh_retry_pause(state.failures, timing, refresh));
  }
  if (state.last_attempt > 0) at = std::max(at, state.last_attempt + timing.dns_retry);
  return {RefreshAction::refresh, at};
}

std::int64_t refresh_retry_pause(int failures, const Timing& timing, const RefreshTiming& refresh) {
  const std::int64_t cap = std::max<std::int64_t>(refresh.retry_max, 1);
  std::int64_t pause = std::clamp<std::int64_t>(timing.dns_retry, 1, cap);
  for (int i = 1; i < failures && pause < cap; ++i) pause *= 2;
  return std::min(pause, cap);
}

UnixTime observed_last_use(const CacheEntry& entry, const RefreshState& state) {
  if (entry.checked_at != state.own_check) return std::max(state.last_used, entry.checked_at);
  return state.last_used;
}

bool refresh_failed(const CacheEntry& entry) {
  return !entry.last_error.empty();
}

bool refresh_failure_matters(const CacheEntry& entry, UnixTime now) {
  return entry.policy && now < entry.policy->expires_at && entry.policy->policy.mode != Mode::none;
}

}  // namespace mtasts
