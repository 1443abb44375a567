// The LMDB layout's DANE state (adapters/store/lmdb_layout.hpp): it round-trips through the
// extras record, and a malformed DANE value is a problem line that drops the extras record
// (as for any other malformed extras value) while the seed keys still give the policy.
#include "adapters/store/lmdb_layout.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "adapters/store/lmdb_store.hpp"
#include "core/domain.hpp"

#include "unit/adapters/temp_dir.hpp"

namespace mtasts::store {
namespace {

using nlohmann::json;

constexpr std::int64_t kT0 = 1'700'000'000;

DaneState dane_state(DaneVerdict verdict, bool required = false) {
  DaneState dane;
  dane.verdict = verdict;
  dane.reason = "1 of 2 MX hosts have DNSSEC-signed TLSA records (1 usable)";
  dane.hosts = {
      {10, "mx1.example.com", DaneHostState::usable, "1 of 1 TLSA records usable"},
      {20, "mx2.example.com", DaneHostState::no_tlsa,
       "no TLSA records (secure denial): opportunistic TLS"},
  };
  dane.checked_at = kT0;
  dane.expires_at = kT0 + 3600;
  dane.required = required;
  return dane;
}

CacheEntry enforce_entry() {
  CacheEntry entry;
  CachedPolicy cached;
  cached.policy.mode = Mode::enforce;
  cached.policy.max_age = 604800;
  cached.policy.mx = {"mx1.example.com", "*.example.net"};
  cached.id = "abc";
  cached.fetched_at = kT0;
  cached.expires_at = kT0 + 604800;
  cached.text = "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\n";
  entry.policy = cached;
  entry.checked_at = kT0 + 100;
  entry.next_check = kT0 + 86400;
  entry.report = "mailto:tlsrpt@example.com";
  entry.txt_dnssec = "secure";
  return entry;
}

// What the database would hand back for an encoded entry (views into `encoded`).
layout::RawRecord raw_of(const layout::Encoded& encoded) {
  layout::RawRecord raw;
  for (layout::Field field : layout::kFields) {
    if (const auto& value = encoded[field]) raw[field] = std::string_view(*value);
  }
  return raw;
}

layout::Decoded round_trip(const CacheEntry& entry) {
  auto encoded = layout::encode(entry);
  EXPECT_TRUE(encoded) << encoded.error().reason;
  if (!encoded) return {};
  return layout::decode(raw_of(*encoded));
}

// `entry` encoded, its extras JSON changed by `change`, and decoded again: what a record
// written by another version, or damaged, reads back as.
template <class Change>
layout::Decoded decode_with_extras(const CacheEntry& entry, Change change) {
  auto encoded = layout::encode(entry);
  EXPECT_TRUE(encoded) << encoded.error().reason;
  if (!encoded) return {};
  auto& text = encoded->values[static_cast<std::size_t>(layout::Field::extras)];
  json extras = json::parse(*text);
  change(extras);
  text = extras.dump();
  return layout::decode(raw_of(*encoded));
}

struct RoundTripRow {
  const char* name;
  CacheEntry entry;
};

TEST(LmdbLayoutDane, state_round_trips_through_the_extras) {
  auto with_dane = [](CacheEntry entry, std::optional<DaneState> dane) {
    entry.dane = std::move(dane);
    return entry;
  };
  DaneState failed = dane_state(DaneVerdict::failed);
  failed.hosts = {{10, "mx1.example.com", DaneHostState::failed,
                   "TLSA at _25._tcp.mx1.example.com lookup failed: servfail"}};
  failed.expires_at = kT0 + 60;
  DaneState every_state = dane_state(DaneVerdict::partial);
  every_state.hosts = {
      {0, "a.example", DaneHostState::usable, "ok"},
      {5, "b.example", DaneHostState::unusable, "none of 1 usable"},
      {10, "c.example", DaneHostState::no_tlsa, ""},
      {15, "d.example", DaneHostState::insecure, "address records are not DNSSEC-signed"},
      {65535, "e.example", DaneHostState::no_address, "no A or AAAA records"},
  };
  DaneState no_hosts = dane_state(DaneVerdict::not_applicable);
  no_hosts.hosts.clear();
  no_hosts.reason = "the MX RRset of example.com is not DNSSEC-signed: DANE does not apply";
  DaneState sixteen = dane_state(DaneVerdict::all_usable);
  sixteen.hosts.clear();
  for (int i = 0; i < 16; ++i) {
    sixteen.hosts.push_back({static_cast<std::uint16_t>(i), "mx" + std::to_string(i) + ".example",
                             DaneHostState::usable, "ok"});
  }
  DaneState zero_times = dane_state(DaneVerdict::all_usable);
  zero_times.checked_at = 0;
  zero_times.expires_at = 0;
  DaneState far_future = dane_state(DaneVerdict::all_usable);
  far_future.expires_at = layout::kMaxTime;

  CacheEntry negative;  // no policy, only DANE
  negative.checked_at = kT0;
  negative.next_check = kT0 + 3600;

  const std::vector<RoundTripRow> rows = {
      {"no DANE state", enforce_entry()},
      {"I-1 all usable", with_dane(enforce_entry(), dane_state(DaneVerdict::all_usable))},
      {"DANE-05 partial", with_dane(enforce_entry(), dane_state(DaneVerdict::partial))},
      {"I-5 failed", with_dane(enforce_entry(), failed)},
      {"I-8 not applicable, no hosts", with_dane(enforce_entry(), no_hosts)},
      {"DANE-15 I-11 required", with_dane(enforce_entry(), dane_state(DaneVerdict::not_applicable,
                                                                      /*required=*/true))},
      {"every host state", with_dane(enforce_entry(), every_state)},
      {"sixteen hosts", with_dane(enforce_entry(), sixteen)},
      {"times at 0", with_dane(enforce_entry(), zero_times)},
      {"times at the limit", with_dane(enforce_entry(), far_future)},
      {"I-10 no policy, DANE all usable", with_dane(negative, dane_state(DaneVerdict::all_usable))},
  };
  for (const RoundTripRow& row : rows) {
    SCOPED_TRACE(row.name);
    const layout::Decoded decoded = round_trip(row.entry);
    EXPECT_TRUE(decoded.problems.empty())
        << (decoded.problems.empty() ? "" : decoded.problems.front());
    ASSERT_TRUE(decoded.entry);
    EXPECT_EQ(*decoded.entry, row.entry);
  }
}

TEST(LmdbLayoutDane, extras_keys_as_documented) {
  CacheEntry entry = enforce_entry();
  entry.dane = dane_state(DaneVerdict::partial, true);
  auto encoded = layout::encode(entry);
  ASSERT_TRUE(encoded) << encoded.error().reason;
  const json extras =
      json::parse(*encoded->values[static_cast<std::size_t>(layout::Field::extras)]);
  EXPECT_EQ(extras.at("dane"), "partial");
  EXPECT_EQ(extras.at("dane_reason"), entry.dane->reason);
  EXPECT_EQ(extras.at("dane_hosts"),
            "10 mx1.example.com usable 1 of 1 TLSA records usable\n"
            "20 mx2.example.com no-tlsa no TLSA records (secure denial): opportunistic TLS");
  EXPECT_EQ(extras.at("dane_checked_at"), kT0);
  EXPECT_EQ(extras.at("dane_expires_at"), kT0 + 3600);
  EXPECT_EQ(extras.at("dane_required"), true);
  // Without a DANE state none of the keys is written.
  auto plain = layout::encode(enforce_entry());
  ASSERT_TRUE(plain);
  const json plain_extras =
      json::parse(*plain->values[static_cast<std::size_t>(layout::Field::extras)]);
  for (const char* key : {"dane", "dane_reason", "dane_hosts", "dane_checked_at", "dane_expires_at",
                          "dane_required"}) {
    EXPECT_FALSE(plain_extras.contains(key)) << key;
  }
  // The seed keys Exim reads are the same with or without DANE.
  for (layout::Field field : {layout::Field::mode, layout::Field::mx, layout::Field::expire,
                              layout::Field::id, layout::Field::report}) {
    EXPECT_EQ((*encoded)[field], (*plain)[field]);
  }
}

TEST(LmdbLayoutDane, long_reason_is_cut_when_stored) {
  CacheEntry entry = enforce_entry();
  entry.dane = dane_state(DaneVerdict::failed);
  entry.dane->reason = std::string(layout::kMaxLastError + 100, 'r');
  const layout::Decoded decoded = round_trip(entry);
  ASSERT_TRUE(decoded.entry);
  ASSERT_TRUE(decoded.entry->dane);
  EXPECT_EQ(decoded.entry->dane->reason, std::string(layout::kMaxLastError, 'r'));
  EXPECT_TRUE(decoded.problems.empty());
}

struct RefuseRow {
  const char* name;
  DaneState dane;
};

TEST(LmdbLayoutDane, encode_refuses_what_would_not_read_back) {
  auto changed = [](auto change) {
    DaneState dane = dane_state(DaneVerdict::all_usable);
    change(dane);
    return dane;
  };
  const std::vector<RefuseRow> rows = {
      {"checked_at negative", changed([](DaneState& d) { d.checked_at = -1; })},
      {"expires_at negative", changed([](DaneState& d) { d.expires_at = -1; })},
      {"expires_at after 9999", changed([](DaneState& d) { d.expires_at = layout::kMaxTime + 1; })},
      {"host name upper case", changed([](DaneState& d) { d.hosts[0].name = "MX1.example.com"; })},
      {"host name with a space",
       changed([](DaneState& d) { d.hosts[0].name = "mx1 example.com"; })},
      {"host name empty", changed([](DaneState& d) { d.hosts[0].name = ""; })},
      {"host name one label", changed([](DaneState& d) { d.hosts[0].name = "localhost"; })},
      {"host name with underscore",
       changed([](DaneState& d) { d.hosts[0].name = "_25._tcp.mx1.example.com"; })},
      {"host name with a trailing dot",
       changed([](DaneState& d) { d.hosts[0].name = "mx1.example.com."; })},
      {"seventeen hosts", changed([](DaneState& d) {
         d.hosts.clear();
         for (int i = 0; i < 17; ++i) {
           d.hosts.push_back(
               {10, "mx" + std::to_string(i) + ".example", DaneHostState::usable, "ok"});
         }
       })},
  };
  for (const RefuseRow& row : rows) {
    SCOPED_TRACE(row.name);
    CacheEntry entry = enforce_entry();
    entry.dane = row.dane;
    auto encoded = layout::encode(entry);
    ASSERT_FALSE(encoded);
    EXPECT_EQ(encoded.error().category, ErrorCategory::store);
    EXPECT_NE(encoded.error().reason.find("DANE"), std::string::npos) << encoded.error().reason;
  }
}

struct GarbageRow {
  const char* name;
  std::string extras;        // the extras record as found
  std::string problem_part;  // of the problem line
};

// The extras record of enforce_entry() with a DANE state, with `key` set to `value` (raw JSON).
std::string extras_with(const std::string& key, const std::string& value) {
  CacheEntry entry = enforce_entry();
  entry.dane = dane_state(DaneVerdict::all_usable);
  json extras =
      json::parse(*layout::encode(entry)->values[static_cast<std::size_t>(layout::Field::extras)]);
  extras.erase(key);
  std::string text = extras.dump();
  text.pop_back();  // "}"
  return text + ",\"" + key + "\":" + value + "}";
}

TEST(LmdbLayoutDane, malformed_dane_extras_are_a_problem_not_a_crash) {
  std::string seventeen;
  for (int i = 0; i < 17; ++i) {
    if (i > 0) seventeen += "\\n";
    seventeen += std::to_string(i) + " mx" + std::to_string(i) + ".example usable ok";
  }
  const std::vector<GarbageRow> rows = {
      {"verdict unknown", extras_with("dane", R"("maybe")"), "\"dane\" is not a DANE verdict"},
      {"verdict with underscore", extras_with("dane", R"("all_usable")"), "not a DANE verdict"},
      {"verdict empty", extras_with("dane", R"("")"), "not a DANE verdict"},
      {"verdict a number", extras_with("dane", "2"), "\"dane\" has the wrong type"},
      {"verdict a boolean", extras_with("dane", "true"), "\"dane\" is a boolean"},
      {"verdict null", extras_with("dane", "null"), "\"dane\" is null"},
      {"verdict an object", extras_with("dane", R"({"v":"partial"})"), "\"dane\" is an object"},
      {"verdict twice", extras_with("dane", R"("partial","dane":"failed")"), "appears twice"},
      {"host line with unknown state",
       extras_with("dane_hosts", R"("10 mx1.example.com secure ok")"),
       "\"dane_hosts\" is not a list of MX hosts"},
      {"host line without state", extras_with("dane_hosts", R"("10 mx1.example.com")"),
       "not a list of MX hosts"},
      {"host line with bad preference",
       extras_with("dane_hosts", R"("ten mx1.example.com usable")"), "not a list of MX hosts"},
      {"host line preference too big",
       extras_with("dane_hosts", R"("70000 mx1.example.com usable")"), "not a list of MX hosts"},
      {"empty host line",
       extras_with("dane_hosts", R"("10 a.example usable\n\n20 b.example usable")"),
       "not a list of MX hosts"},
      {"seventeen hosts", extras_with("dane_hosts", "\"" + seventeen + "\""),
       "not a list of MX hosts"},
      {"host lines too long",
       extras_with("dane_hosts", "\"10 mx.example usable " + std::string(20000, 'x') + "\""),
       "not a list of MX hosts"},
      {"host name upper case", extras_with("dane_hosts", R"("10 MX1.example.com usable ok")"),
       "not a list of MX hosts"},
      {"host name one label", extras_with("dane_hosts", R"("10 localhost usable ok")"),
       "not a list of MX hosts"},
      {"host name with underscore", extras_with("dane_hosts", R"("10 mx_1.example.com usable ok")"),
       "not a list of MX hosts"},
      {"host name with a trailing dot",
       extras_with("dane_hosts", R"("10 mx1.example.com. usable ok")"), "not a list of MX hosts"},
      {"host name a key of another domain",
       extras_with("dane_hosts", R"("10 _mtasts:example.org usable ok")"),
       "not a list of MX hosts"},
      {"host name with a control byte",
       extras_with("dane_hosts", R"("10 mx1.exam\u0001ple.com usable ok")"),
       "not a list of MX hosts"},
      {"hosts a number", extras_with("dane_hosts", "10"), "\"dane_hosts\" has the wrong type"},
      {"hosts an array", extras_with("dane_hosts", R"(["10 mx1.example.com usable ok"])"),
       "\"dane_hosts\" is an array"},
      {"checked_at negative", extras_with("dane_checked_at", "-1"),
       "\"dane_checked_at\" is negative"},
      {"checked_at after 9999", extras_with("dane_checked_at", "253402300800"),
       "\"dane_checked_at\" is not in [0, 253402300799]"},
      {"expires_at after 9999", extras_with("dane_expires_at", "253402300800"),
       "\"dane_expires_at\" is not in [0, 253402300799]"},
      {"expires_at huge", extras_with("dane_expires_at", "18446744073709551615"),
       "\"dane_expires_at\" is not in"},
      {"expires_at beyond 64 bits", extras_with("dane_expires_at", "1e30"),
       "\"dane_expires_at\" is a fraction"},
      {"expires_at a fraction", extras_with("dane_expires_at", "1700003600.5"),
       "\"dane_expires_at\" is a fraction"},
      {"expires_at a string", extras_with("dane_expires_at", R"("1700003600")"),
       "\"dane_expires_at\" is a string"},
      {"required a string", extras_with("dane_required", R"("yes")"),
       "\"dane_required\" is a string"},
      {"required a number", extras_with("dane_required", "1"),
       "\"dane_required\" has the wrong type"},
      {"reason a number", extras_with("dane_reason", "5"), "\"dane_reason\" has the wrong type"},
      {"reason too long", extras_with("dane_reason", "\"" + std::string(20000, 'r') + "\""),
       "\"dane_reason\" is too long"},
  };
  for (const GarbageRow& row : rows) {
    SCOPED_TRACE(row.name);
    CacheEntry sound = enforce_entry();
    sound.dane = dane_state(DaneVerdict::all_usable);
    auto encoded = layout::encode(sound);
    ASSERT_TRUE(encoded);
    layout::RawRecord raw = raw_of(*encoded);
    raw[layout::Field::extras] = std::string_view(row.extras);

    const layout::Decoded decoded = layout::decode(raw);
    ASSERT_EQ(decoded.problems.size(), 1u);
    EXPECT_TRUE(decoded.problems[0].starts_with("extras record ignored: ")) << decoded.problems[0];
    EXPECT_NE(decoded.problems[0].find(row.problem_part), std::string::npos) << decoded.problems[0];
    EXPECT_EQ(decoded.problems[0].find('\n'), std::string::npos);
    ASSERT_TRUE(decoded.entry);
    const CacheEntry& entry = *decoded.entry;
    // The extras record is ignored as a whole: no DANE state (so the service looks again, never
    // a DANE verdict made from garbage), the seed keys still give the policy, and DNS is
    // consulted at once.
    EXPECT_FALSE(entry.dane);
    ASSERT_TRUE(entry.policy);
    EXPECT_EQ(entry.policy->policy.mode, Mode::enforce);
    EXPECT_EQ(entry.policy->policy.mx, sound.policy->policy.mx);
    EXPECT_EQ(entry.policy->id, "abc");
    EXPECT_EQ(entry.policy->expires_at, sound.policy->expires_at);
    EXPECT_EQ(entry.report, sound.report);
    EXPECT_EQ(entry.next_check, 0);
    EXPECT_EQ(entry.checked_at, 0);
  }
}

TEST(LmdbLayoutDane, dane_keys_without_a_verdict_make_no_state) {
  // Only "dane" marks a DANE state; sound stray keys are read and make none.
  const std::string extras =
      R"({"v":1,"checked_at":5,"next_check":6,"dane_hosts":"10 mx1.example.com usable ok",)"
      R"("dane_expires_at":99,"dane_required":true})";
  layout::RawRecord raw;
  raw[layout::Field::extras] = std::string_view(extras);
  const layout::Decoded decoded = layout::decode(raw);
  ASSERT_TRUE(decoded.entry);
  EXPECT_TRUE(decoded.problems.empty());
  EXPECT_FALSE(decoded.entry->dane);
  EXPECT_EQ(decoded.entry->next_check, 6);
}

TEST(LmdbLayoutDane, dane_state_alone_with_defaults) {
  // A verdict without the other keys reads as that verdict, expired (expires_at 0): the service
  // checks again before trusting it.
  const std::string extras = R"({"v":1,"next_check":6,"dane":"failed"})";
  layout::RawRecord raw;
  raw[layout::Field::extras] = std::string_view(extras);
  const layout::Decoded decoded = layout::decode(raw);
  ASSERT_TRUE(decoded.entry);
  EXPECT_TRUE(decoded.problems.empty());
  ASSERT_TRUE(decoded.entry->dane);
  EXPECT_EQ(decoded.entry->dane->verdict, DaneVerdict::failed);
  EXPECT_EQ(decoded.entry->dane->expires_at, 0);
  EXPECT_TRUE(decoded.entry->dane->hosts.empty());
  EXPECT_FALSE(decoded.entry->dane->required);
}

// The same through the store: saved and loaded back unchanged, with no notice.
TEST(LmdbLayoutDane, store_round_trip_and_repair) {
  test_support::TempDir dir("mtasts-layout-test");
  LmdbStore store(dir.file("cache.mdb"));
  CacheEntry entry = enforce_entry();
  entry.dane = dane_state(DaneVerdict::partial, true);
  ASSERT_TRUE(store.save("example.com", entry));
  auto loaded = store.load("example.com");
  ASSERT_TRUE(loaded) << loaded.error().reason;
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ(**loaded, entry);
  EXPECT_TRUE(store.notices().empty());
}

}  // namespace
}  // namespace mtasts::store

namespace mtasts::store {
namespace {

// RFC 8461 §8.1: the id is re-checked once the TXT TTL has passed; the entry keeps that time.
TEST(LmdbLayoutTxtTtl, txt_expires_at_round_trips) {
  CacheEntry entry = enforce_entry();
  entry.txt_expires_at = kT0 + 400;
  entry.next_check = kT0 + 400;
  layout::Decoded decoded = round_trip(entry);
  EXPECT_TRUE(decoded.problems.empty());
  EXPECT_EQ(decoded.entry, entry);
}

// A policy cached by a version that re-checked ids only daily has no txt_expires_at: the next
// lookup consults DNS at once instead of trusting a next_check up to a day away.
TEST(LmdbLayoutTxtTtl, policy_from_before_the_ttl_was_kept_is_rechecked_at_once) {
  auto without_ttl = [](json& extras) { extras.erase("txt_expires_at"); };
  layout::Decoded decoded = decode_with_extras(enforce_entry(), without_ttl);
  ASSERT_TRUE(decoded.entry.has_value());
  ASSERT_TRUE(decoded.entry->policy.has_value());
  EXPECT_EQ(decoded.entry->next_check, 0);
  EXPECT_EQ(decoded.entry->policy->id, "abc");

  CacheEntry negative;  // no policy: nothing to re-check early
  negative.checked_at = kT0;
  negative.next_check = kT0 + 3600;
  EXPECT_EQ(decode_with_extras(negative, without_ttl).entry->next_check, kT0 + 3600);
}

TEST(LmdbLayoutTxtTtl, malformed_txt_expires_at_is_a_problem) {
  for (const char* bad : {"-5", "\"soon\"", "1e300", "true"}) {
    layout::Decoded decoded = decode_with_extras(
        enforce_entry(), [bad](json& extras) { extras["txt_expires_at"] = json::parse(bad); });
    EXPECT_FALSE(decoded.problems.empty()) << bad;
    ASSERT_TRUE(decoded.entry.has_value()) << bad;
    EXPECT_EQ(decoded.entry->next_check, 0) << bad;
  }
}

}  // namespace
}  // namespace mtasts::store

namespace mtasts::store {
namespace {

// Found by fuzz/fuzz_lmdb_layout.cpp: what reads back must be what encode() would write, and a
// problem line stays one line whatever the stored key names hold.
TEST(LmdbLayoutFuzzFindings, malformed_extras_never_read_back_as_something_unwritable) {
  auto with_extras = [](auto change) { return decode_with_extras(enforce_entry(), change); };
  // A nested value under a key holding a line break: one problem line, the break quoted.
  layout::Decoded nested = with_extras([](json& e) { e["a\nb"] = json::object(); });
  ASSERT_EQ(nested.problems.size(), 1u);
  EXPECT_EQ(nested.problems[0].find('\n'), std::string::npos) << nested.problems[0];
  EXPECT_EQ(nested.entry->next_check, 0);
  // A DANE host reason with control octets (an escape sequence): encode() never writes one.
  layout::Decoded control = with_extras([](json& e) {
    e["dane"] = "partial";
    e["dane_hosts"] = "10 mx1.example.com usable \x1b[2J\n";
  });
  EXPECT_FALSE(control.problems.empty());
  EXPECT_FALSE(control.entry->dane.has_value());
  // A policy text longer than encode() stores could never be written back.
  layout::Decoded huge = with_extras([](json& e) { e["text"] = std::string(70000, 'x'); });
  EXPECT_FALSE(huge.problems.empty());
  EXPECT_EQ(huge.entry->next_check, 0);
}

}  // namespace
}  // namespace mtasts::store

namespace mtasts::store {
namespace {

// The layout checks what it reads back with the core's own validators (style §4: adapters call
// the core's validators): a seed :mx pattern is what parse_policy accepts for an mx line, an :id
// what parse_sts_record accepts, a key's domain what normalize_domain returns. The rows marked
// "stricter" were accepted by the layout's former copies of those checks.
struct SeedRow {
  const char* name;
  std::string mx;
  std::string id;
  bool policy;  // false: "policy ignored"
};

layout::Decoded decode_seed_keys(const SeedRow& row) {
  layout::RawRecord raw;
  raw[layout::Field::mode] = "enforce";
  raw[layout::Field::mx] = row.mx;
  raw[layout::Field::expire] = "1700000000";
  raw[layout::Field::id] = row.id;
  return layout::decode(raw);
}

TEST(LmdbLayoutCoreGrammar, seed_keys_are_checked_as_the_core_parses_them) {
  const std::vector<SeedRow> rows = {
      {"STS-14 §3.2 mx patterns, lower-cased", "mx1.Example.com:*.example.NET", "abc", true},
      {"STS-14 §3.2 one-label domain", "*.com:com", "abc", true},
      {"STS-14 §3.2 A-label", "mx.xn--mnchen-3ya.de", "abc", true},
      {"STS-14 stricter: all-numeric top label", "mx.example.123", "abc", false},
      {"STS-14 stricter: address text", "192.0.2.1", "abc", false},
      {"STS-14 stricter: wildcard over a number", "*.123", "abc", false},
      {"STS-51 stricter: xn-- label that is no A-label", "mx.xn--zz.example", "abc", false},
      {"STS-14 R-LDH label kept", "r1---sn-abc.example.com", "abc", true},
      {"STS-03 §3.1 id of 32", "mx.example.com", std::string(32, 'Z'), true},
      {"STS-03 §3.1 id of 33", "mx.example.com", std::string(33, 'Z'), false},
      {"STS-03 §3.1 id with a hyphen", "mx.example.com", "ab-c", false},
  };
  for (const SeedRow& row : rows) {
    SCOPED_TRACE(row.name);
    const layout::Decoded decoded = decode_seed_keys(row);
    ASSERT_TRUE(decoded.entry);
    EXPECT_EQ(decoded.entry->policy.has_value(), row.policy);
    // The same verdict as the core parsers give the policy file and the TXT record.
    std::string body = "version: STSv1\nmode: enforce\nmax_age: 86400\n";
    for (std::size_t start = 0; start <= row.mx.size();) {
      const std::size_t colon = std::min(row.mx.find(':', start), row.mx.size());
      body += "mx: " + row.mx.substr(start, colon - start) + "\n";
      start = colon + 1;
    }
    const bool core_accepts =
        parse_policy(body).has_value() && parse_sts_record("v=STSv1; id=" + row.id).has_value();
    EXPECT_EQ(core_accepts, row.policy);
    if (decoded.entry->policy) {
      EXPECT_EQ(decoded.entry->policy->policy.mx, parse_policy(body)->mx);
    }
  }
}

TEST(LmdbLayoutCoreGrammar, storable_domain_is_a_normalized_domain) {
  for (const char* domain : {"example.com", "mx.xn--mnchen-3ya.de", "r1---sn-abc.example.com"}) {
    EXPECT_TRUE(layout::is_storable_domain(domain)) << domain;
    EXPECT_EQ(normalize_domain(domain), domain);
  }
  for (const char* domain :
       {"Example.com", "example", "example.com.", "_mtasts.example.com", "example.com:mx", "",
        // stricter than the former copy of the LDH check:
        "example.123", "192.0.2.1", "xn--zz.example"}) {
    EXPECT_FALSE(layout::is_storable_domain(domain)) << domain;
    const auto normalized = normalize_domain(domain);
    EXPECT_FALSE(normalized && *normalized == domain) << domain;
  }
  EXPECT_FALSE(layout::parse_key("example.123:mode"));
  EXPECT_FALSE(layout::parse_key("_mtasts:xn--zz.example"));
}

TEST(LmdbLayoutCoreGrammar, encode_refuses_what_the_core_would_not_parse) {
  CacheEntry numeric_mx = enforce_entry();
  numeric_mx.policy->policy.mx = {"*.123"};
  ASSERT_FALSE(layout::encode(numeric_mx));
  EXPECT_NE(layout::encode(numeric_mx).error().reason.find("mx pattern"), std::string::npos);

  CacheEntry bad_a_label = enforce_entry();
  bad_a_label.policy->policy.mx = {"mx.xn--zz.example"};
  EXPECT_FALSE(layout::encode(bad_a_label));

  CacheEntry failed_id = enforce_entry();
  failed_id.failed_id = "not-an-id";
  EXPECT_FALSE(layout::encode(failed_id));

  // A DANE host is an MX target as DNS gave it: one named by address text or a malformed
  // A-label is the receiver's problem, and the entry stays cacheable (else every delivery would
  // look the domain up again). Underscores and one-label names are still refused.
  for (const char* name : {"192.0.2.1", "mx.xn--zz.example"}) {
    CacheEntry odd_host = enforce_entry();
    odd_host.dane = dane_state(DaneVerdict::partial);
    odd_host.dane->hosts[0].name = name;
    auto encoded = layout::encode(odd_host);
    ASSERT_TRUE(encoded) << name;
  }
  for (const char* name : {"mx_1.example", "localhost", "-mx.example"}) {
    CacheEntry bad_host = enforce_entry();
    bad_host.dane = dane_state(DaneVerdict::partial);
    bad_host.dane->hosts[0].name = name;
    ASSERT_FALSE(layout::encode(bad_host)) << name;
    EXPECT_NE(layout::encode(bad_host).error().reason.find("DANE"), std::string::npos);
  }
}

}  // namespace
}  // namespace mtasts::store
