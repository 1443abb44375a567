// What mtastsd exports to a cdb file for Exim builds without ${dlfunc} (design §2.5): for every
// cached domain whose entry is fresh, the answers getmta, getmx and ignorelist would give now.
// Exim reads them with its own cdb lookup:
//
//   key                  value
//   <domain>             getmta: enforce | testing | none | fail
//   <domain>:mx          getmx: the policy's mx patterns as a colon list ("" without a policy)
//   <domain>:ignorelist  ignorelist: "<; ! ^mx1\.example\.com$ ; ... ; *" for enforce, else ""
//   _mtasts:exported     Unix seconds of the export (diagnostics; written by the exporter)
//
// Domains are normalized A-labels (lower-case, no root dot) and never contain ':' or start
// with '_', so no key of one domain can be mistaken for another's. A domain missing from the
// file is "not known here": the shipped routers ask mtastsd over ${readsocket} then, which looks
// it up (and the next export has it). Entries that are not fresh are left out for the same
// reason: a front-end would consult DNS for them first. Pure: no I/O, `now` is an argument.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/decide.hpp"

namespace mtasts {

inline constexpr std::string_view kCdbMxSuffix = ":mx";
inline constexpr std::string_view kCdbIgnorelistSuffix = ":ignorelist";
inline constexpr std::string_view kCdbExportedKey = "_mtasts:exported";

struct CdbRecords {
  // Key/value pairs in the order given (domains as listed, then per domain getmta, mx,
  // ignorelist).
  std::vector<std::pair<std::string, std::string>> records;
  // The answers hold until this time (the earliest next_check among the exported entries), or
  // std::numeric_limits<UnixTime>::max() when nothing was exported. The file must be rebuilt by
  // then, or a stale entry would keep answering after a front-end would have looked again.
  UnixTime valid_until = 0;
  friend bool operator==(const CdbRecords&, const CdbRecords&) = default;
};

// The records for `entries` (domain, entry) at `now`; `strict` as in answer_from_entry().
// Entries that are not fresh and keys that could not be domains are skipped.
[[nodiscard]] CdbRecords exim_cdb_records(
    const std::vector<std::pair<std::string, CacheEntry>>& entries, UnixTime now, bool strict);

}  // namespace mtasts
