// The daemon's proactive refresh plan (RFC 8461 §3.3; STS-23, STS-27, STS-28): table-driven,
// each row names the rule it proves. Times are offsets from kT0.
#include "core/refresh_plan.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace mtasts {
namespace {

constexpr UnixTime kT0 = 1'700'000'000;
constexpr std::int64_t kDay = 86400;
// The id re-checked daily when DNS gives no TTL (these rows predate the TXT TTL), dns_retry 60 s,
// fetch backoff 300 s .. 6 h.
Timing daily_timing() {
  Timing timing;
  timing.txt_max_ttl = 86400;
  return timing;
}
const Timing kTiming = daily_timing();
const RefreshTiming
    kRefresh{};  // ahead 600 s, retry_max 1 h, drop unused after 30 d, TTL window 1 d

// A policy fetched at `fetched` with `max_age`, checked at `checked`, due again at `next`.
CacheEntry entry_with_policy(Mode mode, std::int64_t fetched, std::int64_t max_age,
                             std::int64_t checked, std::int64_t next) {
  CacheEntry entry;
  entry.policy = CachedPolicy{Policy{mode, max_age, {"mx.example.net"}}, "v1", kT0 + fetched,
                              kT0 + fetched + max_age, "body"};
  entry.checked_at = kT0 + checked;
  entry.next_check = kT0 + next;
  return entry;
}

CacheEntry week_policy() {
  // Fetched at T0 with max_age 7 d: refresh_from = T0 + 3.5 d; TXT re-check due at T0 + 1 d.
  return entry_with_policy(Mode::enforce, 0, 7 * kDay, 0, kDay);
}

struct Row {
  const char* name;
  CacheEntry entry;
  RefreshState state;
  std::int64_t now;  // offset from kT0
  double draw;
  RefreshTiming refresh;
  RefreshPlan expected;  // `at` as an offset from kT0 (0 stays 0 for idle)
};

Row row(const char* name, CacheEntry entry, RefreshState state, std::int64_t now, double draw,
        RefreshTiming refresh, RefreshPlan expected) {
  return Row{name, std::move(entry), state, now, draw, refresh, expected};
}

RefreshState used_at(std::int64_t offset) {
  RefreshState state;
  state.last_used = kT0 + offset;
  return state;
}

std::vector<Row> rows() {
  std::vector<Row> out;
  out.push_back(row("STS-27 TXT re-check runs `ahead` before the entry goes stale (draw 0)",
                    week_policy(), used_at(0), 10, 0.0, kRefresh,
                    {RefreshAction::refresh, kDay - 600}));
  out.push_back(row("jitter: the draw spreads it over the earlier half of the window",
                    week_policy(), used_at(0), 10, 0.5, kRefresh,
                    {RefreshAction::refresh, kDay - 600 + 150}));
  out.push_back(row("jitter: a draw near 1 stays half a window early", week_policy(), used_at(0),
                    10, 0.9999, kRefresh, {RefreshAction::refresh, kDay - 600 + 299}));
  out.push_back(row("jitter: draws outside [0,1) are clamped", week_policy(), used_at(0), 10, 7.0,
                    kRefresh, {RefreshAction::refresh, kDay - 300}));
  {
    RefreshTiming no_ahead = kRefresh;
    no_ahead.ahead = 0;
    out.push_back(row("refresh_ahead 0: exactly when the entry goes stale", week_policy(),
                      used_at(0), 10, 0.5, no_ahead, {RefreshAction::refresh, kDay}));
  }
  // Checked at 3 d: next_check is refresh_from (3.5 d), when the same-id fetch becomes due.
  out.push_back(row("STS-27 same-id fetch cannot start before refresh_from: no lead",
                    entry_with_policy(Mode::enforce, 0, 7 * kDay, 3 * kDay, 3 * kDay + kDay / 2),
                    used_at(3 * kDay), 3 * kDay, 0.0, kRefresh,
                    {RefreshAction::refresh, 3 * kDay + kDay / 2}));
  // A short policy (max_age 1 h < txt_max_ttl): refresh_from is before the fetch, so an
  // early refresh does fetch; the lead is a quarter of the hour at most.
  out.push_back(row("STS-27 short max_age: early refresh fetches, lead capped at a quarter",
                    entry_with_policy(Mode::testing, 0, 3600, 0, 3600), used_at(0), 10, 0.0,
                    kRefresh, {RefreshAction::refresh, 3600 - 600}));
  out.push_back(row("short max_age and a short lead window",
                    entry_with_policy(Mode::testing, 0, 1200, 0, 1200), used_at(0), 10, 0.0,
                    kRefresh, {RefreshAction::refresh, 1200 - 300}));
  {
    // A fetch of the same id failed at 3.5 d: backoff 300 s; decide() re-checks DNS after 60 s.
    CacheEntry entry = entry_with_policy(Mode::enforce, 0, 7 * kDay, 3 * kDay + kDay / 2,
                                         3 * kDay + kDay / 2 + 60);
    entry.failed_id = "v1";
    entry.failures = 1;
    entry.retry_fetch_at = kT0 + 3 * kDay + kDay / 2 + 300;
    entry.last_error = "fetch_failed: HTTP 500";
    RefreshState state = used_at(3 * kDay);
    state.last_attempt = kT0 + 3 * kDay + kDay / 2;
    state.failures = 1;
    out.push_back(row("STS-23 a failed fetch is retried when its backoff ends, not before", entry,
                      state, 3 * kDay + kDay / 2, 0.0, kRefresh,
                      {RefreshAction::refresh, 3 * kDay + kDay / 2 + 300}));
  }
  {
    // DNS could not tell at 2 d (keep_cached: next_check 60 s later); third failure in a row.
    CacheEntry entry = entry_with_policy(Mode::enforce, 0, 7 * kDay, 2 * kDay, 2 * kDay + 60);
    entry.last_error = "dns_temporary: timeout";
    RefreshState state = used_at(2 * kDay);
    state.last_attempt = kT0 + 2 * kDay;
    state.failures = 3;
    out.push_back(row("failures back off: dns_retry doubling (3rd: 240 s)", entry, state, 2 * kDay,
                      0.0, kRefresh, {RefreshAction::refresh, 2 * kDay + 240}));
    state.failures = 30;
    out.push_back(row("failures back off at most refresh_retry_max", entry, state, 2 * kDay, 0.0,
                      kRefresh, {RefreshAction::refresh, 2 * kDay + 3600}));
  }
  {
    // max_age 0 (rfc-checklist §6.8): stale at once; without the gap it would loop.
    CacheEntry entry = entry_with_policy(Mode::enforce, 0, 0, 0, 0);
    RefreshState state = used_at(0);
    state.last_attempt = kT0;
    out.push_back(row("never twice within dns_retry (max_age 0)", entry, state, 0, 0.0, kRefresh,
                      {RefreshAction::refresh, 60}));
  }
  {
    // The cached policy expired while its fetch kept failing: still retried (it may recover).
    CacheEntry entry = entry_with_policy(Mode::enforce, 0, kDay, kDay + 10, kDay + 70);
    entry.unavailable = true;
    entry.last_error = "fetch_failed: connection refused";
    out.push_back(row("an expired, unavailable policy is still refreshed", entry, used_at(kDay),
                      kDay + 10, 0.0, kRefresh, {RefreshAction::refresh, kDay + 70 - 15}));
  }
  {
    CacheEntry negative;
    negative.checked_at = kT0;
    negative.next_check = kT0 + 3600;
    out.push_back(row("no policy (no MTA-STS): left to the front-ends", negative, used_at(0), 10,
                      0.0, kRefresh, {RefreshAction::idle, 0}));
    out.push_back(row("no policy and unused for drop_unused_after: dropped", negative, used_at(0),
                      30 * kDay, 0.0, kRefresh, {RefreshAction::drop, 30 * kDay}));
    CacheEntry unavailable = negative;
    unavailable.unavailable = true;
    out.push_back(row("a first fetch that failed: left to the front-ends", unavailable, used_at(0),
                      10, 0.0, kRefresh, {RefreshAction::idle, 0}));
  }
  out.push_back(row("unused with an unexpired policy: no refresh, dropped once it expires",
                    entry_with_policy(Mode::enforce, 0, 365 * kDay, 0, kDay), used_at(0), 30 * kDay,
                    0.0, kRefresh, {RefreshAction::idle, 365 * kDay}));
  out.push_back(row("unused and its policy expired: dropped", week_policy(), used_at(0), 30 * kDay,
                    0.0, kRefresh, {RefreshAction::drop, 30 * kDay}));
  out.push_back(row("used just under drop_unused_after ago: still refreshed", week_policy(),
                    used_at(1), 30 * kDay, 0.0, kRefresh, {RefreshAction::refresh, kDay - 600}));
  {
    // RFC 8461 §8.1: due because the TXT answer's TTL (300 s) runs out at T0 + 1 d + 300.
    CacheEntry entry = entry_with_policy(Mode::enforce, 0, 7 * kDay, kDay, kDay + 300);
    entry.txt_expires_at = entry.next_check;
    out.push_back(row("TXT TTL re-check of a domain in use: just after the TTL, no lead", entry,
                      used_at(kDay - 200), kDay + 10, 0.9, kRefresh,
                      {RefreshAction::refresh, kDay + 301}));
    out.push_back(row("TXT TTL re-check: used just under ttl_window ago", entry, used_at(11),
                      kDay + 10, 0.0, kRefresh, {RefreshAction::refresh, kDay + 301}));
    out.push_back(row("TXT TTL of a domain unused for ttl_window: waits for the fetch", entry,
                      used_at(10), kDay + 10, 0.0, kRefresh,
                      {RefreshAction::refresh, 3 * kDay + kDay / 2}));
    RefreshTiming no_window = kRefresh;
    no_window.ttl_window = 0;
    out.push_back(row("refresh_ttl_window 0: TXT TTLs are left to lookups", entry, used_at(kDay),
                      kDay + 10, 0.0, no_window, {RefreshAction::refresh, 3 * kDay + kDay / 2}));
    RefreshState again = used_at(kDay);
    again.last_attempt = kT0 + kDay;
    CacheEntry short_ttl = entry_with_policy(Mode::enforce, 0, 7 * kDay, kDay, kDay + 1);
    short_ttl.txt_expires_at = short_ttl.next_check;
    out.push_back(row("TXT TTL 1 s: still never twice within dns_retry", short_ttl, again, kDay,
                      0.0, kRefresh, {RefreshAction::refresh, kDay + 60}));
    CacheEntry refresh_due =
        entry_with_policy(Mode::enforce, 0, 7 * kDay, 3 * kDay + 43000, 3 * kDay + kDay / 2);
    refresh_due.txt_expires_at = kT0 + 3 * kDay + kDay / 2 + 100;
    out.push_back(row("TTL beyond refresh_from: the same-id fetch is what is due", refresh_due,
                      used_at(3 * kDay), 3 * kDay + 43000, 0.0, kRefresh,
                      {RefreshAction::refresh, 3 * kDay + kDay / 2}));
  }
  {
    RefreshTiming never = kRefresh;
    never.drop_unused_after = 0;
    out.push_back(row("drop_unused_after 0: never dropped", week_policy(), used_at(0), 400 * kDay,
                      0.0, never, {RefreshAction::refresh, kDay - 600}));
  }
  return out;
}

TEST(RefreshPlan, Table) {
  for (const Row& row : rows()) {
    SCOPED_TRACE(row.name);
    RefreshPlan plan =
        plan_refresh(row.entry, row.state, kT0 + row.now, kTiming, row.refresh, row.draw);
    RefreshPlan expected = row.expected;
    if (expected.action != RefreshAction::idle || expected.at != 0) expected.at += kT0;
    EXPECT_EQ(plan.action, expected.action);
    EXPECT_EQ(plan.at - kT0, expected.at - kT0);
  }
}

TEST(RefreshPlan, RetryPauseDoublesFromDnsRetryUpToTheCap) {
  const struct {
    int failures;
    std::int64_t pause;
  } table[] = {{0, 60}, {1, 60}, {2, 120}, {3, 240}, {6, 1920}, {7, 3600}, {1000, 3600}};
  for (const auto& row : table) {
    EXPECT_EQ(refresh_retry_pause(row.failures, kTiming, kRefresh), row.pause) << row.failures;
  }
  RefreshTiming small = kRefresh;
  small.retry_max = 30;  // below dns_retry: the cap wins
  EXPECT_EQ(refresh_retry_pause(1, kTiming, small), 30);
}

TEST(RefreshPlan, LastUseSeenInTheCache) {
  CacheEntry entry = week_policy();
  RefreshState state;
  state.last_used = kT0 - 100;
  state.own_check = kT0;  // the scheduler's own refresh wrote checked_at = T0: no use
  EXPECT_EQ(observed_last_use(entry, state), kT0 - 100);
  state.own_check = kT0 - 50;  // someone else checked DNS at T0: a use
  EXPECT_EQ(observed_last_use(entry, state), kT0);
  state.last_used = kT0 + 500;  // a later use the daemon saw itself is kept
  EXPECT_EQ(observed_last_use(entry, state), kT0 + 500);
}

TEST(RefreshPlan, FailuresAndWhenTheyMatter) {
  CacheEntry entry = week_policy();
  EXPECT_FALSE(refresh_failed(entry));
  entry.last_error = "fetch_failed: HTTP 500";
  EXPECT_TRUE(refresh_failed(entry));
  // STS-28: an unexpired enforce or testing policy at stake.
  EXPECT_TRUE(refresh_failure_matters(entry, kT0 + 10));
  EXPECT_FALSE(refresh_failure_matters(entry, kT0 + 7 * kDay));  // already expired
  entry.policy->policy.mode = Mode::testing;
  EXPECT_TRUE(refresh_failure_matters(entry, kT0 + 10));
  entry.policy->policy.mode = Mode::none;
  EXPECT_FALSE(refresh_failure_matters(entry, kT0 + 10));
  EXPECT_FALSE(refresh_failure_matters(CacheEntry{}, kT0));
}

// Driven like the daemon drives it: decide() after each refresh, then the next plan. A policy of
// 7 days is re-checked daily (TXT only), fetched again from half its lifetime, and never lapses.
TEST(RefreshPlan, STS27_a_week_of_refreshes_keeps_the_policy_fresh_without_lapse) {
  std::optional<CacheEntry> entry =
      decide(std::nullopt, StsRecord{"v1"}, std::nullopt,
             FetchedPolicy{Policy{Mode::enforce, 7 * kDay, {"mx.example.net"}}, "body"}, kT0,
             kTiming)
          .entry;
  RefreshState state = used_at(0);
  UnixTime now = kT0;
  int fetches = 0;
  int checks = 0;
  for (int step = 0; step < 40 && now < kT0 + 20 * kDay; ++step) {
    state.last_used = now;  // in use all along
    const RefreshPlan plan = plan_refresh(*entry, state, now, kTiming, kRefresh, 0.25);
    ASSERT_EQ(plan.action, RefreshAction::refresh);
    // The refresh always runs while the entry is still fresh, so lookups never wait...
    EXPECT_LT(plan.at, entry->next_check + 1) << step;
    // ...and before the policy would expire.
    EXPECT_LT(plan.at, entry->policy->expires_at) << step;
    now = std::max(now, plan.at);
    const TxtOutcome txt = StsRecord{"v1"};
    FetchOutcome fetch;
    if (should_fetch(entry, txt, now, kTiming)) {
      ++fetches;
      fetch = FetchedPolicy{Policy{Mode::enforce, 7 * kDay, {"mx.example.net"}}, "body"};
    }
    ++checks;
    entry = decide(entry, txt, std::nullopt, fetch, now, kTiming).entry;
    state.last_attempt = now;
    state.own_check = entry->checked_at;
    ASSERT_TRUE(is_fresh(entry, now)) << step;
  }
  // About one TXT check a day and one fetch every half week over 20 days.
  EXPECT_GE(fetches, 5);
  EXPECT_LE(fetches, 7);
  EXPECT_GE(checks, 20);
  EXPECT_LE(checks, 30);
}

}  // namespace
}  // namespace mtasts
