// The value of one domain in the fleet's shared cache (design §8, docs/fleet.md): compact JSON
//
//   {"format":"mtasts-entry","v":1,"domain":"example.com",
//    "mode":..., "mx":..., "expire":..., "id":..., "report":..., "extras":"{...}"}
//
// where mode, mx, expire, id, report and extras are the values of the LMDB layout's keys
// (lmdb_layout.hpp), so both tiers hold the same fields, checked by the same code. The DANE
// state is never shared. Decoding is as strict as for network input: a value over
// kMaxSharedValue, another format or version, another domain (a value copied under another
// key), any field the layout flags, or a policy whose fields are not what its own text says is
// refused, never repaired. Pure functions.
#pragma once

#include <cstddef>
#include <expected>
#include <string>
#include <string_view>

#include "core/decide.hpp"
#include "core/error.hpp"

namespace mtasts::store {

inline constexpr std::string_view kSharedFormat = "mtasts-entry";
inline constexpr int kSharedVersion = 1;
inline constexpr std::size_t kMaxSharedValue = 256 * 1024;

// Errors: store (an entry the layout refuses, e.g. a policy text over 64 KiB).
[[nodiscard]] std::expected<std::string, Error> encode_shared(std::string_view domain,
                                                              const CacheEntry& entry);

// The entry, or a one-line reason why the value is refused.
[[nodiscard]] std::expected<CacheEntry, std::string> decode_shared(std::string_view domain,
                                                                   std::string_view value);

}  // namespace mtasts::store
