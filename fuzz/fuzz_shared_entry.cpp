// Fuzzes the fleet's shared cache value decoder (src/adapters/store/shared_entry_codec.hpp): a
// Redis value anybody who can write to the Redis may have left under our key, and the rules that
// judge it (core/shared_entry.hpp).
// Input: the value as stored under mtasts:v1:example.com.
// Invariants: never a crash; an accepted value holds no DANE state, its policy (if any) is what
// its own text says, it encodes again and reads back as itself; sanitizing it never lets it
// answer longer than this member's settings allow.
#include <string>

#include "adapters/store/shared_entry_codec.hpp"
#include "core/policy.hpp"
#include "core/shared_entry.hpp"
#include "fuzz_check.hpp"

using namespace mtasts;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string domain = "example.com";
  auto entry = store::decode_shared(domain, fuzz::as_text(data, size));
  if (!entry) {
    FUZZ_CHECK(!entry.error().empty());
    return 0;
  }
  FUZZ_CHECK(!entry->dane.has_value());
  if (entry->policy) {
    auto parsed = parse_policy(entry->policy->text);
    FUZZ_CHECK(parsed && *parsed == entry->policy->policy);
  }
  auto again = store::encode_shared(domain, *entry);
  FUZZ_CHECK(again.has_value());
  auto back = store::decode_shared(domain, *again);
  FUZZ_CHECK(back && *back == *entry);

  const UnixTime now = 1'700'000'000;
  const Timing timing;
  std::string why;
  if (auto clean = sanitize_shared(*entry, now, timing, why)) {
    FUZZ_CHECK(clean->next_check <= now + 3600);
    FUZZ_CHECK(clean->retry_fetch_at <= now + timing.fetch_backoff_max);
    FUZZ_CHECK(!clean->policy ||
               clean->policy->expires_at <= clean->policy->fetched_at + kMaxAgeCap);
    (void)judge_shared(std::nullopt, *clean, now, timing, false);
    (void)judge_shared(*clean, *clean, now, timing, true);
  } else {
    FUZZ_CHECK(!why.empty());
  }
  return 0;
}
