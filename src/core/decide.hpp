// The cache decision of RFC 8461 §3.3 and §5.1 as pure functions: given what is cached, what DNS
// said and what the fetch returned, what do we store and what do we answer? No I/O, no clock:
// `now` is an argument (Unix seconds).
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <vector>

#include "core/dane.hpp"
#include "core/error.hpp"
#include "core/policy.hpp"
#include "core/sts_record.hpp"
#include "core/tlsrpt_record.hpp"

namespace mtasts {

using UnixTime = std::int64_t;

struct CachedPolicy {
  Policy policy;
  std::string id;  // the TXT id the policy was fetched under
  UnixTime fetched_at = 0;
  UnixTime expires_at = 0;  // fetched_at + max_age (STS-17)
  std::string text;         // the policy body as served, for `query` and TLSRPT policy-string
  friend bool operator==(const CachedPolicy&, const CachedPolicy&) = default;
};

// Everything remembered about one policy domain.
struct CacheEntry {
  std::optional<CachedPolicy> policy;  // the last valid policy, kept (maybe expired) for diagnosis
  UnixTime checked_at = 0;             // when DNS was last consulted
  UnixTime next_check = 0;      // until then answers come from this entry with no network at all
  UnixTime txt_expires_at = 0;  // the TTL of the last _mta-sts answer runs out: the id it gave
                                // is current until then (RFC 8461 §8.1); 0 when unknown
  bool unavailable = false;     // a policy is (or may be) published but none could be had (fetch
                                // failure or temporary DNS failure) and no unexpired one is cached
  std::string failed_id;        // the TXT id whose fetch failed; backoff is per id (STS-23)
  int failures = 0;             // consecutive failures for failed_id
  UnixTime retry_fetch_at = 0;  // no fetch of failed_id before this time
  std::string last_error;       // "<category>: <reason>" of the latest failure, empty when healthy
  std::string report;           // TLSRPT rua URIs joined by "," (commas inside URIs %-encoded)
  std::string txt_dnssec;       // DNSSEC status of the last _mta-sts answer: secure, insecure,
                                // bogus, indeterminate; empty when unknown
  std::optional<DaneState> dane;  // the last DANE evaluation (absent: none made, DANE off)
  friend bool operator==(const CacheEntry&, const CacheEntry&) = default;
};

// Tunables of the decision; defaults are the documented config defaults.
struct Timing {
  // A valid policy's TXT id is re-checked once the _mta-sts answer's DNS TTL has passed (RFC 8461
  // §8.1, §3.1), with the TTL taken within [txt_min_ttl, txt_max_ttl]: the floor keeps a TTL of 0
  // from costing a query per delivery, the cap bounds how long a changed id goes unseen.
  std::int64_t txt_min_ttl = 1;
  std::int64_t txt_max_ttl = 3600;
  std::int64_t negative_ttl = 3600;      // remember "no MTA-STS here" this long
  std::int64_t dns_retry = 60;           // after a temporary DNS failure or a failed fetch, look at
                                         // DNS again no sooner than this
  std::int64_t fetch_backoff_min = 300;  // first pause after a failed fetch (STS-23: >= 5 min)
  std::int64_t fetch_backoff_max = 21600;  // the doubling pause stops growing here
};

// What `_mta-sts.<domain>` said: a record, or an error of category no_record, multiple_records,
// record_syntax (definitely no usable record) or dns_temporary / dns_bogus (cannot tell).
using TxtOutcome = std::expected<StsRecord, Error>;
// What `_smtp._tls.<domain>` said; std::nullopt when it was not looked up.
using TlsrptOutcome = std::optional<std::expected<TlsrptRecord, Error>>;

struct FetchedPolicy {
  Policy policy;
  std::string text;
};
// What the HTTPS fetch (and parse) gave; std::nullopt when no fetch was made.
using FetchOutcome = std::optional<std::expected<FetchedPolicy, Error>>;

enum class AnswerKind {
  policy,     // a policy applies; see mode and mx
  no_policy,  // deliver as if the domain had no MTA-STS (STS-25, STS-41 for mode none is `policy`)
  fail,       // strict mode only: a policy is published but unavailable; hold the mail
};

struct Answer {
  AnswerKind kind = AnswerKind::no_policy;
  Mode mode = Mode::none;       // meaningful when kind == policy
  std::vector<std::string> mx;  // meaningful when kind == policy
  std::string id;
  UnixTime expires_at = 0;
  std::string reason;  // why no_policy / fail, for `query` and logs
  // DANE (RFC 7672), evaluated before MTA-STS and never overridden by it (RFC 8461 §2): failed
  // holds the mail whatever the policy says; all_usable (or dane_required) hands delivery to
  // the MTA's DANE. The policy fields above stay as they are (the mx filter still applies).
  DaneVerdict dane = DaneVerdict::not_applicable;
  bool dane_required = false;  // the admin made DANE mandatory for this domain (DANE-15)
  std::string dane_reason;
  friend bool operator==(const Answer&, const Answer&) = default;
};

struct Decision {
  CacheEntry entry;                   // store this (always; it carries next_check)
  Answer answer;                      // answer the current lookup with this
  std::vector<std::string> warnings;  // for the admin's log (STS-28)
};

// True when the entry may answer by itself at `now` (no network): it exists and next_check is
// in the future.
[[nodiscard]] bool is_fresh(const std::optional<CacheEntry>& cached, UnixTime now);

// True when a stale entry (is_fresh() false) may still answer at once while its TXT id is
// re-checked in the background (stale-while-revalidate): it holds an unexpired policy, which is
// what decide() answers with whatever that re-check finds, short of a new valid policy.
[[nodiscard]] bool serves_while_revalidating(const std::optional<CacheEntry>& cached, UnixTime now);

// After the TXT lookup: must the policy be fetched? True when a record was found and the cached
// policy is missing, expired or has another id (STS-34, STS-35), or keeps its id but is due for
// its proactive refresh (STS-27: from half its lifetime, or txt_max_ttl before it expires if
// that is earlier), unless that id's fetch failed and its backoff has not run out (STS-23).
[[nodiscard]] bool should_fetch(const std::optional<CacheEntry>& cached, const TxtOutcome& txt,
                                UnixTime now, const Timing& timing);

// From when a cached policy that keeps its id is fetched again (STS-27): half its lifetime, or
// txt_max_ttl before it expires if that is earlier. should_fetch() fetches a same-id
// policy only from then on; the daemon's refresh scheduler plans around it.
[[nodiscard]] UnixTime refresh_from(const CachedPolicy& policy, const Timing& timing);

// The decision proper. `fetch` must be present exactly when should_fetch() said so. `txt_ttl` is
// the DNS TTL of the _mta-sts answer (std::nullopt when unknown: txt_max_ttl applies). The answer
// is strict-neutral: pass it through apply_strict().
[[nodiscard]] Decision decide(const std::optional<CacheEntry>& cached, const TxtOutcome& txt,
                              const TlsrptOutcome& tlsrpt, const FetchOutcome& fetch, UnixTime now,
                              const Timing& timing,
                              std::optional<std::uint32_t> txt_ttl = std::nullopt);

// How long the id of an _mta-sts answer with DNS TTL `ttl` stays current: the TTL within
// [txt_min_ttl, txt_max_ttl], txt_max_ttl when unknown.
[[nodiscard]] std::int64_t txt_recheck_after(std::optional<std::uint32_t> ttl,
                                             const Timing& timing);

// The answer a stored entry gives at `now` without any network (used while is_fresh()).
// `strict` turns "published but unavailable, nothing cached" into fail instead of no_policy.
[[nodiscard]] Answer answer_from_entry(const CacheEntry& entry, UnixTime now, bool strict);

// The answer with the entry's DANE state (if any) folded in.
[[nodiscard]] Answer apply_dane(Answer answer, const CacheEntry& entry);

// Strict mode (an admin's opt-in) turns "a policy is published but unavailable and nothing usable
// is cached" into fail instead of no_policy. Every other answer passes through unchanged.
[[nodiscard]] Answer apply_strict(Answer answer, const CacheEntry& entry, bool strict);

// Joins rua URIs for the `:report` key, percent-encoding "," inside a URI so the list splits back.
[[nodiscard]] std::string format_rua(const std::vector<std::string>& rua);

}  // namespace mtasts
