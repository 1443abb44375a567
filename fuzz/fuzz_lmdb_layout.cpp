// Fuzzes the LMDB cache layout decoder (src/adapters/store/lmdb_layout.hpp): the values of one
// domain's keys as read back from a cache file, which is untrusted.
// Input: the first byte says which of the six keys are present (bit 0 :mode, 1 :mx, 2 :expire,
// 3 :id, 4 :report, 5 the _mtasts: extras JSON; '?' = all six); the rest is split at NUL bytes
// into the values in that order (the sixth part keeps any further NULs; missing parts are empty).
#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "adapters/store/lmdb_layout.hpp"
#include "fuzz_check.hpp"

using namespace mtasts;
namespace layout = mtasts::store::layout;

namespace {

// The raw record an encoded entry leaves in the database.
layout::RawRecord stored(const layout::Encoded& encoded) {
  layout::RawRecord raw;
  for (std::size_t i = 0; i < layout::kFields.size(); ++i) {
    if (encoded.values[i]) raw.values[i] = std::string_view(*encoded.values[i]);
  }
  return raw;
}

// What the store keeps of an entry: encode() cuts the free-text errors to kMaxLastError octets
// (lmdb_layout.hpp), and the cut may split a UTF-8 sequence that the JSON dump then replaces.
bool within_cuts(const CacheEntry& entry) {
  return entry.last_error.size() <= layout::kMaxLastError &&
         (!entry.dane || entry.dane->reason.size() <= layout::kMaxLastError);
}

// Encodes `entry` and reads it back. Returns the entry read back, or std::nullopt when encode()
// refused it.
std::optional<CacheEntry> round_trip(const CacheEntry& entry) {
  const auto encoded = layout::encode(entry);
  if (!encoded) {
    FUZZ_CHECK(encoded.error().category == ErrorCategory::store);
    FUZZ_CHECK(fuzz::one_line(encoded.error().reason));
    return std::nullopt;
  }
  const layout::Decoded again = layout::decode(stored(*encoded));
  // What we wrote reads back without complaint.
  FUZZ_CHECK(again.problems.empty());
  FUZZ_CHECK(again.entry.has_value());
  return again.entry;
}

void check_key(std::string_view value) {
  // A key that names a domain and field is exactly what key() builds for them.
  if (const auto ref = layout::parse_key(value)) {
    FUZZ_CHECK(layout::is_storable_domain(ref->domain));
    FUZZ_CHECK(layout::key(ref->domain, ref->field) == value);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned present = data[0];
  std::string_view rest = fuzz::as_text(data + 1, size - 1);

  std::array<std::string_view, layout::kFields.size()> parts{};
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const std::size_t nul = i + 1 < parts.size() ? rest.find('\0') : std::string_view::npos;
    parts[i] = rest.substr(0, nul);
    if (nul == std::string_view::npos) {
      rest = {};
    } else {
      rest.remove_prefix(nul + 1);
    }
  }
  layout::RawRecord raw;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if ((present & (1U << i)) != 0) raw.values[i] = parts[i];
    check_key(parts[i]);
  }

  const layout::Decoded decoded = layout::decode(raw);
  // Nothing stored reads as no entry; anything stored reads as an entry (maybe an empty one).
  FUZZ_CHECK(decoded.entry.has_value() == !raw.empty());
  for (const std::string& problem : decoded.problems) FUZZ_CHECK(fuzz::one_line(problem));
  if (!decoded.entry) return 0;
  const CacheEntry& entry = *decoded.entry;
  // Something was off: the service must look at DNS again at once (a bad :report alone only
  // drops the report).
  for (const std::string& problem : decoded.problems) {
    if (!problem.starts_with(":report ")) FUZZ_CHECK(entry.next_check == 0);
  }

  if (entry.policy) {
    // Never an enforce policy made from garbage: a known mode, and patterns unless mode none.
    const Policy& policy = entry.policy->policy;
    FUZZ_CHECK(policy.mode == Mode::enforce || policy.mode == Mode::testing ||
               policy.mode == Mode::none);
    FUZZ_CHECK(policy.mode == Mode::none || !policy.mx.empty());
    for (const std::string& pattern : policy.mx) FUZZ_CHECK(!pattern.empty());
    FUZZ_CHECK(!entry.policy->id.empty() && entry.policy->id.size() <= 32);
    FUZZ_CHECK(raw[layout::Field::mode] && raw[layout::Field::expire] && raw[layout::Field::id]);
  }

  // A clean read can be written back: the service re-stores what it loaded.
  const auto again = round_trip(entry);
  FUZZ_CHECK(again.has_value() || !decoded.problems.empty());
  if (!again) return 0;
  if (within_cuts(entry)) {
    FUZZ_CHECK(*again == entry);
  } else {
    // Cut once, the entry is a fixed point.
    const auto twice = round_trip(*again);
    FUZZ_CHECK(twice && *twice == *again);
  }
  return 0;
}
