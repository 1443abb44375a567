#include "core/decide.hpp"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

namespace mtasts {
namespace {

bool has_unexpired_policy(const std::optional<CacheEntry>& cached, UnixTime now) {
  return cached && cached->policy && now < cached->policy->expires_at;
}

// Pause before the next fetch of an id that failed `failures` times in a row: doubling from
// fetch_backoff_min, capped at fetch_backoff_max (STS-23: at least 5 minutes).
std::int64_t fetch_backoff(int failures, const Timing& timing) {
  std::int64_t pause = std::max<std::int64_t>(timing.fetch_backoff_min, 1);
  for (int i = 1; i < failures && pause < timing.fetch_backoff_max; ++i) pause *= 2;
  return std::min(pause, std::max(timing.fetch_backoff_max, timing.fetch_backoff_min));
}

std::string describe(const Error& error) {
  return fmt::format("{}: {}", to_string(error.category), error.reason);
}

bool is_temporary(ErrorCategory category) {
  return category == ErrorCategory::dns_temporary || category == ErrorCategory::dns_bogus;
}

Answer policy_answer(const CachedPolicy& cached) {
  Answer answer;
  answer.kind = AnswerKind::policy;
  answer.mode = cached.policy.mode;
  answer.mx = cached.policy.mx;
  answer.id = cached.id;
  answer.expires_at = cached.expires_at;
  return answer;
}

Answer no_policy_answer(std::string reason) {
  Answer answer;
  answer.kind = AnswerKind::no_policy;
  answer.reason = std::move(reason);
  return answer;
}

}  // namespace

// STS-27, RFC 8461 §3.3: "MTAs SHOULD proactively refresh cached policies before they expire".
// Re-checking the TXT id alone never renews a policy, so one that keeps its id is fetched again
// from half its lifetime on, or from txt_max_ttl before it expires if that is earlier: one
// blocked fetch at expiry cannot make it lapse, and a failing policy host is noticed (STS-28)
// while the cached policy still holds.
UnixTime refresh_from(const CachedPolicy& policy, const Timing& timing) {
  const std::int64_t lifetime = policy.expires_at - policy.fetched_at;
  return std::min(policy.fetched_at + lifetime / 2, policy.expires_at - timing.txt_max_ttl);
}

std::int64_t txt_recheck_after(std::optional<std::uint32_t> ttl, const Timing& timing) {
  const std::int64_t cap = std::max<std::int64_t>(timing.txt_max_ttl, 1);
  const std::int64_t floor = std::clamp<std::int64_t>(timing.txt_min_ttl, 1, cap);
  return ttl ? std::clamp<std::int64_t>(*ttl, floor, cap) : cap;
}

namespace {

// Next time DNS is consulted for a domain with a valid policy: the id is re-checked once the TXT
// answer's TTL has passed (RFC 8461 §8.1: a sender keeps using a policy only until then before
// looking for a new id), when the proactive refresh is due (STS-27), and in any case when the
// policy expires (STS-34).
UnixTime next_policy_check(const CachedPolicy& policy, UnixTime now, UnixTime txt_expires_at,
                           const Timing& timing) {
  const UnixTime refresh = refresh_from(policy, timing);
  return std::min(now < refresh ? refresh : policy.expires_at, txt_expires_at);
}

void merge_report(CacheEntry& entry, const TlsrptOutcome& tlsrpt) {
  if (!tlsrpt) return;
  if (tlsrpt->has_value()) {
    entry.report = format_rua((*tlsrpt)->rua);
  } else if (!is_temporary(tlsrpt->error().category)) {
    entry.report.clear();  // definitely no usable TLSRPT record now
  }                        // temporary failure: keep what we knew
}

// STS-23: the backoff of a failed id outlives a record that is missing for a while (a zone
// served half-updated, or negative_ttl below fetch_backoff_min): the id coming back inside its
// backoff must not be fetched again. Only a backoff that has run out is forgotten.
void forget_finished_backoff(CacheEntry& entry, UnixTime now) {
  if (now < entry.retry_fetch_at) return;
  entry.failed_id.clear();
  entry.failures = 0;
  entry.retry_fetch_at = 0;
}

bool cached_mode_matters(const CachedPolicy& policy) {
  // STS-28: failed refreshes are surfaced unless the cached mode is none.
  return policy.policy.mode != Mode::none;
}

}  // namespace

bool is_fresh(const std::optional<CacheEntry>& cached, UnixTime now) {
  return cached.has_value() && now < cached->next_check;
}

bool serves_while_revalidating(const std::optional<CacheEntry>& cached, UnixTime now) {
  return has_unexpired_policy(cached, now);
}

bool should_fetch(const std::optional<CacheEntry>& cached, const TxtOutcome& txt, UnixTime now,
                  const Timing& timing) {
  if (!txt) return false;
  const std::string& id = txt->id;
  // STS-23: a failed fetch of this id (a proactive refresh too) waits out its backoff; a new id
  // may be fetched at once.
  if (cached && cached->failed_id == id && now < cached->retry_fetch_at) return false;
  // STS-35: same id and still valid: the cached policy is current, no fetch until its
  // proactive refresh is due (STS-27).
  if (has_unexpired_policy(cached, now) && cached->policy->id == id) {
    return now >= refresh_from(*cached->policy, timing);
  }
  return true;
}

Decision decide(const std::optional<CacheEntry>& cached, const TxtOutcome& txt,
                const TlsrptOutcome& tlsrpt, const FetchOutcome& fetch, UnixTime now,
                const Timing& timing, std::optional<std::uint32_t> txt_ttl) {
  Decision decision;
  CacheEntry& entry = decision.entry;
  if (cached) entry = *cached;
  entry.checked_at = now;
  merge_report(entry, tlsrpt);
  const bool usable = has_unexpired_policy(cached, now);

  // Keeps the unexpired cached policy in force (STS-26, STS-07) after a failed check.
  auto keep_cached = [&](std::string why, UnixTime next_check, bool warn) {
    entry.unavailable = false;
    entry.next_check = std::min(next_check, entry.policy->expires_at);
    decision.answer = policy_answer(*entry.policy);
    if (warn && cached_mode_matters(*entry.policy)) {
      decision.warnings.push_back(fmt::format(
          "{}; keeping the cached {} policy (id {}) until it expires at {}", why,
          to_string(entry.policy->policy.mode), entry.policy->id, entry.policy->expires_at));
    }
  };

  if (!txt) {
    const Error& error = txt.error();
    if (is_temporary(error.category)) {
      // Cannot tell now (three outcomes, never two): look again soon.
      entry.last_error = describe(error);
      if (usable) {
        keep_cached(fmt::format("TXT lookup failed ({})", entry.last_error), now + timing.dns_retry,
                    true);
      } else {
        entry.unavailable = true;
        entry.next_check = now + timing.dns_retry;
        decision.answer = no_policy_answer(
            fmt::format("TXT lookup failed, delivering without MTA-STS: {}", entry.last_error));
      }
      return decision;
    }
    // Definitely no usable record: none, several (STS-06) or a syntax error.
    forget_finished_backoff(entry, now);
    if (usable) {
      // STS-07: a vanished or unusable TXT record never drops a cached policy early. Looked at
      // again after dns_retry: a record coming back (perhaps with a new id) is seen soon.
      entry.last_error = describe(error);
      keep_cached(fmt::format("_mta-sts record unusable ({})", entry.last_error),
                  now + timing.dns_retry, true);
      return decision;
    }
    // STS-48: past expiry and no record: the domain has no MTA-STS any more.
    entry.policy.reset();
    entry.unavailable = false;
    entry.last_error = error.category == ErrorCategory::no_record ? "" : describe(error);
    entry.next_check = now + timing.negative_ttl;
    decision.answer = no_policy_answer(describe(error));
    return decision;
  }

  const std::string& id = txt->id;
  entry.txt_expires_at = now + txt_recheck_after(txt_ttl, timing);
  if (!fetch) {
    const bool backing_off = cached && cached->failed_id == id && now < cached->retry_fetch_at;
    if (usable && cached->policy->id == id && !backing_off) {
      // STS-35: same id, the cached policy is current.
      entry.unavailable = false;
      entry.failed_id.clear();
      entry.failures = 0;
      entry.retry_fetch_at = 0;
      entry.last_error.clear();
      entry.next_check = next_policy_check(*entry.policy, now, entry.txt_expires_at, timing);
      decision.answer = policy_answer(*entry.policy);
      return decision;
    }
    if (backing_off) {
      // STS-23: this id failed recently; no fetch until the backoff runs out.
      UnixTime next = std::min(now + timing.dns_retry, entry.retry_fetch_at);
      if (usable) {
        keep_cached("policy fetch is backing off", next, false);
      } else {
        entry.unavailable = true;
        entry.next_check = next;
        decision.answer =
            no_policy_answer(fmt::format("policy id {} could not be fetched, retrying after {}: {}",
                                         id, entry.retry_fetch_at, entry.last_error));
      }
      return decision;
    }
    // The caller skipped a fetch that was needed: a bug, handled like a failed fetch.
  }

  if (fetch && fetch->has_value()) {
    const FetchedPolicy& fetched = **fetch;
    CachedPolicy fresh;
    fresh.policy = fetched.policy;
    fresh.id = id;
    fresh.fetched_at = now;
    // STS-17: cached for max_age from the fetch (already clamped to kMaxAgeCap by the parser).
    fresh.expires_at = now + std::min(fetched.policy.max_age, kMaxAgeCap);
    fresh.text = fetched.text;
    entry.policy = std::move(fresh);
    entry.unavailable = false;
    entry.failed_id.clear();
    entry.failures = 0;
    entry.retry_fetch_at = 0;
    entry.last_error.clear();
    entry.next_check = next_policy_check(*entry.policy, now, entry.txt_expires_at, timing);
    // rfc-checklist §6.8: max_age 0 applies to this delivery only; next_check == now means the
    // next lookup goes back to DNS.
    decision.answer = policy_answer(*entry.policy);
    return decision;
  }

  const Error error =
      fetch ? fetch->error() : Error{ErrorCategory::internal, "policy fetch was not attempted"};
  entry.failures = entry.failed_id == id ? entry.failures + 1 : 1;
  entry.failed_id = id;
  entry.retry_fetch_at = now + fetch_backoff(entry.failures, timing);
  entry.last_error = describe(error);
  const UnixTime next = std::min(now + timing.dns_retry, entry.retry_fetch_at);
  if (usable) {
    // STS-26: no live policy but an unexpired cached one: apply the cached policy.
    keep_cached(fmt::format("policy id {} could not be fetched ({})", id, entry.last_error), next,
                true);
  } else {
    // STS-25: nothing unexpired cached: deliver as if the domain had no MTA-STS (or fail in
    // strict mode, decided by answer_from_entry's caller through `unavailable`).
    entry.unavailable = true;
    entry.next_check = next;
    decision.answer = no_policy_answer(
        fmt::format("policy id {} published but could not be fetched: {}", id, entry.last_error));
    decision.warnings.push_back(
        fmt::format("MTA-STS policy id {} is published but could not be fetched ({}); "
                    "delivering without MTA-STS until it can be",
                    id, entry.last_error));
  }
  return decision;
}

Answer answer_from_entry(const CacheEntry& entry, UnixTime now, bool strict) {
  if (entry.policy && now < entry.policy->expires_at) {
    return apply_dane(policy_answer(*entry.policy), entry);
  }
  if (entry.unavailable) {
    return apply_dane(
        apply_strict(no_policy_answer(entry.last_error.empty() ? "published policy unavailable"
                                                               : entry.last_error),
                     entry, strict),
        entry);
  }
  return apply_dane(
      no_policy_answer(entry.last_error.empty() ? "no MTA-STS policy" : entry.last_error), entry);
}

Answer apply_dane(Answer answer, const CacheEntry& entry) {
  if (!entry.dane) return answer;
  answer.dane = entry.dane->verdict;
  answer.dane_required = entry.dane->required;
  answer.dane_reason = entry.dane->reason;
  return answer;
}

Answer apply_strict(Answer answer, const CacheEntry& entry, bool strict) {
  if (strict && answer.kind == AnswerKind::no_policy && entry.unavailable) {
    answer.kind = AnswerKind::fail;
  }
  return answer;
}

std::string format_rua(const std::vector<std::string>& rua) {
  std::string joined;
  for (const std::string& uri : rua) {
    if (!joined.empty()) joined += ',';
    for (char c : uri) {
      if (c == ',') {
        joined += "%2C";
      } else if (c == '%') {
        joined += "%25";
      } else {
        joined += c;
      }
    }
  }
  return joined;
}

}  // namespace mtasts
