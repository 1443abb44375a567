// The LMDB cache layout (design §2.2): CacheEntry <-> string keys in the unnamed database.
//
//   <d>:mode    enforce | testing | none
//   <d>:mx      mx patterns joined by ":"
//   <d>:expire  Unix seconds, decimal
//   <d>:id      the TXT id the policy came with
//   <d>:report  TLSRPT rua list, present when the entry's report is non-empty
// The first four are the seed keys kept from the Perl tool (readable by Exim's own lmdb lookup);
// they are present exactly when the entry holds a policy. Our own keys:
//   _mtasts:<d> compact JSON {"v":1, ...} with every other CacheEntry field (the DANE state as
//               "dane", "dane_reason", "dane_hosts" (lines "<pref> <host> <state> <why>"),
//               "dane_checked_at", "dane_expires_at", "dane_required")
//   _mtasts:schema  "1", written when the file is created
//
// Everything read back is untrusted: each value is validated, a malformed extras record falls
// back to the seed keys, malformed seed keys mean "no policy" (never an enforce policy made from
// garbage), and any inconsistency sets next_check to 0 so the service looks at DNS again.
// Pure functions: no LMDB calls here.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/decide.hpp"
#include "core/error.hpp"

namespace mtasts::store::layout {

inline constexpr std::string_view kExtrasPrefix = "_mtasts:";
inline constexpr std::string_view kSchemaKey = "_mtasts:schema";
inline constexpr std::string_view kSchemaVersion = "1";
inline constexpr int kExtrasVersion = 1;

// Caps on what we write and accept back.
inline constexpr std::size_t kMaxPolicyText = 64 * 1024;  // the fetcher's body cap
inline constexpr std::size_t kMaxMxValue = 64 * 1024;
inline constexpr std::size_t kMaxReport = 16 * 1024;
inline constexpr std::size_t kMaxLastError = 4096;  // longer errors are cut when saved
inline constexpr std::size_t kMaxExtras = 512 * 1024;
inline constexpr std::int64_t kMaxTime = 253402300799;  // 9999-12-31T23:59:59Z
inline constexpr int kMaxFailures = 1'000'000;
inline constexpr std::size_t kMaxDaneHostsText = 16 * 1024;  // the DANE state's host lines

enum class Field { mode, mx, expire, id, report, extras };
inline constexpr std::array<Field, 6> kFields = {Field::mode, Field::mx,     Field::expire,
                                                 Field::id,   Field::report, Field::extras};

// True for what may name a domain in a key: a name as normalize_domain returns it (an LDH
// hostname in A-label form that check_ldh_hostname accepts, already lower-case), so no ':' and no
// leading '_' (no key of one domain can be mistaken for another's).
[[nodiscard]] bool is_storable_domain(std::string_view domain);
// A DANE host name as stored: an MX target as DNS gave it (LDH labels, lower-case, two or more).
[[nodiscard]] bool is_storable_host_name(std::string_view name);

// The key of one field of a domain's entry.
[[nodiscard]] std::string key(std::string_view domain, Field field);

struct KeyRef {
  std::string_view domain;
  Field field;
};
// Which domain and field a database key belongs to; std::nullopt for keys that are not ours
// (the schema key, foreign keys, keys naming no storable domain).
[[nodiscard]] std::optional<KeyRef> parse_key(std::string_view key);

// The raw values of one domain as found in the database; std::nullopt where a key is absent.
struct RawRecord {
  std::array<std::optional<std::string_view>, kFields.size()> values;
  [[nodiscard]] std::optional<std::string_view>& operator[](Field field) {
    return values[static_cast<std::size_t>(field)];
  }
  [[nodiscard]] const std::optional<std::string_view>& operator[](Field field) const {
    return values[static_cast<std::size_t>(field)];
  }
  [[nodiscard]] bool empty() const;
};

struct Decoded {
  std::optional<CacheEntry> entry;    // std::nullopt when nothing is stored
  std::vector<std::string> problems;  // what was malformed, for the admin's log
};
// Never fails: garbage degrades to "no policy" (with next_check 0) and a problem line.
[[nodiscard]] Decoded decode(const RawRecord& raw);

// The value to store for each field; std::nullopt: delete that key.
struct Encoded {
  std::array<std::optional<std::string>, kFields.size()> values;
  [[nodiscard]] const std::optional<std::string>& operator[](Field field) const {
    return values[static_cast<std::size_t>(field)];
  }
};
// Refuses (store error) an entry that would not read back as itself, e.g. an mx pattern that is
// not an LDH name, an id that is not 1-32 alphanumerics or a policy text over 64 KiB.
// last_error is cut to kMaxLastError octets.
[[nodiscard]] std::expected<Encoded, Error> encode(const CacheEntry& entry);

}  // namespace mtasts::store::layout
