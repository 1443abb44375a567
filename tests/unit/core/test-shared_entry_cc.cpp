// What a fleet member may take from the shared cache (design §8, core/shared_entry.hpp):
// table-driven; each row says which rule it proves. Times are offsets from kT0.
#include "core/shared_entry.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace mtasts {
namespace {

constexpr UnixTime kT0 = 1'700'000'000;
constexpr std::int64_t kDay = 86400;
const Timing kTiming{};  // txt_max_ttl 1 h, negative 1 h, dns_retry 60 s, backoff 300 s .. 6 h

CachedPolicy policy(Mode mode, std::string id, std::int64_t fetched, std::int64_t max_age,
                    std::vector<std::string> mx = {"mx.example.net"}) {
  return CachedPolicy{Policy{mode, max_age, std::move(mx)}, std::move(id), kT0 + fetched,
                      kT0 + fetched + max_age, "body"};
}

CacheEntry entry(std::optional<CachedPolicy> held, std::int64_t checked, std::int64_t next) {
  CacheEntry out;
  out.policy = std::move(held);
  out.checked_at = kT0 + checked;
  out.next_check = kT0 + next;
  return out;
}

struct Row {
  const char* name;
  std::optional<CacheEntry> local;
  CacheEntry shared;
  std::int64_t now;
  bool force;
  SharedUse expected;
};

std::vector<Row> rows() {
  const auto enforce_a = policy(Mode::enforce, "a", 0, 7 * kDay);
  const auto negative = entry(std::nullopt, 100, 100 + 3600);
  return {
      {"nothing local: a fresh shared policy is adopted", std::nullopt,
       entry(enforce_a, 100, 100 + 3600), 200, false, SharedUse::adopt},
      {"nothing local: a fresh negative answer is adopted", std::nullopt, negative, 200, false,
       SharedUse::adopt},
      {"a stale shared entry is never adopted; its policy is a candidate for our TXT lookup",
       std::nullopt, entry(enforce_a, 100, 150), 200, false, SharedUse::confirm},
      {"a stale negative entry offers nothing", std::nullopt, entry(std::nullopt, 100, 150), 200,
       false, SharedUse::ignore},
      {"an older entry with the policy id held here offers nothing", entry(enforce_a, 180, 190),
       entry(enforce_a, 150, 160), 200, false, SharedUse::ignore},
      {"an older entry with a newer policy id is a candidate", entry(enforce_a, 180, 190),
       entry(policy(Mode::enforce, "b", 150, 7 * kDay), 150, 3750), 200, false, SharedUse::confirm},
      {"local stale, shared newer and as strong: adopted", entry(enforce_a, 0, 100),
       entry(enforce_a, 150, 150 + 3600), 200, false, SharedUse::adopt},
      {"local stale, shared older than the local check: ignored", entry(enforce_a, 180, 190),
       entry(enforce_a, 150, 150 + 3600), 200, false, SharedUse::ignore},
      {"unexpired local policy, shared says no policy: ignored (no downgrade by a writer)",
       entry(enforce_a, 0, 100), negative, 200, false, SharedUse::ignore},
      {"unexpired local policy, shared mode none under another id: confirm by our TXT",
       entry(enforce_a, 0, 100), entry(policy(Mode::none, "b", 150, 7 * kDay, {}), 150, 3750), 200,
       false, SharedUse::confirm},
      {"unexpired local policy, shared mode testing under the same id: ignored",
       entry(enforce_a, 0, 100), entry(policy(Mode::testing, "a", 150, 7 * kDay), 150, 3750), 200,
       false, SharedUse::ignore},
      {"unexpired local policy, other mx patterns under another id: confirm",
       entry(enforce_a, 0, 100),
       entry(policy(Mode::enforce, "b", 150, 7 * kDay, {"evil.example"}), 150, 3750), 200, false,
       SharedUse::confirm},
      {"unexpired local policy, a shorter life under the same id: ignored",
       entry(enforce_a, 0, 100), entry(policy(Mode::enforce, "a", 150, 3600), 150, 3750), 200,
       false, SharedUse::ignore},
      {"testing held, enforce offered under a new id: no weakening, adopted",
       entry(policy(Mode::testing, "a", 0, 7 * kDay), 0, 100),
       entry(policy(Mode::enforce, "b", 150, 7 * kDay), 150, 3750), 200, false, SharedUse::adopt},
      {"an expired local policy does not hold: a negative answer is adopted",
       entry(policy(Mode::enforce, "a", -8 * kDay, 7 * kDay), -kDay, -kDay + 100), negative, 200,
       false, SharedUse::adopt},
      {"refresh: a check newer than ours is adopted", entry(enforce_a, 0, 3600),
       entry(enforce_a, 150, 3750), 200, true, SharedUse::adopt},
      {"refresh: a check no newer than ours is not", entry(enforce_a, 150, 3750),
       entry(enforce_a, 150, 3750), 200, true, SharedUse::ignore},
      {"refresh: a policy due for its own fetch is not adopted (the refresh must fetch)",
       entry(enforce_a, 4 * kDay, 4 * kDay + 10), entry(enforce_a, 4 * kDay + 50, 4 * kDay + 3650),
       4 * kDay + 100, true, SharedUse::ignore},
  };
}

TEST(SharedEntry, Judgement) {
  for (const Row& row : rows()) {
    SCOPED_TRACE(row.name);
    const SharedJudgement judgement =
        judge_shared(row.local, row.shared, kT0 + row.now, kTiming, row.force);
    EXPECT_EQ(judgement.use, row.expected) << judgement.reason;
  }
}

TEST(SharedEntry, SanitizeBoundsWhatAWriterClaims) {
  std::string why;
  CacheEntry claims = entry(policy(Mode::enforce, "a", 0, 7 * kDay), 0, 400 * kDay);
  claims.policy->expires_at = kT0 + 300 * kDay;  // beyond fetched_at + max_age
  claims.retry_fetch_at = kT0 + 300 * kDay;
  claims.failures = 1'000'000;
  claims.txt_expires_at = kT0 + 300 * kDay;
  claims.dane = DaneState{DaneVerdict::all_usable, "claimed", {}, kT0, kT0 + kDay, false};
  auto clean = sanitize_shared(claims, kT0 + 10, kTiming, why);
  ASSERT_TRUE(clean.has_value()) << why;
  EXPECT_EQ(clean->next_check, kT0 + 3600) << "no longer than the longest re-check interval";
  EXPECT_EQ(clean->policy->expires_at, kT0 + 7 * kDay);
  EXPECT_EQ(clean->retry_fetch_at, kT0 + 10 + kTiming.fetch_backoff_max);
  EXPECT_LE(clean->failures, 64);
  EXPECT_LE(clean->txt_expires_at, kT0 + 3600);
  EXPECT_FALSE(clean->dane.has_value()) << "DANE is never taken from the shared cache";
}

TEST(SharedEntry, SanitizeRefusesTheFuture) {
  std::string why;
  EXPECT_FALSE(sanitize_shared(entry(std::nullopt, kDay, kDay + 60), kT0, kTiming, why));
  EXPECT_NE(why.find("future"), std::string::npos) << why;
  EXPECT_TRUE(sanitize_shared(entry(std::nullopt, kSharedClockSkew, 3600), kT0, kTiming, why))
      << "a little clock skew between members is fine";
}

TEST(SharedEntry, BackoffIsShared) {
  CacheEntry shared = entry(std::nullopt, 100, 160);
  shared.failed_id = "b";
  shared.failures = 2;
  shared.retry_fetch_at = kT0 + 700;
  // Nothing local: the backoff alone is carried over, so no fetch of id b before T0+700.
  auto merged = with_shared_backoff(std::nullopt, shared, kT0 + 200);
  ASSERT_TRUE(merged);
  EXPECT_FALSE(should_fetch(merged, StsRecord{"b"}, kT0 + 200, kTiming));
  EXPECT_TRUE(should_fetch(merged, StsRecord{"b"}, kT0 + 700, kTiming));
  // A local policy keeps answering: only the backoff fields change.
  CacheEntry local = entry(policy(Mode::enforce, "a", 0, 7 * kDay), 0, 100);
  merged = with_shared_backoff(local, shared, kT0 + 200);
  EXPECT_EQ(merged->policy, local.policy);
  EXPECT_EQ(merged->failed_id, "b");
  // A backoff that has run out changes nothing.
  EXPECT_EQ(with_shared_backoff(local, shared, kT0 + 800), local);
}

TEST(SharedEntry, WeakensIsAboutWhatDeliveryChecks) {
  const auto held = policy(Mode::enforce, "a", 0, 7 * kDay, {"a.example", "b.example"});
  auto same_set = policy(Mode::enforce, "b", 10, 7 * kDay, {"b.example", "a.example"});
  EXPECT_FALSE(weakens(held, same_set, kT0 + 20)) << "pattern order does not matter";
  EXPECT_TRUE(weakens(held, std::nullopt, kT0 + 20));
  EXPECT_TRUE(weakens(held, policy(Mode::enforce, "b", -8 * kDay, 7 * kDay), kT0 + 20))
      << "an expired policy";
}

TEST(SharedEntry, TtlCoversThePolicyAndTheBackoff) {
  CacheEntry withPolicy = entry(policy(Mode::enforce, "a", 0, 7 * kDay), 0, 3600);
  EXPECT_EQ(shared_ttl(withPolicy, kT0 + 100), 7 * kDay - 100);
  EXPECT_EQ(shared_ttl(entry(std::nullopt, 0, 3600), kT0 + 100), 3500);
  EXPECT_EQ(shared_ttl(entry(std::nullopt, 0, 10), kT0 + 100), 60) << "at least a minute";
}

}  // namespace
}  // namespace mtasts
