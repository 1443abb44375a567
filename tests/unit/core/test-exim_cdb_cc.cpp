// The cdb export for Exim light (design §2.5; core/exim_cdb.hpp): the same answers as getmta,
// getmx and ignorelist, fresh entries only, and how long the file holds.
#include "core/exim_cdb.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace mtasts {
namespace {

constexpr UnixTime kT0 = 1'700'000'000;

CacheEntry policy_entry(Mode mode, std::vector<std::string> mx, UnixTime next_check) {
  CacheEntry entry;
  entry.policy = CachedPolicy{Policy{mode, 86400, std::move(mx)}, "v1", kT0, kT0 + 86400, "body"};
  entry.checked_at = kT0;
  entry.next_check = next_check;
  return entry;
}

CacheEntry negative_entry(UnixTime next_check, bool unavailable = false) {
  CacheEntry entry;
  entry.checked_at = kT0;
  entry.next_check = next_check;
  entry.unavailable = unavailable;
  return entry;
}

using Records = std::vector<std::pair<std::string, std::string>>;

TEST(EximCdb, AnswersPerDomain) {
  const std::vector<std::pair<std::string, CacheEntry>> entries{
      {"enforce.example",
       policy_entry(Mode::enforce, {"mx1.enforce.example", "*.mail.enforce.example"}, kT0 + 900)},
      {"testing.example", policy_entry(Mode::testing, {"mx1.testing.example"}, kT0 + 800)},
      {"none.example", policy_entry(Mode::none, {}, kT0 + 1000)},
      {"nopolicy.example", negative_entry(kT0 + 3600)},
      {"unavailable.example", negative_entry(kT0 + 60, true)},
  };
  const CdbRecords out = exim_cdb_records(entries, kT0 + 10, false);
  const Records expected{
      {"enforce.example", "enforce"},
      {"enforce.example:mx", "mx1.enforce.example:*.mail.enforce.example"},
      {"enforce.example:ignorelist",
       R"(<; ! ^mx1\.enforce\.example$ ; ! ^[^.]+\.mail\.enforce\.example$ ; *)"},
      {"testing.example", "testing"},
      {"testing.example:mx", "mx1.testing.example"},
      {"testing.example:ignorelist", ""},
      {"none.example", "none"},
      {"none.example:mx", ""},
      {"none.example:ignorelist", ""},
      {"nopolicy.example", "none"},
      {"nopolicy.example:mx", ""},
      {"nopolicy.example:ignorelist", ""},
      {"unavailable.example", "none"},  // STS-25: not strict: deliver as without MTA-STS
      {"unavailable.example:mx", ""},
      {"unavailable.example:ignorelist", ""},
  };
  EXPECT_EQ(out.records, expected);
  EXPECT_EQ(out.valid_until, kT0 + 60);  // the earliest next_check
  // Strict mode: a published but unavailable policy holds the mail.
  const CdbRecords strict = exim_cdb_records(entries, kT0 + 10, true);
  EXPECT_EQ(strict.records[12],
            (std::pair<std::string, std::string>{"unavailable.example", "fail"}));
}

TEST(EximCdb, StaleEntriesAndForeignKeysAreLeftOut) {
  const std::vector<std::pair<std::string, CacheEntry>> entries{
      {"stale.example", policy_entry(Mode::enforce, {"mx.stale.example"}, kT0 + 5)},
      {"_mtasts:schema", negative_entry(kT0 + 3600)},
      {"odd:name", negative_entry(kT0 + 3600)},
      {"", negative_entry(kT0 + 3600)},
      {"fresh.example", negative_entry(kT0 + 3600)},
  };
  const CdbRecords out = exim_cdb_records(entries, kT0 + 5, false);
  ASSERT_EQ(out.records.size(), 3u);
  EXPECT_EQ(out.records[0].first, "fresh.example");
  EXPECT_EQ(out.valid_until, kT0 + 3600);
}

TEST(EximCdb, NothingToExport) {
  const CdbRecords out = exim_cdb_records({}, kT0, false);
  EXPECT_TRUE(out.records.empty());
  EXPECT_EQ(out.valid_until, std::numeric_limits<UnixTime>::max());
}

}  // namespace
}  // namespace mtasts
