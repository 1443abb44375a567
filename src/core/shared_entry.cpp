#include "core/shared_entry.hpp"

#include <algorithm>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace mtasts {
namespace {

int strength(Mode mode) {
  switch (mode) {
    case Mode::enforce:
      return 2;
    case Mode::testing:
      return 1;
    case Mode::none:
      return 0;
  }
  return 0;
}

std::vector<std::string> sorted(std::vector<std::string> patterns) {
  std::sort(patterns.begin(), patterns.end());
  patterns.erase(std::unique(patterns.begin(), patterns.end()), patterns.end());
  return patterns;
}

bool holds_policy(const std::optional<CacheEntry>& entry, UnixTime now) {
  return entry && entry->policy && now < entry->policy->expires_at;
}

// The longest a member of these settings leaves an entry without looking at DNS.
std::int64_t longest_recheck(const Timing& timing) {
  return std::max({timing.txt_max_ttl, timing.negative_ttl, timing.dns_retry, std::int64_t{1}});
}

}  // namespace

std::optional<CacheEntry> sanitize_shared(CacheEntry entry, UnixTime now, const Timing& timing,
                                          std::string& why) {
  const UnixTime latest = now + kSharedClockSkew;
  if (entry.checked_at > latest) {
    why = fmt::format("checked_at {} is in the future", entry.checked_at);
    return std::nullopt;
  }
  if (entry.policy && entry.policy->fetched_at > latest) {
    why = fmt::format("fetched_at {} is in the future", entry.policy->fetched_at);
    return std::nullopt;
  }
  entry.dane.reset();
  const std::int64_t recheck = longest_recheck(timing);
  entry.next_check = std::min({entry.next_check, entry.checked_at + recheck, now + recheck});
  entry.txt_expires_at =
      std::min({entry.txt_expires_at, entry.checked_at + timing.txt_max_ttl, now + recheck});
  if (entry.policy) {
    CachedPolicy& policy = *entry.policy;
    policy.expires_at = std::min(policy.expires_at, policy.fetched_at + policy.policy.max_age);
  }
  entry.retry_fetch_at = std::min(entry.retry_fetch_at, now + timing.fetch_backoff_max);
  entry.failures = std::clamp(entry.failures, 0, 64);
  return entry;
}

bool weakens(const CachedPolicy& held, const std::optional<CachedPolicy>& offered, UnixTime now) {
  if (!offered || now >= offered->expires_at) return true;
  if (strength(offered->policy.mode) < strength(held.policy.mode)) return true;
  if (sorted(offered->policy.mx) != sorted(held.policy.mx)) return true;
  return offered->expires_at < held.expires_at;
}

SharedJudgement judge_shared(const std::optional<CacheEntry>& local, const CacheEntry& shared,
                             UnixTime now, const Timing& timing, bool force) {
  // An unexpired policy under an id we do not hold is worth offering even from an entry we will
  // not adopt: if our own TXT lookup shows that id, it spares us the fetch (another member made
  // it), and if not, it is not used.
  const bool other_policy = shared.policy && now < shared.policy->expires_at &&
                            (!local || !local->policy || local->policy->id != shared.policy->id);
  const auto not_adopted = [&](std::string why) {
    if (other_policy) {
      return SharedJudgement{SharedUse::confirm,
                             fmt::format("policy id {} ({})", shared.policy->id, why)};
    }
    return SharedJudgement{SharedUse::ignore, std::move(why)};
  };
  if (!is_fresh(shared, now)) return not_adopted("stale");
  if (local) {
    // A refresh wants a newer check than the one it would redo; a plain lookup just one no
    // older than what is here.
    const bool newer =
        force ? shared.checked_at > local->checked_at : shared.checked_at >= local->checked_at;
    if (!newer) return not_adopted("not newer than the local entry");
  }
  if (force && shared.policy && now < shared.policy->expires_at &&
      should_fetch(shared, StsRecord{shared.policy->id}, now, timing)) {
    return {SharedUse::ignore, "its policy is due for a fetch"};
  }
  if (holds_policy(local, now) && weakens(*local->policy, shared.policy, now)) {
    if (shared.policy && shared.policy->id != local->policy->id) {
      return {SharedUse::confirm,
              fmt::format("policy id {} would replace the unexpired policy id {}",
                          shared.policy->id, local->policy->id)};
    }
    return {SharedUse::ignore,
            fmt::format("it would weaken the unexpired policy id {} held here", local->policy->id)};
  }
  return {SharedUse::adopt, {}};
}

std::optional<CacheEntry> with_shared_backoff(std::optional<CacheEntry> local,
                                              const CacheEntry& shared, UnixTime now) {
  if (shared.failed_id.empty() || shared.retry_fetch_at <= now) return local;
  CacheEntry entry = local ? std::move(*local) : CacheEntry{};
  if (entry.failed_id == shared.failed_id) {
    entry.failures = std::max(entry.failures, shared.failures);
    entry.retry_fetch_at = std::max(entry.retry_fetch_at, shared.retry_fetch_at);
  } else if (entry.failed_id.empty() || entry.retry_fetch_at <= now) {
    entry.failed_id = shared.failed_id;
    entry.failures = shared.failures;
    entry.retry_fetch_at = shared.retry_fetch_at;
  }
  return entry;
}

std::int64_t shared_ttl(const CacheEntry& entry, UnixTime now) {
  UnixTime until = std::max(entry.next_check, entry.retry_fetch_at);
  if (entry.policy) until = std::max(until, entry.policy->expires_at);
  return std::clamp<std::int64_t>(until - now, 60, kMaxAgeCap);
}

}  // namespace mtasts
