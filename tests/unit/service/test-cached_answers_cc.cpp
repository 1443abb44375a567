// The answers every front-end gives without the network (service/cached_answers.hpp): the
// address-literal rule, the hit check (fresh, stale-while-revalidate, DANE) and the fallback
// after a lookup that did not finish.
#include "service/cached_answers.hpp"

#include <gtest/gtest.h>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include "unit/service/fakes.hpp"

namespace mtasts {
namespace {

constexpr UnixTime kT0 = 1'700'000'000;

std::shared_ptr<spdlog::logger> quiet() {
  return std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
}

CacheEntry enforce_entry(UnixTime next_check, UnixTime expires_at) {
  CacheEntry entry;
  entry.policy = CachedPolicy{Policy{Mode::enforce, expires_at - kT0, {"mx.example.net"}}, "v1",
                              kT0, expires_at, "body"};
  entry.checked_at = kT0;
  entry.next_check = next_check;
  entry.txt_expires_at = next_check;
  return entry;
}

struct TargetRow {
  const char* name;
  const char* raw;
  bool ok;
  const char* domain;  // when ok and not a literal
  bool literal;
};

TEST(TargetOf, STS30_literals_answer_at_once_STS51_domains_are_normalized) {
  const TargetRow rows[] = {
      {"STS-51 case and one root dot", "Example.COM.", true, "example.com", false},
      {"STS-51 U-label to A-label", "münchen.example", true, "xn--mnchen-3ya.example", false},
      {"STS-30 IPv4 literal: no lookup", "[192.0.2.1]", true, "", true},
      {"STS-30 IPv6 literal: no lookup", "[IPv6:2001:db8::1]", true, "", true},
      {"not a hostname: refused, naming the input", "a..b", false, "", false},
      {"empty: refused", "", false, "", false},
  };
  for (const TargetRow& row : rows) {
    auto target = target_of(row.raw);
    ASSERT_EQ(target.has_value(), row.ok) << row.name;
    if (!row.ok) {
      EXPECT_TRUE(target.error().reason.starts_with("invalid domain ")) << target.error().reason;
      continue;
    }
    EXPECT_EQ(target->answer.has_value(), row.literal) << row.name;
    EXPECT_EQ(target->domain, row.domain) << row.name;
    if (row.literal) {
      EXPECT_EQ(target->answer->kind, AnswerKind::no_policy) << row.name;
    }
  }
}

TEST(CachedAnswers, fresh_entry_answers_stale_only_when_allowed) {
  testing::MemoryStore store;
  auto logger = quiet();
  ServiceOptions options;
  store.entries["example.com"] = enforce_entry(kT0 + 300, kT0 + 86400);

  auto fresh = answer_from_cache(store, "example.com", kT0 + 299, options, false, *logger);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->hit, CacheHit::fresh);
  EXPECT_EQ(fresh->result.answer.mode, Mode::enforce);
  EXPECT_EQ(fresh->result.source, AnswerSource::cache);

  // RFC 8461 §8.1: past the TXT TTL the entry is stale; only mtastsd answers with it (and
  // re-checks in the background); the CLI and the module look it up.
  EXPECT_FALSE(answer_from_cache(store, "example.com", kT0 + 300, options, false, *logger));
  auto stale = answer_from_cache(store, "example.com", kT0 + 300, options, true, *logger);
  ASSERT_TRUE(stale);
  EXPECT_EQ(stale->hit, CacheHit::stale);
  EXPECT_EQ(stale->result.answer.mode, Mode::enforce);

  // An expired policy never answers by itself, stale or not.
  EXPECT_FALSE(answer_from_cache(store, "example.com", kT0 + 86400, options, true, *logger));
  EXPECT_FALSE(answer_from_cache(store, "other.example", kT0, options, true, *logger));
}

TEST(CachedAnswers, a_dane_state_that_is_not_fresh_needs_a_lookup) {
  testing::MemoryStore store;
  auto logger = quiet();
  ServiceOptions options;
  options.dane = true;
  CacheEntry entry = enforce_entry(kT0 + 300, kT0 + 86400);
  store.entries["example.com"] = entry;
  // DANE on and no state cached: not answerable from the cache, however fresh the policy.
  EXPECT_FALSE(answer_from_cache(store, "example.com", kT0 + 1, options, true, *logger));
  DaneState dane;
  dane.verdict = DaneVerdict::all_usable;
  dane.checked_at = kT0;
  dane.expires_at = kT0 + 60;
  entry.dane = dane;
  store.entries["example.com"] = entry;
  auto hit = answer_from_cache(store, "example.com", kT0 + 1, options, true, *logger);
  ASSERT_TRUE(hit);
  EXPECT_EQ(hit->result.answer.dane, DaneVerdict::all_usable);
  EXPECT_FALSE(answer_from_cache(store, "example.com", kT0 + 60, options, true, *logger));
}

TEST(CachedAnswers, after_a_failure_an_unexpired_policy_holds_and_nothing_is_no_policy) {
  testing::MemoryStore store;
  auto logger = quiet();
  ServiceOptions options;
  store.entries["example.com"] = enforce_entry(kT0 + 300, kT0 + 86400);
  LookupResult kept =
      answer_after_failure(store, "example.com", "timed out", kT0 + 400, options, *logger);
  EXPECT_EQ(kept.answer.kind, AnswerKind::policy);
  EXPECT_EQ(kept.answer.mode, Mode::enforce);
  ASSERT_TRUE(kept.entry);
  EXPECT_EQ(kept.entry->last_error, "dns_temporary: timed out");

  LookupResult none =
      answer_after_failure(store, "new.example", "timed out", kT0 + 400, options, *logger);
  EXPECT_EQ(none.answer.kind, AnswerKind::no_policy);
  options.strict = true;  // strict: published-but-unavailable and nothing cached holds the mail
  LookupResult strict =
      answer_after_failure(store, "new.example", "timed out", kT0 + 400, options, *logger);
  EXPECT_EQ(strict.answer.kind, AnswerKind::fail);

  options.strict = false;
  options.dane = true;  // a DANE check that did not finish is never "no DANE"
  LookupResult dane =
      answer_after_failure(store, "example.com", "timed out", kT0 + 400, options, *logger);
  EXPECT_EQ(dane.answer.dane, DaneVerdict::failed);
}

}  // namespace
}  // namespace mtasts
