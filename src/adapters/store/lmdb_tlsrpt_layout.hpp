// The octets of the TLSRPT store (lmdb_tlsrpt_store.hpp): keys and values of its three named
// LMDB databases.
//   meta        "format" -> "1" (this layout); "kind" -> "mtasts-tlsrpt";
//               "pruned_before" -> the day of the latest prune that removed anything
//   counts      day | esc(report domain) | sha256(policy) | 0x00
//                   -> successful (u64) | failed (u64) | policy
//               day | esc(report domain) | sha256(policy) | 0x01 | sha256(failure)
//                   -> count (u64) | failure
//   deliveries  day | esc(report domain) | sha256(rua)
//                   -> version 1 (u8) | status (u8) | attempts (u32) | first_attempt (i64)
//                      | next_attempt (i64) | rua | last_error
// day is "YYYY-MM-DD"; esc() escapes NUL as 0x00 0xff and ends with 0x00 0x01, so no escaped
// string is a prefix of another and they sort like the strings; integers are little-endian; a
// policy is its type (u16) | domain | policy_strings | mx_hosts, a failure its result type (u16)
// and its six strings, each string a u32 length and its octets, each list a u32 count.
// Policies and failures go into the value and only their digest into the key: an LMDB key is at
// most 511 octets, a list of TLSA or STS policy strings is not. The key order makes days(),
// domains() and tallies() range scans and prune() the deletion of a leading range.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "adapters/store/tlsrpt_store.hpp"
#include "core/error.hpp"
#include "core/tlsrpt_session.hpp"

namespace mtasts::store::tlsrpt_layout {

// A new layout gets a new format version.
inline constexpr std::string_view kFormatVersion = "1";
inline constexpr std::string_view kKind = "mtasts-tlsrpt";
inline constexpr std::uint8_t kDeliveryVersion = 1;
inline constexpr std::size_t kDayLength = 10;  // "YYYY-MM-DD"
inline constexpr std::size_t kDigestLength = 32;
inline constexpr char kPolicyRow = '\x00';
inline constexpr char kFailureRow = '\x01';

// a + b, or the largest count when that would overflow.
[[nodiscard]] std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b);

// Octets for an error message: printable ASCII kept, the others as \xHH, cut after ~160.
[[nodiscard]] std::string printable(std::string_view bytes);

// "YYYY-MM-DD"; an Error{store} outside the years 0000-9999 (they would not sort).
[[nodiscard]] std::expected<std::string, Error> day_key(tlsrpt::Day day);

// Appends esc(text).
void append_escaped(std::string& out, std::string_view text);
// The string escaped at `pos` of `key` and the position after it; nullopt when malformed.
[[nodiscard]] std::optional<std::pair<std::string, std::size_t>> read_escaped(std::string_view key,
                                                                              std::size_t pos);
// The smallest key above every key that starts with `prefix`; nullopt when there is none.
[[nodiscard]] std::optional<std::string> successor(std::string_view prefix);

// kDigestLength octets.
[[nodiscard]] std::expected<std::string, Error> sha256(std::string_view bytes);

[[nodiscard]] std::string encode_policy(const tlsrpt::PolicyKey& policy);
[[nodiscard]] std::optional<tlsrpt::PolicyKey> decode_policy(std::string_view bytes);
[[nodiscard]] std::string encode_failure(const tlsrpt::FailureKey& failure);
[[nodiscard]] std::optional<tlsrpt::FailureKey> decode_failure(std::string_view bytes);

// A counts value: {successful, failed, policy} in a policy row, {count, failure} in a failure
// row (second is 0 there). `encoded` points into the value decoded.
struct Counts {
  std::uint64_t first = 0;
  std::uint64_t second = 0;
  std::string_view encoded;
};
[[nodiscard]] std::string encode_counts(bool failure_row, std::uint64_t first, std::uint64_t second,
                                        std::string_view encoded);
[[nodiscard]] std::optional<Counts> decode_counts(std::string_view value, bool failure_row);

// A deliveries value; the rua is kept to tell a damaged row from the one asked for.
struct StoredDelivery {
  ReportDelivery state;
  std::string rua;
};
[[nodiscard]] std::string encode_delivery(const ReportDelivery& state, std::string_view rua);
[[nodiscard]] std::optional<StoredDelivery> decode_delivery(std::string_view value);

}  // namespace mtasts::store::tlsrpt_layout
