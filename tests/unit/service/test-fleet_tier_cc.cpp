// The fleet tier's steps (service/fleet_tier.hpp) over a scripted shared cache: adopt at once,
// take the lock, wait for another member's result, give up waiting at the lock's life, go alone
// when the shared cache cannot be asked, count garbage. The real Redis behind it is driven by
// tests/integration/test_fleet*.py.
#include "service/fleet_tier.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <deque>
#include <exception>
#include <vector>

namespace mtasts {
namespace {

using namespace std::chrono_literals;
using Status = store::SharedRead::Status;

constexpr UnixTime kT0 = 1'700'000'000;

// Answers reads and lock_and_reads from scripts, in order; the last answer repeats.
class ScriptedCache final : public store::SharedCache {
 public:
  std::deque<store::SharedRead> reads, locks;
  std::vector<std::string> written, released;
  int lock_calls = 0;
  std::chrono::milliseconds ttl{200};

  asio::awaitable<store::SharedRead> read(std::string /*domain*/) override {
    co_return next(reads);
  }
  asio::awaitable<store::SharedRead> lock_and_read(std::string /*domain*/) override {
    ++lock_calls;
    co_return next(locks);
  }
  void write(std::string domain, const CacheEntry& /*entry*/,
             std::chrono::seconds /*ttl*/) override {
    written.push_back(std::move(domain));
  }
  void release(std::string domain) override { released.push_back(std::move(domain)); }
  [[nodiscard]] std::chrono::milliseconds lock_ttl() const override { return ttl; }
  [[nodiscard]] store::SharedCacheStats stats() const override { return {}; }
  void stop() override {}

 private:
  static store::SharedRead next(std::deque<store::SharedRead>& script) {
    if (script.empty()) return {};
    store::SharedRead read = script.front();
    if (script.size() > 1) script.pop_front();
    return read;
  }
};

store::SharedRead found(CacheEntry entry) {
  store::SharedRead read;
  read.status = Status::found;
  read.entry = std::move(entry);
  return read;
}

store::SharedRead with_lock(store::SharedRead read, bool acquired) {
  read.lock_acquired = acquired;
  read.lock_left_ms = acquired ? 200 : 150;
  return read;
}

store::SharedRead absent() {
  store::SharedRead read;
  read.status = Status::absent;
  return read;
}

CacheEntry fresh_enforce() {
  CacheEntry entry;
  entry.policy = CachedPolicy{Policy{Mode::enforce, 86400, {"mx1.example.com"}}, "v1", kT0 - 10,
                              kT0 - 10 + 86400, "body"};
  entry.checked_at = kT0 - 10;
  entry.next_check = kT0 + 3000;
  return entry;
}

struct Fixture : ::testing::Test {
  asio::io_context io;
  ScriptedCache cache;
  FleetTier tier{
      io.get_executor(), cache, Timing{}, [] { return kT0; },
      std::make_shared<spdlog::logger>("t", std::make_shared<spdlog::sinks::null_sink_mt>())};

  FleetStep step(std::optional<CacheEntry> local = std::nullopt, bool force = false) {
    std::optional<FleetStep> out;
    asio::co_spawn(io, tier.before_network("example.com", std::move(local), force),
                   [&out](std::exception_ptr error, FleetStep result) {
                     if (error) std::rethrow_exception(error);
                     out = std::move(result);
                   });
    io.run_for(10s);
    io.restart();
    EXPECT_TRUE(out.has_value());
    return out.value_or(FleetStep{});
  }
};

TEST_F(Fixture, AFreshSharedEntryIsAdoptedWithoutTheLock) {
  cache.reads = {found(fresh_enforce())};
  const FleetStep result = step();
  ASSERT_TRUE(result.adopted);
  EXPECT_EQ(result.adopted->policy->id, "v1");
  EXPECT_EQ(cache.lock_calls, 0);
  EXPECT_EQ(tier.stats().adopted, 1u);
}

TEST_F(Fixture, NothingSharedTakesTheLockAndPublishesAfterTheLookup) {
  cache.reads = {absent()};
  cache.locks = {with_lock(absent(), true)};
  const FleetStep result = step();
  EXPECT_FALSE(result.adopted);
  EXPECT_FALSE(result.candidate);
  EXPECT_EQ(cache.lock_calls, 1);
  tier.after_network("example.com", fresh_enforce(), result);
  EXPECT_EQ(cache.written, std::vector<std::string>{"example.com"});
  EXPECT_EQ(tier.stats().published, 1u);
}

TEST_F(Fixture, AnotherMembersResultIsWaitedFor) {
  cache.reads = {absent()};
  cache.locks = {with_lock(absent(), false), with_lock(absent(), false),
                 with_lock(found(fresh_enforce()), false)};
  const FleetStep result = step();
  ASSERT_TRUE(result.adopted);
  EXPECT_EQ(cache.lock_calls, 3);
  EXPECT_EQ(tier.stats().lock_waits, 1u);
  EXPECT_TRUE(cache.released.empty()) << "the lock was never ours";
}

TEST_F(Fixture, WaitingEndsWithTheLocksLife) {
  cache.ttl = 60ms;
  cache.reads = {absent()};
  store::SharedRead held = with_lock(absent(), false);
  held.lock_left_ms = 50;  // another member's lock, within its life
  cache.locks = {held};
  const FleetStep result = step();
  EXPECT_FALSE(result.adopted);
  EXPECT_GE(cache.lock_calls, 2);
  EXPECT_LE(cache.lock_calls, 8);
  EXPECT_EQ(tier.stats().went_alone, 1u);
}

TEST_F(Fixture, ALockThatNeverExpiresIsNotWaitedFor) {
  cache.reads = {absent()};
  store::SharedRead forever = with_lock(absent(), false);
  forever.lock_left_ms = -1;  // no member sets a lock without an expiry
  cache.locks = {forever};
  const FleetStep result = step();
  EXPECT_FALSE(result.adopted);
  EXPECT_EQ(cache.lock_calls, 1);
  EXPECT_EQ(tier.stats().went_alone, 1u);
  EXPECT_EQ(tier.stats().lock_waits, 0u);
}

TEST_F(Fixture, ARecentCheckOurTxtDoesNotConfirmIsNotOverwritten) {
  FleetStep disagreeing;
  CacheEntry newer = fresh_enforce();
  newer.policy->id = "v2";
  disagreeing.candidate = newer.policy;
  disagreeing.candidate_is_fresh = true;
  tier.after_network("example.com", fresh_enforce(), disagreeing);  // we still see v1
  EXPECT_TRUE(cache.written.empty());
  EXPECT_EQ(cache.released, std::vector<std::string>{"example.com"});
  disagreeing.candidate_is_fresh = false;  // a stale entry is overwritten
  tier.after_network("example.com", fresh_enforce(), disagreeing);
  EXPECT_EQ(cache.written, std::vector<std::string>{"example.com"});
}

TEST_F(Fixture, AnEntryFoundUnderOurLockReleasesIt) {
  cache.reads = {absent()};
  cache.locks = {with_lock(found(fresh_enforce()), true)};
  const FleetStep result = step();
  ASSERT_TRUE(result.adopted);
  EXPECT_EQ(cache.released, std::vector<std::string>{"example.com"});
}

TEST_F(Fixture, AnUnavailableCacheMeansAlone) {
  cache.reads = {store::SharedRead{}};  // unavailable
  CacheEntry local = fresh_enforce();
  local.next_check = kT0 - 1;
  const FleetStep result = step(local);
  EXPECT_FALSE(result.adopted);
  EXPECT_EQ(result.local, local);
  EXPECT_EQ(cache.lock_calls, 0);
  EXPECT_EQ(tier.stats().went_alone, 1u);
}

TEST_F(Fixture, GarbageIsCountedAndTheLookupGoesOn) {
  store::SharedRead garbage;
  garbage.status = Status::invalid;
  garbage.problem = "not a JSON object";
  cache.reads = {garbage};
  cache.locks = {with_lock(garbage, true)};
  const FleetStep result = step();
  EXPECT_FALSE(result.adopted);
  EXPECT_EQ(tier.stats().invalid, 2u);
}

TEST_F(Fixture, AWeakerPolicyUnderAnotherIdIsOnlyACandidate) {
  CacheEntry local = fresh_enforce();
  local.next_check = kT0 - 1;  // due for its re-check
  CacheEntry weaker = fresh_enforce();
  weaker.policy->policy.mode = Mode::testing;
  weaker.policy->id = "v2";
  weaker.checked_at = kT0 - 1;
  cache.reads = {found(weaker)};
  const FleetStep result = step(local);
  EXPECT_FALSE(result.adopted);
  ASSERT_TRUE(result.candidate);
  EXPECT_EQ(result.candidate->id, "v2");
}

}  // namespace
}  // namespace mtasts
