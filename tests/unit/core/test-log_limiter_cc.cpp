// The log rate limit of mtastsd's client errors (core/log_limiter.hpp): at most `burst` lines a
// window, the rest counted and reported once, with the next line or by take_suppressed().
#include "core/log_limiter.hpp"

#include <gtest/gtest.h>

namespace mtasts {
namespace {

using namespace std::chrono_literals;
using TimePoint = LogLimiter::TimePoint;

const TimePoint t0 = TimePoint{} + 1000s;

TEST(LogLimiter, BurstThenSuppressedThenReportedWithTheNextWindowsFirstLine) {
  LogLimiter limiter(3, 10s);
  for (int i = 0; i < 3; ++i) {
    const auto a = limiter.admit(t0 + i * 1ms);
    EXPECT_TRUE(a.log) << i;
    EXPECT_EQ(a.suppressed, 0u) << i;
  }
  for (int i = 0; i < 1000; ++i) {
    const auto a = limiter.admit(t0 + 5s);
    EXPECT_FALSE(a.log);
    EXPECT_EQ(a.suppressed, 0u);
  }
  // Still the same window: nothing to report yet.
  EXPECT_EQ(limiter.take_suppressed(t0 + 9s), 0u);
  const auto next = limiter.admit(t0 + 10s);
  EXPECT_TRUE(next.log);
  EXPECT_EQ(next.suppressed, 1000u);
  // Reported once.
  EXPECT_EQ(limiter.take_suppressed(t0 + 30s), 0u);
  EXPECT_EQ(limiter.admit(t0 + 10s + 1ms).suppressed, 0u);
}

TEST(LogLimiter, TakeSuppressedOnceTheWindowIsOver) {
  LogLimiter limiter(1, 10s);
  EXPECT_TRUE(limiter.admit(t0).log);
  EXPECT_FALSE(limiter.admit(t0 + 1s).log);
  EXPECT_FALSE(limiter.admit(t0 + 2s).log);
  EXPECT_EQ(limiter.take_suppressed(t0 + 9s), 0u);
  EXPECT_EQ(limiter.take_suppressed(t0 + 10s), 2u);
  EXPECT_EQ(limiter.take_suppressed(t0 + 11s), 0u);
  // The next line starts a window with nothing carried over.
  const auto a = limiter.admit(t0 + 12s);
  EXPECT_TRUE(a.log);
  EXPECT_EQ(a.suppressed, 0u);
}

TEST(LogLimiter, LinesPerWindowAreBoundedWhateverTheRate) {
  // 100 000 events over 100 s (one per millisecond): at most burst lines plus one summary per
  // window, and every event is either logged or counted in a summary.
  LogLimiter limiter(10, 10s);
  std::uint64_t lines = 0, summaries = 0, counted = 0, logged = 0;
  for (int i = 0; i < 100'000; ++i) {
    const auto a = limiter.admit(t0 + i * 1ms);
    if (a.suppressed > 0) {
      ++summaries;
      ++lines;
      counted += a.suppressed;
    }
    if (a.log) {
      ++lines;
      ++logged;
    }
  }
  counted += limiter.take_suppressed(t0 + 200s);
  EXPECT_EQ(logged + counted, 100'000u);
  EXPECT_EQ(logged, 10u * 10u);
  EXPECT_EQ(summaries, 9u);  // the last window's count came from take_suppressed
  EXPECT_LE(lines, 11u * 10u);
}

TEST(LogLimiter, QuietPeriodsLogEverything) {
  LogLimiter limiter(2, 1s);
  for (int i = 0; i < 50; ++i) {
    const auto a = limiter.admit(t0 + i * 600ms);  // fewer than 2 a window
    EXPECT_TRUE(a.log) << i;
    EXPECT_EQ(a.suppressed, 0u) << i;
  }
}

TEST(LogLimiter, ZeroBurstCountsEverything) {
  LogLimiter limiter(0, 1s);
  EXPECT_FALSE(limiter.admit(t0).log);
  EXPECT_FALSE(limiter.admit(t0 + 2s).log);  // a new window: the old count is kept, not lost
  EXPECT_EQ(limiter.take_suppressed(t0 + 4s), 2u);
}

}  // namespace
}  // namespace mtasts
