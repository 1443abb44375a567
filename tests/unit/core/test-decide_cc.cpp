// The cache decision (RFC 8461 §3.3, §5.1), driven as the service drives it: is_fresh ->
// DNS -> should_fetch -> decide. Each test names the checklist row it proves.
#include "core/decide.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace mtasts {
namespace {

constexpr UnixTime kT0 = 1'700'000'000;
// Most rows were written when a valid policy's id was re-checked daily: with no TTL from DNS
// (txt_max_ttl applies) and a cap of a day they keep that rhythm. The TTL rows set their own.
Timing daily_timing() {
  Timing timing;
  timing.txt_max_ttl = 86400;
  return timing;
}
const Timing kTiming = daily_timing();

Policy make_policy(Mode mode, std::int64_t max_age = 86400,
                   std::vector<std::string> mx = {"mx1.example.com", "*.example.net"}) {
  return Policy{mode, max_age, std::move(mx)};
}

TxtOutcome txt_id(std::string id) {
  return StsRecord{std::move(id)};
}
TxtOutcome txt_error(ErrorCategory category) {
  return std::unexpected(Error{category, "test"});
}
FetchOutcome fetched(Policy policy) {
  return FetchedPolicy{std::move(policy), "body"};
}
FetchOutcome fetch_error(ErrorCategory category = ErrorCategory::fetch_failed) {
  return std::expected<FetchedPolicy, Error>(std::unexpected(Error{category, "HTTP 500"}));
}

// One full lookup the way PolicyService performs it; the fetch callback runs only when the
// decision functions ask for a fetch, and counts how often that happens.
struct Lookups {
  std::optional<CacheEntry> entry;
  int fetches = 0;

  Answer lookup(UnixTime now, const TxtOutcome& txt, const FetchOutcome& fetch_result,
                bool strict = false, const TlsrptOutcome& tlsrpt = std::nullopt) {
    if (is_fresh(entry, now)) return answer_from_entry(*entry, now, strict);
    FetchOutcome fetch;
    if (should_fetch(entry, txt, now, kTiming)) {
      ++fetches;
      fetch = fetch_result;
    }
    Decision decision = decide(entry, txt, tlsrpt, fetch, now, kTiming);
    last_warnings = decision.warnings;
    entry = decision.entry;
    return apply_strict(decision.answer, decision.entry, strict);
  }
  std::vector<std::string> last_warnings;
};

TEST(Decide, STS34_unknown_domain_fetches_and_caches_policy) {
  Lookups run;
  Answer answer = run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce)));
  EXPECT_EQ(answer.kind, AnswerKind::policy);
  EXPECT_EQ(answer.mode, Mode::enforce);
  EXPECT_EQ(answer.id, "abc");
  EXPECT_EQ(run.fetches, 1);
  ASSERT_TRUE(run.entry && run.entry->policy);
  EXPECT_EQ(run.entry->policy->expires_at, kT0 + 86400);
  EXPECT_EQ(run.entry->policy->fetched_at, kT0);
}

TEST(Decide, STS17_fresh_cache_answers_without_dns) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce)));
  EXPECT_TRUE(is_fresh(run.entry, kT0 + 300));
  // Even if DNS would now say something else, a fresh entry answers by itself.
  Answer answer = run.lookup(kT0 + 300, txt_id("zzz"), fetched(make_policy(Mode::none)));
  EXPECT_EQ(answer.mode, Mode::enforce);
  EXPECT_EQ(run.fetches, 1);
}

TEST(Decide, STS35_same_id_after_recheck_does_not_fetch) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, 7 * 86400)));
  UnixTime later = kT0 + kTiming.txt_max_ttl;  // STS-27: re-checked daily
  EXPECT_FALSE(is_fresh(run.entry, later));
  Answer answer = run.lookup(later, txt_id("abc"), fetched(make_policy(Mode::none)));
  EXPECT_EQ(answer.mode, Mode::enforce);
  EXPECT_EQ(run.fetches, 1);
  EXPECT_EQ(run.entry->next_check, later + kTiming.txt_max_ttl);
}

TEST(Decide, STS27_same_id_policy_is_fetched_again_from_half_its_lifetime) {
  constexpr std::int64_t kWeek = 7 * 86400;
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, kWeek)));
  EXPECT_EQ(run.entry->next_check, kT0 + 86400);
  for (UnixTime day = 1; day <= 3; ++day) {
    run.lookup(kT0 + day * 86400, txt_id("abc"), fetched(make_policy(Mode::enforce, kWeek)));
  }
  EXPECT_EQ(run.fetches, 1) << "the TXT id alone is re-checked daily";
  EXPECT_EQ(run.entry->next_check, kT0 + kWeek / 2) << "the next check lands on the refresh";
  Answer answer = run.lookup(kT0 + kWeek / 2, txt_id("abc"),
                             fetched(make_policy(Mode::enforce, kWeek, {"mx2.example.com"})));
  EXPECT_EQ(run.fetches, 2);
  EXPECT_EQ(answer.mx, std::vector<std::string>{"mx2.example.com"});
  EXPECT_EQ(run.entry->policy->expires_at, kT0 + kWeek / 2 + kWeek) << "renewed";
  // A fetch blocked at the old expiry no longer matters: the renewed policy holds.
  answer = run.lookup(kT0 + kWeek + 3600, txt_id("abc"), fetch_error());
  EXPECT_EQ(answer.mode, Mode::enforce);
  EXPECT_EQ(answer.mx, std::vector<std::string>{"mx2.example.com"});
  EXPECT_EQ(run.entry->policy->expires_at, kT0 + kWeek / 2 + kWeek);
}

TEST(Decide, STS27_refresh_starts_txt_max_ttl_before_expiry_when_that_is_earlier) {
  constexpr std::int64_t kLifetime = 3 * 86400 / 2;  // 36 h: a day before expiry is at 12 h
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, kLifetime)));
  EXPECT_EQ(run.entry->next_check, kT0 + kLifetime - kTiming.txt_max_ttl);
  run.lookup(kT0 + 12 * 3600, txt_id("abc"), fetched(make_policy(Mode::enforce, kLifetime)));
  EXPECT_EQ(run.fetches, 2);
  EXPECT_EQ(run.entry->policy->fetched_at, kT0 + 12 * 3600);
}

TEST(Decide, STS27_policy_of_a_day_or_less_is_fetched_again_only_at_expiry) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, 86400)));
  EXPECT_EQ(run.entry->next_check, kT0 + 86400);
}

TEST(Decide, STS28_failed_proactive_refresh_warns_keeps_policy_and_backs_off) {
  constexpr std::int64_t kWeek = 7 * 86400;
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, kWeek)));
  const UnixTime refresh = kT0 + kWeek / 2;
  Answer answer = run.lookup(refresh, txt_id("abc"), fetch_error());
  EXPECT_EQ(answer.mode, Mode::enforce);
  EXPECT_EQ(answer.id, "abc");
  ASSERT_EQ(run.last_warnings.size(), 1u) << "surfaced days before expiry";
  EXPECT_NE(run.last_warnings[0].find("keeping the cached enforce policy"), std::string::npos);
  EXPECT_EQ(run.entry->failed_id, "abc");
  EXPECT_EQ(run.entry->policy->expires_at, kT0 + kWeek);
  // STS-23: no second fetch of the id within five minutes, and no warning for the pause.
  for (UnixTime t = refresh + 60; t < refresh + 300; t += 60) {
    answer = run.lookup(t, txt_id("abc"), fetch_error());
    EXPECT_EQ(answer.mode, Mode::enforce);
    EXPECT_TRUE(run.last_warnings.empty());
  }
  EXPECT_EQ(run.fetches, 2);
  EXPECT_EQ(run.entry->failed_id, "abc") << "the backoff is not forgotten while it runs";
  // Then the refresh is tried again, and a success renews the policy.
  answer = run.lookup(refresh + 300, txt_id("abc"), fetched(make_policy(Mode::enforce, kWeek)));
  EXPECT_EQ(run.fetches, 3);
  EXPECT_EQ(run.entry->failed_id, "");
  EXPECT_EQ(run.entry->policy->expires_at, refresh + 300 + kWeek);
}

TEST(Decide, STS35_new_id_fetches_new_policy) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, 7 * 86400)));
  Answer answer = run.lookup(kT0 + 86400, txt_id("def"),
                             fetched(make_policy(Mode::enforce, 86400, {"mx9.example.com"})));
  EXPECT_EQ(run.fetches, 2);
  EXPECT_EQ(answer.id, "def");
  EXPECT_EQ(answer.mx, std::vector<std::string>{"mx9.example.com"});
}

TEST(Decide, STS34_expired_policy_same_id_is_fetched_again) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, 600)));
  EXPECT_EQ(run.entry->next_check, kT0 + 600);  // never later than expiry
  Answer answer = run.lookup(kT0 + 700, txt_id("abc"), fetched(make_policy(Mode::testing, 600)));
  EXPECT_EQ(run.fetches, 2);
  EXPECT_EQ(answer.mode, Mode::testing);
}

TEST(Decide, STS26_fetch_fails_with_unexpired_cache_keeps_cached_policy) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, 7 * 86400)));
  Answer answer = run.lookup(kT0 + 86400, txt_id("new"), fetch_error());
  EXPECT_EQ(answer.kind, AnswerKind::policy);
  EXPECT_EQ(answer.mode, Mode::enforce);
  EXPECT_EQ(answer.id, "abc");
  EXPECT_FALSE(run.last_warnings.empty()) << "STS-28: the admin must hear about it";
}

TEST(Decide, STS26_new_id_with_invalid_policy_keeps_cached_policy) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, 7 * 86400)));
  Answer answer = run.lookup(kT0 + 86400, txt_id("new"), fetch_error(ErrorCategory::policy_syntax));
  EXPECT_EQ(answer.mode, Mode::enforce);
  EXPECT_EQ(answer.id, "abc");
}

TEST(Decide, STS07_vanished_txt_keeps_cached_policy_until_expiry) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, 3 * 86400)));
  for (ErrorCategory gone :
       {ErrorCategory::no_record, ErrorCategory::multiple_records, ErrorCategory::record_syntax}) {
    Lookups copy = run;
    Answer answer = copy.lookup(kT0 + 86400, txt_error(gone), std::nullopt);
    EXPECT_EQ(answer.mode, Mode::enforce) << to_string(gone);
    EXPECT_EQ(copy.fetches, 1);
    // After expiry with the record still gone: no policy (STS-48).
    UnixTime after = kT0 + 3 * 86400 + 1;
    Answer later = copy.lookup(after, txt_error(gone), std::nullopt);
    EXPECT_EQ(later.kind, AnswerKind::no_policy) << to_string(gone);
    EXPECT_FALSE(copy.entry->policy.has_value());
  }
}

TEST(Decide, STS07_dns_failure_keeps_cached_policy_and_warns) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, 3 * 86400)));
  Answer answer = run.lookup(kT0 + 86400, txt_error(ErrorCategory::dns_temporary), std::nullopt);
  EXPECT_EQ(answer.mode, Mode::enforce);
  EXPECT_FALSE(run.last_warnings.empty());
  EXPECT_EQ(run.entry->next_check, kT0 + 86400 + kTiming.dns_retry);
}

TEST(Decide, STS28_no_warning_for_cached_mode_none) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::none, 3 * 86400, {})));
  run.lookup(kT0 + 86400, txt_id("new"), fetch_error());
  EXPECT_TRUE(run.last_warnings.empty());
}

TEST(Decide, STS25_fetch_fails_with_nothing_cached_means_no_policy) {
  Lookups run;
  Answer answer = run.lookup(kT0, txt_id("abc"), fetch_error());
  EXPECT_EQ(answer.kind, AnswerKind::no_policy);
  EXPECT_TRUE(run.entry->unavailable);
}

TEST(Decide, STS25_strict_mode_answers_fail_instead) {
  Lookups run;
  Answer answer = run.lookup(kT0, txt_id("abc"), fetch_error(), /*strict=*/true);
  EXPECT_EQ(answer.kind, AnswerKind::fail);
  // And the cached answer during backoff agrees.
  Answer cached = answer_from_entry(*run.entry, kT0 + 1, /*strict=*/true);
  EXPECT_EQ(cached.kind, AnswerKind::fail);
  EXPECT_EQ(answer_from_entry(*run.entry, kT0 + 1, false).kind, AnswerKind::no_policy);
}

TEST(Decide, STS25_expired_cache_and_fetch_failure_means_no_policy) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, 600)));
  Answer answer = run.lookup(kT0 + 601, txt_id("abc"), fetch_error());
  EXPECT_EQ(answer.kind, AnswerKind::no_policy);
  EXPECT_TRUE(run.entry->policy.has_value()) << "kept for diagnosis";
}

TEST(Decide, STS23_failed_fetch_backs_off_at_least_five_minutes_per_id) {
  Lookups run;
  for (UnixTime t = kT0; t < kT0 + 4 * 60; t += 10) {
    run.lookup(t, txt_id("abc"), fetch_error());
  }
  EXPECT_EQ(run.fetches, 1);
  EXPECT_GE(run.entry->retry_fetch_at, kT0 + 300);
  // A new id may be fetched at once.
  Answer answer = run.lookup(kT0 + 4 * 60 + kTiming.dns_retry, txt_id("def"),
                             fetched(make_policy(Mode::testing)));
  EXPECT_EQ(run.fetches, 2);
  EXPECT_EQ(answer.mode, Mode::testing);
}

TEST(Decide, STS23_backoff_survives_a_record_missing_for_a_while) {
  // A flapping zone: the record of the failed id vanishes and comes back within five minutes.
  // The negative entry would allow a DNS check after a minute (negative_ttl may be 60).
  for (ErrorCategory gone :
       {ErrorCategory::no_record, ErrorCategory::multiple_records, ErrorCategory::record_syntax}) {
    Lookups run;
    run.lookup(kT0, txt_id("abc"), fetch_error());
    run.lookup(kT0 + 70, txt_error(gone), std::nullopt);
    EXPECT_EQ(run.entry->failed_id, "abc") << to_string(gone);
    EXPECT_EQ(run.entry->retry_fetch_at, kT0 + kTiming.fetch_backoff_min) << to_string(gone);
    run.entry->next_check = kT0 + 140;  // as with negative_ttl = 60
    Answer answer = run.lookup(kT0 + 140, txt_id("abc"), fetched(make_policy(Mode::enforce)));
    EXPECT_EQ(run.fetches, 1) << to_string(gone);
    EXPECT_EQ(answer.kind, AnswerKind::no_policy) << to_string(gone);
    // Once the backoff has run out, the id is fetched again.
    run.entry->next_check = kT0 + 300;
    answer = run.lookup(kT0 + 300, txt_id("abc"), fetched(make_policy(Mode::enforce)));
    EXPECT_EQ(run.fetches, 2) << to_string(gone);
    EXPECT_EQ(answer.mode, Mode::enforce) << to_string(gone);
  }
}

TEST(Decide, STS23_finished_backoff_is_forgotten_when_the_record_goes) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetch_error());
  run.lookup(kT0 + 400, txt_error(ErrorCategory::no_record), std::nullopt);
  EXPECT_EQ(run.entry->failed_id, "");
  EXPECT_EQ(run.entry->failures, 0);
  EXPECT_EQ(run.entry->retry_fetch_at, 0);
}

TEST(Decide, STS23_backoff_doubles_and_is_capped) {
  Lookups run;
  UnixTime now = kT0;
  std::vector<UnixTime> pauses;
  for (int i = 0; i < 12; ++i) {
    run.lookup(now, txt_id("abc"), fetch_error());
    pauses.push_back(run.entry->retry_fetch_at - now);
    now = run.entry->retry_fetch_at;
  }
  EXPECT_EQ(pauses[0], kTiming.fetch_backoff_min);
  EXPECT_EQ(pauses[1], 2 * kTiming.fetch_backoff_min);
  EXPECT_EQ(pauses.back(), kTiming.fetch_backoff_max);
  EXPECT_EQ(run.fetches, 12);
}

TEST(Decide, STS48_new_id_with_mode_none_replaces_enforce) {
  Lookups run;
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, 30 * 86400)));
  Answer answer =
      run.lookup(kT0 + 86400, txt_id("optout"), fetched(make_policy(Mode::none, 86400, {})));
  EXPECT_EQ(answer.kind, AnswerKind::policy);
  EXPECT_EQ(answer.mode, Mode::none);
}

TEST(Decide, STS06_no_record_is_cached_negatively_for_a_bounded_time) {
  Lookups run;
  Answer answer = run.lookup(kT0, txt_error(ErrorCategory::no_record), std::nullopt);
  EXPECT_EQ(answer.kind, AnswerKind::no_policy);
  EXPECT_EQ(run.fetches, 0);
  EXPECT_EQ(run.entry->next_check, kT0 + kTiming.negative_ttl);
  EXPECT_FALSE(run.entry->unavailable);
  // strict mode does not turn "no MTA-STS" into fail
  EXPECT_EQ(answer_from_entry(*run.entry, kT0 + 1, true).kind, AnswerKind::no_policy);
}

TEST(Decide, STS06_two_records_means_no_policy_and_no_fetch) {
  Lookups run;
  Answer answer = run.lookup(kT0, txt_error(ErrorCategory::multiple_records), std::nullopt);
  EXPECT_EQ(answer.kind, AnswerKind::no_policy);
  EXPECT_EQ(run.fetches, 0);
}

TEST(Decide, dns_temporary_failure_without_cache_is_unavailable_and_retried_soon) {
  Lookups run;
  Answer answer = run.lookup(kT0, txt_error(ErrorCategory::dns_temporary), std::nullopt);
  EXPECT_EQ(answer.kind, AnswerKind::no_policy);
  EXPECT_TRUE(run.entry->unavailable);
  EXPECT_EQ(run.entry->next_check, kT0 + kTiming.dns_retry);
  EXPECT_EQ(apply_strict(answer, *run.entry, true).kind, AnswerKind::fail);
}

TEST(Decide, rfc_open_point_6_8_max_age_zero_applies_once) {
  Lookups run;
  Answer answer = run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, 0)));
  EXPECT_EQ(answer.mode, Mode::enforce);
  EXPECT_FALSE(is_fresh(run.entry, kT0));
  EXPECT_EQ(answer_from_entry(*run.entry, kT0, false).kind, AnswerKind::no_policy);
}

TEST(Decide, RPT01_tlsrpt_record_is_stored_and_kept_on_temporary_failure) {
  Lookups run;
  TlsrptOutcome record = TlsrptRecord{{"mailto:a,b@example.com", "https://r.example/v1"}};
  run.lookup(kT0, txt_id("abc"), fetched(make_policy(Mode::enforce, 600)), false, record);
  EXPECT_EQ(run.entry->report, "mailto:a%2Cb@example.com,https://r.example/v1");
  TlsrptOutcome temporary =
      std::expected<TlsrptRecord, Error>(std::unexpected(Error{ErrorCategory::dns_temporary, "x"}));
  run.lookup(kT0 + 700, txt_id("abc"), fetched(make_policy(Mode::enforce, 600)), false, temporary);
  EXPECT_FALSE(run.entry->report.empty());
  TlsrptOutcome gone =
      std::expected<TlsrptRecord, Error>(std::unexpected(Error{ErrorCategory::no_record, "x"}));
  run.lookup(kT0 + 1400, txt_id("abc"), fetched(make_policy(Mode::enforce, 600)), false, gone);
  EXPECT_TRUE(run.entry->report.empty());
}

// RFC 8461 §8.1 and §3.1: the id is the signal of a new policy, and a sender keeps a cached
// policy only until the TXT record's TTL has passed before it looks for a new id.
struct TtlLookups {
  std::optional<CacheEntry> entry;
  int fetches = 0;
  Timing timing{};  // the shipped defaults: txt_min_ttl 1 s, txt_max_ttl 1 h

  Answer lookup(UnixTime now, const TxtOutcome& txt, std::optional<std::uint32_t> ttl,
                const FetchOutcome& fetch_result = std::nullopt) {
    if (is_fresh(entry, now)) return answer_from_entry(*entry, now, false);
    FetchOutcome fetch;
    if (should_fetch(entry, txt, now, timing)) {
      ++fetches;
      fetch = fetch_result;
    }
    Decision decision = decide(entry, txt, std::nullopt, fetch, now, timing, ttl);
    entry = decision.entry;
    return decision.answer;
  }
};

TEST(DecideTxtTtl, RFC8461_8_1_id_is_current_for_the_txt_ttl) {
  TtlLookups run;
  run.lookup(kT0, txt_id("v1"), 300, fetched(make_policy(Mode::enforce, 7 * 86400)));
  EXPECT_EQ(run.entry->txt_expires_at, kT0 + 300);
  EXPECT_EQ(run.entry->next_check, kT0 + 300);
  EXPECT_TRUE(is_fresh(run.entry, kT0 + 299));
  EXPECT_FALSE(is_fresh(run.entry, kT0 + 300));
}

struct TtlRow {
  const char* name;
  std::optional<std::uint32_t> ttl;
  std::int64_t after;
};

TEST(DecideTxtTtl, ttl_is_taken_within_min_and_max) {
  const TtlRow rows[] = {
      {"TTL 0 -> the 1 s floor: at most one query a second", 0, 1},
      {"TTL 1", 1, 1},
      {"TTL 59", 59, 59},
      {"TTL 3600 = txt_max_ttl", 3600, 3600},
      {"TTL a day -> txt_max_ttl", 86400, 3600},
      {"TTL unknown -> txt_max_ttl", std::nullopt, 3600},
  };
  for (const TtlRow& row : rows) {
    TtlLookups run;
    run.lookup(kT0, txt_id("v1"), row.ttl, fetched(make_policy(Mode::enforce, 7 * 86400)));
    EXPECT_EQ(run.entry->next_check, kT0 + row.after) << row.name;
    EXPECT_EQ(txt_recheck_after(row.ttl, run.timing), row.after) << row.name;
  }
  Timing floor5;
  floor5.txt_min_ttl = 5;
  EXPECT_EQ(txt_recheck_after(0, floor5), 5);
  Timing odd;  // a floor above the cap is refused by the config; the cap wins here
  odd.txt_min_ttl = 100;
  odd.txt_max_ttl = 10;
  EXPECT_EQ(txt_recheck_after(0, odd), 10);
}

TEST(DecideTxtTtl, STS35_same_id_after_the_ttl_no_fetch_and_the_expiry_moves_on) {
  TtlLookups run;
  run.lookup(kT0, txt_id("v1"), 60, fetched(make_policy(Mode::enforce, 7 * 86400)));
  for (UnixTime t = kT0 + 60; t < kT0 + 600; t += 60) {
    Answer answer = run.lookup(t, txt_id("v1"), 60, fetched(make_policy(Mode::none)));
    EXPECT_EQ(answer.mode, Mode::enforce);
    EXPECT_EQ(run.entry->txt_expires_at, t + 60);
    EXPECT_EQ(run.entry->next_check, t + 60);
  }
  EXPECT_EQ(run.fetches, 1);
}

TEST(DecideTxtTtl, STS34_new_id_after_the_ttl_fetches_the_new_mx_list) {
  TtlLookups run;
  run.lookup(kT0, txt_id("v1"), 5, fetched(make_policy(Mode::enforce, 7 * 86400)));
  // Before the TTL the old policy answers with no DNS at all.
  Answer answer =
      run.lookup(kT0 + 4, txt_id("v2"), 5,
                 fetched(make_policy(Mode::enforce, 7 * 86400, {"new-mx.example.com"})));
  EXPECT_EQ(answer.mx, (std::vector<std::string>{"mx1.example.com", "*.example.net"}));
  answer = run.lookup(kT0 + 5, txt_id("v2"), 5,
                      fetched(make_policy(Mode::enforce, 7 * 86400, {"new-mx.example.com"})));
  EXPECT_EQ(run.fetches, 2);
  EXPECT_EQ(answer.mx, std::vector<std::string>{"new-mx.example.com"});
  EXPECT_EQ(run.entry->policy->id, "v2");
}

TEST(DecideTxtTtl, STS48_new_id_with_mode_none_and_testing_to_enforce) {
  TtlLookups run;
  run.lookup(kT0, txt_id("v1"), 5, fetched(make_policy(Mode::enforce, 7 * 86400)));
  Answer answer = run.lookup(kT0 + 5, txt_id("v2"), 5, fetched(make_policy(Mode::none, 86400, {})));
  EXPECT_EQ(answer.kind, AnswerKind::policy);
  EXPECT_EQ(answer.mode, Mode::none);

  TtlLookups testing;
  testing.lookup(kT0, txt_id("t1"), 5, fetched(make_policy(Mode::testing, 7 * 86400)));
  answer = testing.lookup(kT0 + 5, txt_id("e1"), 5, fetched(make_policy(Mode::enforce)));
  EXPECT_EQ(answer.mode, Mode::enforce);
}

TEST(DecideTxtTtl, new_id_whose_policy_cannot_be_had_keeps_the_cached_one) {
  TtlLookups run;
  run.lookup(kT0, txt_id("v1"), 5, fetched(make_policy(Mode::enforce, 7 * 86400)));
  Answer answer = run.lookup(kT0 + 5, txt_id("v2"), 5, fetch_error());
  EXPECT_EQ(answer.mode, Mode::enforce);
  EXPECT_EQ(answer.id, "v1");
  EXPECT_FALSE(run.entry->last_error.empty());
}

struct LapseRow {
  const char* name;
  TxtOutcome txt;
};

TEST(DecideTxtTtl, STS07_txt_gone_ambiguous_or_failing_keeps_the_policy_retries_after_dns_retry) {
  const LapseRow rows[] = {
      {"TXT removed", txt_error(ErrorCategory::no_record)},
      {"TXT ambiguous", txt_error(ErrorCategory::multiple_records)},
      {"TXT syntax", txt_error(ErrorCategory::record_syntax)},
      {"SERVFAIL", txt_error(ErrorCategory::dns_temporary)},
      {"bogus", txt_error(ErrorCategory::dns_bogus)},
  };
  for (const LapseRow& row : rows) {
    TtlLookups run;
    run.lookup(kT0, txt_id("v1"), 5, fetched(make_policy(Mode::enforce, 7 * 86400)));
    Answer answer = run.lookup(kT0 + 5, row.txt, std::nullopt);
    EXPECT_EQ(answer.kind, AnswerKind::policy) << row.name;
    EXPECT_EQ(answer.mode, Mode::enforce) << row.name;
    EXPECT_EQ(run.entry->next_check, kT0 + 5 + run.timing.dns_retry) << row.name;
    EXPECT_TRUE(serves_while_revalidating(run.entry, kT0 + 5 + run.timing.dns_retry)) << row.name;
  }
}

TEST(DecideTxtTtl, serves_while_revalidating_only_an_unexpired_policy) {
  TtlLookups run;
  EXPECT_FALSE(serves_while_revalidating(run.entry, kT0));
  run.lookup(kT0, txt_id("v1"), 5, fetched(make_policy(Mode::enforce, 600)));
  EXPECT_TRUE(serves_while_revalidating(run.entry, kT0 + 5));
  EXPECT_TRUE(serves_while_revalidating(run.entry, kT0 + 599));
  EXPECT_FALSE(serves_while_revalidating(run.entry, kT0 + 600));
  TtlLookups negative;
  negative.lookup(kT0, txt_error(ErrorCategory::no_record), std::nullopt);
  EXPECT_FALSE(serves_while_revalidating(negative.entry, kT0 + 3600));
  TtlLookups failed;
  failed.lookup(kT0, txt_id("v1"), 5, fetch_error());
  EXPECT_FALSE(serves_while_revalidating(failed.entry, kT0 + 60));
}

TEST(Decide, caller_that_skips_a_needed_fetch_gets_a_failure_not_a_policy) {
  Decision decision = decide(std::nullopt, txt_id("abc"), std::nullopt, std::nullopt, kT0, kTiming);
  EXPECT_EQ(decision.answer.kind, AnswerKind::no_policy);
  EXPECT_TRUE(decision.entry.unavailable);
}

TEST(Decide, format_rua_escapes_commas_and_percent) {
  EXPECT_EQ(format_rua({"mailto:x@example.com"}), "mailto:x@example.com");
  EXPECT_EQ(format_rua({"a,b", "c%d"}), "a%2Cb,c%25d");
  EXPECT_EQ(format_rua({}), "");
}

}  // namespace
}  // namespace mtasts
