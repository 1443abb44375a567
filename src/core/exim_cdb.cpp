#include "core/exim_cdb.hpp"

#include <algorithm>
#include <limits>

#include "core/exim_answers.hpp"

namespace mtasts {

CdbRecords exim_cdb_records(const std::vector<std::pair<std::string, CacheEntry>>& entries,
                            UnixTime now, bool strict) {
  CdbRecords out;
  out.valid_until = std::numeric_limits<UnixTime>::max();
  out.records.reserve(entries.size() * 3);
  for (const auto& [domain, entry] : entries) {
    // The store only lists normalized names; a key that could collide is refused all the same.
    if (domain.empty() || domain.starts_with('_') || domain.find(':') != std::string::npos) {
      continue;
    }
    if (!is_fresh(entry, now)) continue;
    // A DANE state past its TTL is left out too: the readsocket fallback looks it up afresh.
    if (entry.dane && now >= entry.dane->expires_at) continue;
    const Answer answer = answer_from_entry(entry, now, strict);
    out.records.emplace_back(domain, getmta_answer(answer));
    out.records.emplace_back(domain + std::string(kCdbMxSuffix), getmx_answer(answer));
    out.records.emplace_back(domain + std::string(kCdbIgnorelistSuffix), ignorelist_answer(answer));
    out.valid_until = std::min(out.valid_until, entry.next_check);
    if (entry.dane) out.valid_until = std::min(out.valid_until, entry.dane->expires_at);
  }
  return out;
}

}  // namespace mtasts
