// The daemon's refresh bookkeeping (service/refresh_schedule.hpp) on a fake clock and a fake
// jitter source: when refreshes fall due, backoff after failures, the concurrency limit, drop of
// unused entries and the usage file. Times are offsets from kT0; each check is exact to the
// second (a due time is probed one second early, then on time).
#include "service/refresh_schedule.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <ostream>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace mtasts {

// Readable failure messages (found by ADL, so outside the unnamed namespace).
void PrintTo(const RefreshPlan& plan, std::ostream* out) {
  *out << (plan.action == RefreshAction::refresh ? "refresh"
           : plan.action == RefreshAction::drop  ? "drop"
                                                 : "idle")
       << " at " << plan.at;
}
void PrintTo(const RefreshSchedule::Due& due, std::ostream* out) {
  *out << due.domain << " started " << due.started;
}

namespace {

constexpr UnixTime kT0 = 1'700'000'000;
constexpr std::int64_t kDay = 86400;

// Fetched at `fetched` with `max_age`, checked at `checked`, fresh until `next` (absolute).
CacheEntry with_policy(UnixTime fetched, std::int64_t max_age, UnixTime checked, UnixTime next) {
  CacheEntry entry;
  entry.policy = CachedPolicy{Policy{Mode::enforce, max_age, {"mx.example.net"}}, "v1", fetched,
                              fetched + max_age, "body"};
  entry.checked_at = checked;
  entry.next_check = next;
  return entry;
}

// A week's policy fetched at T0, re-checked daily: refresh_from is T0 + 3.5 d, so the daily
// re-check gets the full `ahead` window (600 s) and nothing else bounds it.
CacheEntry week_policy() {
  return with_policy(kT0, 7 * kDay, kT0, kT0 + kDay);
}

// What decide() stores when DNS cannot tell: the policy kept, DNS asked again after dns_retry.
CacheEntry dns_failed(UnixTime at) {
  CacheEntry entry = with_policy(kT0, 7 * kDay, at, at + 60);
  entry.last_error = "dns_temporary: timeout";
  return entry;
}

// No MTA-STS here (negative_ttl 1 h).
CacheEntry no_policy(UnixTime checked) {
  CacheEntry entry;
  entry.checked_at = checked;
  entry.next_check = checked + 3600;
  return entry;
}

class Schedule : public ::testing::Test {
 protected:
  // The refreshes due at `at` (the clock is set to it), by name, sorted.
  std::vector<std::string> due_at(UnixTime at, std::size_t limit = 8) {
    now = at;
    std::vector<std::string> names;
    for (const RefreshSchedule::Due& due : schedule.take_due(limit)) {
      EXPECT_EQ(due.started, at) << due.domain;
      names.push_back(due.domain);
    }
    std::sort(names.begin(), names.end());
    return names;
  }
  // Starts the refresh of `domain` exactly when it falls due (nothing a second before).
  UnixTime start(const std::string& domain) {
    const std::optional<UnixTime> at = schedule.planned_at(domain);
    EXPECT_TRUE(at.has_value()) << domain;
    if (!at) return 0;
    EXPECT_EQ(due_at(*at - 1), std::vector<std::string>{}) << domain;
    EXPECT_EQ(due_at(*at), std::vector<std::string>{domain});
    return *at;
  }

  UnixTime now = kT0;
  double draw = 0.0;
  int draws = 0;
  Timing timing;          // dns_retry 60 s, txt_max_ttl 1 h
  RefreshTiming refresh;  // ahead 600 s, retry_max 1 h, drop unused after 30 d, TTL window 1 d
  RefreshSchedule schedule{[this] { return now; },
                           [this] {
                             ++draws;
                             return draw;
                           },
                           timing, refresh};
};

// plan_refresh(): at = next_check - window + floor(draw * window / 2), window = min(ahead,
// time since the check / 4): with draws in [0, 1) every refresh lands in
// [next_check - 600, next_check - 301], the earlier half of the `ahead` window.
TEST(RefreshScheduleJitter, STS27_refreshes_spread_over_the_earlier_half_of_ahead) {
  const struct {
    const char* name;
    double draw;
    std::int64_t before_stale;  // next_check - planned time
  } rows[] = {
      {"draw 0: the whole `ahead` early", 0.0, 600},
      {"draw 0.5: a quarter in", 0.5, 450},
      {"draw 0.25", 0.25, 525},
      {"draw just under 1: half the window early, never later", 0.999999, 301},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.name);
    UnixTime now = kT0 + 10;
    RefreshSchedule schedule([&now] { return now; }, [&row] { return row.draw; }, Timing{},
                             RefreshTiming{});
    EXPECT_FALSE(schedule.learn("a.example", week_policy()));
    const UnixTime at = kT0 + kDay - row.before_stale;
    EXPECT_EQ(schedule.planned_at("a.example"), at);
    now = at - 1;
    EXPECT_TRUE(schedule.take_due(8).empty());
    now = at;
    EXPECT_EQ(schedule.take_due(8), (std::vector<RefreshSchedule::Due>{{"a.example", at}}));
    EXPECT_EQ(schedule.running(), 1U);
  }
}

TEST_F(Schedule, jitter_is_drawn_once_per_domain_and_anew_after_each_refresh) {
  EXPECT_FALSE(schedule.learn("a.example", week_policy()));
  EXPECT_EQ(draws, 1);
  draw = 0.5;
  now = kT0 + 100;
  EXPECT_FALSE(schedule.learn("a.example", week_policy()));  // same plan: queued as is
  EXPECT_EQ(draws, 1);
  EXPECT_EQ(schedule.planned_at("a.example"), kT0 + kDay - 600);
  const UnixTime started = start("a.example");
  const CacheEntry fresh = with_policy(kT0, 7 * kDay, started, started + kDay);
  const RefreshSchedule::Outcome outcome = schedule.finish("a.example", started, &fresh);
  EXPECT_EQ(draws, 2);
  EXPECT_EQ(outcome.next, (RefreshPlan{RefreshAction::refresh, started + kDay - 600 + 150}));
}

TEST_F(Schedule, failures_back_off_from_dns_retry_doubling_to_retry_max_and_reset_on_success) {
  EXPECT_FALSE(schedule.learn("a.example", week_policy()));
  const std::int64_t pauses[] = {60, 120, 240, 480, 960, 1920, 3600, 3600};
  int failures = 0;
  for (const std::int64_t pause : pauses) {
    SCOPED_TRACE(pause);
    const UnixTime started = start("a.example");
    const CacheEntry failed = dns_failed(started);
    const RefreshSchedule::Outcome outcome = schedule.finish("a.example", started, &failed);
    EXPECT_TRUE(outcome.failed);
    EXPECT_EQ(outcome.failures, ++failures);
    EXPECT_TRUE(outcome.matters);  // STS-28: an unexpired enforce policy is at stake
    EXPECT_EQ(outcome.entry.last_error, "dns_temporary: timeout");
    EXPECT_EQ(outcome.next, (RefreshPlan{RefreshAction::refresh, started + pause}));
    EXPECT_EQ(schedule.running(), 0U);
  }
  const UnixTime started = start("a.example");
  const CacheEntry healthy = with_policy(kT0, 7 * kDay, started, started + kDay);
  const RefreshSchedule::Outcome outcome = schedule.finish("a.example", started, &healthy);
  EXPECT_FALSE(outcome.failed);
  EXPECT_EQ(outcome.failures, 0);
  EXPECT_FALSE(outcome.matters);
  EXPECT_EQ(outcome.next, (RefreshPlan{RefreshAction::refresh, started + kDay - 600}));
  // A later failure starts again at dns_retry.
  const UnixTime again = start("a.example");
  const CacheEntry failed = dns_failed(again);
  EXPECT_EQ(schedule.finish("a.example", again, &failed).next,
            (RefreshPlan{RefreshAction::refresh, again + 60}));
}

TEST_F(Schedule, a_refresh_that_stored_nothing_is_a_failure_and_keeps_the_known_entry) {
  EXPECT_FALSE(schedule.learn("a.example", week_policy()));
  const UnixTime started = start("a.example");
  now = started + 5;
  const RefreshSchedule::Outcome outcome = schedule.finish("a.example", started, nullptr);
  EXPECT_TRUE(outcome.failed);
  EXPECT_EQ(outcome.failures, 1);
  EXPECT_EQ(outcome.entry.next_check, kT0 + kDay);
  EXPECT_EQ(outcome.entry.policy->text, "");  // the schedule keeps no policy text
  // Stale since T0 + 1 d, but never again within dns_retry of the attempt.
  EXPECT_EQ(outcome.next, (RefreshPlan{RefreshAction::refresh, started + 60}));
}

TEST_F(Schedule, concurrency_limit_counts_running_refreshes) {
  for (const char* domain : {"a.example", "b.example", "c.example"}) {
    EXPECT_FALSE(schedule.learn(domain, week_policy()));
  }
  EXPECT_EQ(schedule.queued(), 3U);
  const UnixTime at = kT0 + kDay - 600;
  EXPECT_TRUE(due_at(at, 0).empty());
  const std::vector<std::string> first = due_at(at, 2);
  ASSERT_EQ(first.size(), 2U);
  EXPECT_EQ(schedule.running(), 2U);
  EXPECT_EQ(schedule.queued(), 1U);
  EXPECT_TRUE(due_at(at + 1, 2).empty());  // two running: the limit is reached
  const CacheEntry fresh = with_policy(kT0, 7 * kDay, at, at + kDay);
  (void)schedule.finish(first[0], at, &fresh);
  EXPECT_EQ(schedule.running(), 1U);
  const std::vector<std::string> second = due_at(at + 2, 2);
  ASSERT_EQ(second.size(), 1U);
  EXPECT_EQ(std::count(first.begin(), first.end(), second[0]), 0);
  EXPECT_EQ(schedule.running(), 2U);
  EXPECT_EQ(schedule.queued(), 1U);  // first[0]'s next refresh
}

TEST_F(Schedule, unused_entries_without_an_unexpired_policy_are_dropped) {
  // Last use is its check at T0 (another program's lookup: observed_last_use()).
  const RefreshSchedule::Listing listing = {{"gone.example", no_policy(kT0)}};
  now = kT0 + 10;
  EXPECT_TRUE(schedule.scan(listing).drops.empty());
  EXPECT_EQ(schedule.queued(), 0U);  // no policy: left to the front-ends
  now = kT0 + 30 * kDay - 1;
  EXPECT_TRUE(schedule.scan(listing).drops.empty());
  now = kT0 + 30 * kDay;
  EXPECT_EQ(schedule.scan(listing).drops, std::vector<std::string>{"gone.example"});
  EXPECT_EQ(schedule.tracked(), 1U);
  schedule.forget({"gone.example"});
  EXPECT_EQ(schedule.tracked(), 0U);
}

TEST_F(Schedule, an_unused_entry_keeps_its_unexpired_policy_until_it_expires) {
  const UnixTime expires = kT0 + 365 * kDay;
  const RefreshSchedule::Listing listing = {
      {"kept.example", with_policy(kT0, 365 * kDay, kT0, kT0 + kDay)}};
  EXPECT_TRUE(schedule.scan(listing).drops.empty());
  EXPECT_EQ(schedule.planned_at("kept.example"), kT0 + kDay - 600);
  now = kT0 + 30 * kDay;
  EXPECT_TRUE(schedule.scan(listing).drops.empty());
  EXPECT_EQ(schedule.planned_at("kept.example"), std::nullopt);  // no longer refreshed
  EXPECT_TRUE(due_at(kT0 + 31 * kDay).empty());
  now = expires - 1;
  EXPECT_TRUE(schedule.scan(listing).drops.empty());
  now = expires;
  EXPECT_EQ(schedule.scan(listing).drops, std::vector<std::string>{"kept.example"});
}

TEST_F(Schedule, a_use_through_the_daemon_keeps_the_entry_refreshed) {
  const RefreshSchedule::Listing listing = {
      {"kept.example", with_policy(kT0, 365 * kDay, kT0, kT0 + kDay)}};
  EXPECT_TRUE(schedule.scan(listing).drops.empty());
  now = kT0 + 29 * kDay;
  schedule.used("kept.example");  // a cache hit: it writes nothing to the cache
  now = kT0 + 30 * kDay;
  const RefreshSchedule::ScanOutcome outcome = schedule.scan(listing);
  EXPECT_TRUE(outcome.drops.empty());
  // Stale for a long time: due at once (the queued item from the first scan is kept as is).
  EXPECT_EQ(schedule.planned_at("kept.example"), kT0 + kDay - 600);
  EXPECT_EQ(due_at(now), std::vector<std::string>{"kept.example"});
  EXPECT_EQ(schedule.usage_text(),
            fmt::format("mtasts-usage 1\nkept.example {} 0\n", kT0 + 29 * kDay));
}

TEST_F(Schedule, a_domain_that_fell_out_of_use_since_it_was_planned_is_not_refreshed) {
  EXPECT_FALSE(schedule.learn("a.example", week_policy()));
  RefreshTiming soon = refresh;
  soon.drop_unused_after = 3600;  // a reload shortened it; the dispatch plans anew
  schedule.set_timing(timing, soon);
  EXPECT_TRUE(due_at(kT0 + kDay - 600).empty());
  EXPECT_EQ(schedule.queued(), 0U);
  EXPECT_EQ(schedule.running(), 0U);
}

TEST_F(Schedule, a_lookup_replans_and_the_superseded_time_does_not_fire) {
  EXPECT_FALSE(schedule.learn("a.example", week_policy()));
  now = kT0 + 3600;
  EXPECT_FALSE(schedule.learn("a.example", with_policy(kT0, 7 * kDay, now, now + kDay)));
  EXPECT_EQ(schedule.planned_at("a.example"), now + kDay - 600);
  EXPECT_TRUE(due_at(kT0 + kDay - 600).empty());
  EXPECT_EQ(due_at(kT0 + 3600 + kDay - 600), std::vector<std::string>{"a.example"});
  // Stale already (fetched long ago, checked long ago): due at once, the dispatcher is woken.
  EXPECT_TRUE(schedule.learn("b.example", week_policy()));
  EXPECT_FALSE(schedule.learn("b.example", week_policy()));  // queued as is: no new wake
}

TEST_F(Schedule, a_lookup_during_a_refresh_counts_as_a_use_but_the_refresh_result_plans) {
  EXPECT_FALSE(schedule.learn("a.example", week_policy()));
  const UnixTime started = start("a.example");
  now = started + 1;
  EXPECT_FALSE(schedule.learn("a.example", with_policy(kT0, 7 * kDay, now, now + 2 * kDay)));
  EXPECT_EQ(schedule.planned_at("a.example"), std::nullopt);
  now = started + 2;
  const CacheEntry fresh = with_policy(kT0, 7 * kDay, started, started + kDay);
  EXPECT_EQ(schedule.finish("a.example", started, &fresh).next,
            (RefreshPlan{RefreshAction::refresh, started + kDay - 600}));
  EXPECT_EQ(schedule.usage_text(),
            fmt::format("mtasts-usage 1\na.example {} {}\n", started + 1, started));
}

TEST_F(Schedule, a_domain_the_scan_no_longer_lists_is_forgotten) {
  const RefreshSchedule::Listing both = {{"a.example", week_policy()},
                                         {"b.example", week_policy()}};
  EXPECT_FALSE(schedule.scan(both).due_now);
  schedule.used("only-used.example");  // answered, nothing stored yet: kept
  EXPECT_EQ(schedule.tracked(), 3U);
  const RefreshSchedule::Listing only_a = {{"a.example", week_policy()}};
  EXPECT_FALSE(schedule.scan(only_a).due_now);
  EXPECT_EQ(schedule.tracked(), 2U);
  EXPECT_EQ(schedule.planned_at("b.example"), std::nullopt);
  EXPECT_EQ(due_at(kT0 + kDay), std::vector<std::string>{"a.example"});
  // A running refresh is kept even when the file no longer lists it.
  EXPECT_FALSE(schedule.scan({}).due_now);
  EXPECT_EQ(schedule.tracked(), 2U);
  EXPECT_EQ(schedule.running(), 1U);
}

TEST_F(Schedule, usage_file_round_trip) {
  const std::string saved =
      fmt::format("mtasts-usage 1\nsaved.example {} {}\nother.example {} 0\nNOT A LINE\n",
                  kT0 + 100, kT0 + 50, kT0 + 200);
  EXPECT_EQ(schedule.restore_usage(saved).size(), 1U);  // the bad line
  EXPECT_EQ(schedule.usage_text(),
            fmt::format("mtasts-usage 1\nother.example {} 0\nsaved.example {} {}\n", kT0 + 200,
                        kT0 + 100, kT0 + 50));
  now = kT0 + 50;
  schedule.used("saved.example");  // earlier than the saved use: the later one stays
  now = kT0 + 500;
  schedule.used("fresh.example");
  const std::string expected =
      fmt::format("mtasts-usage 1\nfresh.example {} 0\nother.example {} 0\nsaved.example {} {}\n",
                  kT0 + 500, kT0 + 200, kT0 + 100, kT0 + 50);
  EXPECT_EQ(schedule.usage_text(), expected);
  RefreshSchedule restarted([] { return kT0; }, [] { return 0.0; }, timing, refresh);
  EXPECT_TRUE(restarted.restore_usage(expected).empty());
  EXPECT_EQ(restarted.usage_text(), expected);
  // The scan lists saved.example (checked by the scheduler itself: no new use) but not
  // other.example: what was saved for it goes; the used-only domain stays.
  CacheEntry own = week_policy();
  own.checked_at = kT0 + 50;
  EXPECT_FALSE(schedule.scan({{"saved.example", own}}).due_now);
  EXPECT_EQ(schedule.usage_text(),
            fmt::format("mtasts-usage 1\nfresh.example {} 0\nsaved.example {} {}\n", kT0 + 500,
                        kT0 + 100, kT0 + 50));
}

TEST_F(Schedule, close_stops_counting_and_planning) {
  EXPECT_FALSE(schedule.learn("a.example", week_policy()));
  const UnixTime started = start("a.example");
  schedule.close();
  const std::string before = schedule.usage_text();
  schedule.used("b.example");
  EXPECT_FALSE(schedule.learn("c.example", week_policy()));
  EXPECT_EQ(schedule.usage_text(), before);
  const CacheEntry failed = dns_failed(started);
  const RefreshSchedule::Outcome outcome = schedule.finish("a.example", started, &failed);
  EXPECT_EQ(outcome.failures, 1);
  EXPECT_EQ(outcome.next, RefreshPlan{});
  EXPECT_EQ(schedule.queued(), 0U);
  EXPECT_TRUE(due_at(started + kDay).empty());
}

TEST_F(Schedule, clear_forgets_the_old_cache_but_running_refreshes_still_count) {
  EXPECT_FALSE(schedule.learn("a.example", week_policy()));
  EXPECT_FALSE(schedule.learn("b.example", week_policy()));
  const std::vector<std::string> running = due_at(kT0 + kDay - 600, 1);
  ASSERT_EQ(running.size(), 1U);
  schedule.clear();
  EXPECT_EQ(schedule.tracked(), 0U);
  EXPECT_EQ(schedule.queued(), 0U);
  EXPECT_EQ(schedule.running(), 1U);
  EXPECT_TRUE(due_at(kT0 + kDay).empty());
  (void)schedule.finish(running[0], kT0 + kDay - 600, nullptr);
  EXPECT_EQ(schedule.running(), 0U);
  EXPECT_EQ(schedule.tracked(), 1U);  // tracked anew from its result
}

}  // namespace
}  // namespace mtasts
