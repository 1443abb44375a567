// The shared cache's value (adapters/store/shared_entry_codec.hpp): what a member writes reads
// back as itself, and every kind of value a hostile or broken writer could leave is refused
// with a reason, never repaired into something trusted.
#include "adapters/store/shared_entry_codec.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

namespace mtasts::store {
namespace {

constexpr UnixTime kT0 = 1'700'000'000;

CacheEntry enforce_entry() {
  CacheEntry entry;
  CachedPolicy cached;
  cached.policy.mode = Mode::enforce;
  cached.policy.max_age = 604800;
  cached.policy.mx = {"mx1.example.com", "*.example.net"};
  cached.id = "abc";
  cached.fetched_at = kT0;
  cached.expires_at = kT0 + 604800;
  cached.text =
      "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\nmax_age: 604800\n";
  entry.policy = cached;
  entry.checked_at = kT0 + 100;
  entry.next_check = kT0 + 3700;
  entry.txt_expires_at = kT0 + 3700;
  entry.report = "mailto:tlsrpt@example.com";
  entry.txt_dnssec = "insecure";
  return entry;
}

nlohmann::json encoded_json(const CacheEntry& entry, const std::string& domain = "example.com") {
  auto value = encode_shared(domain, entry);
  EXPECT_TRUE(value) << value.error().reason;
  return nlohmann::json::parse(*value);
}

TEST(SharedEntryCodec, RoundTrip) {
  const CacheEntry entry = enforce_entry();
  auto value = encode_shared("example.com", entry);
  ASSERT_TRUE(value) << value.error().reason;
  auto back = decode_shared("example.com", *value);
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(*back, entry);

  CacheEntry negative;
  negative.checked_at = kT0;
  negative.next_check = kT0 + 3600;
  negative.last_error = "no_record: no TXT record at _mta-sts.example.org (nxdomain)";
  value = encode_shared("example.org", negative);
  ASSERT_TRUE(value);
  back = decode_shared("example.org", *value);
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(*back, negative);
}

TEST(SharedEntryCodec, DaneIsNeverShared) {
  CacheEntry entry = enforce_entry();
  entry.dane = DaneState{DaneVerdict::all_usable, "secure TLSA", {}, kT0, kT0 + 60, false};
  const nlohmann::json json = encoded_json(entry);
  auto back = decode_shared("example.com", json.dump());
  ASSERT_TRUE(back) << back.error();
  EXPECT_FALSE(back->dane.has_value());
}

TEST(SharedEntryCodec, RefusesWhatIsNotOurs) {
  const nlohmann::json good = encoded_json(enforce_entry());
  auto refused = [](const std::string& value, const std::string& domain = "example.com") {
    auto decoded = decode_shared(domain, value);
    EXPECT_FALSE(decoded) << value.substr(0, 200);
    return decoded ? std::string() : decoded.error();
  };
  EXPECT_NE(refused("not json").find("JSON"), std::string::npos);
  EXPECT_NE(refused(std::string(300 * 1024, 'x')).find("octets"), std::string::npos);
  EXPECT_NE(refused(good.dump(), "example.org").find("another domain"), std::string::npos)
      << "a value copied under another key";

  auto changed = [&good](const char* key, nlohmann::json value) {
    nlohmann::json copy = good;
    copy[key] = std::move(value);
    return copy.dump();
  };
  EXPECT_NE(refused(changed("v", 2)).find("version"), std::string::npos);
  EXPECT_NE(refused(changed("format", "other")).find("mtasts-entry"), std::string::npos);
  EXPECT_NE(refused(changed("surprise", "x")).find("unknown key"), std::string::npos);
  EXPECT_NE(refused(changed("mode", 3)).find("not a string"), std::string::npos);
  // The fields must say what the policy text says.
  EXPECT_NE(refused(changed("mode", "testing")).find("differ from its text"), std::string::npos);
  EXPECT_NE(refused(changed("mx", "evil.example")).find("differ from its text"), std::string::npos);
  EXPECT_NE(refused(changed("expire", std::to_string(kT0 + 9'000'000))).find("expiry"),
            std::string::npos);
  // Layout checks apply: a bad id, a malformed extras record.
  EXPECT_FALSE(decode_shared("example.com", changed("id", "not an id!")));
  EXPECT_FALSE(decode_shared("example.com", changed("extras", "{broken")));
  nlohmann::json without_extras = good;
  without_extras.erase("extras");
  EXPECT_FALSE(decode_shared("example.com", without_extras.dump()));
}

}  // namespace
}  // namespace mtasts::store
