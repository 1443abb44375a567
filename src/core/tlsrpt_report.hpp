// The aggregate TLSRPT report (RFC 8460 §4) of one UTC day for one policy domain: its JSON, its
// file name (§5.1) and its mail Subject (§5.3). Pure: the same input gives the same bytes.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/tlsrpt_session.hpp"

namespace mtasts::tlsrpt {

// Who reports: the `[tlsrpt]` settings a report names.
struct ReportMeta {
  std::string organization_name;  // organization-name
  std::string contact_info;       // contact-info: an address (RFC 5322 addr-spec)
  std::string submitter;          // the reporting domain, A-labels (RPT-26, RPT-29)
};

struct Report {
  std::string report_id;   // "<YYYY-MM-DD>T00:00:00Z_<policy-domain>@<submitter>"
  std::string json;        // RFC 8460 §4.4, UTF-8, no trailing newline
  std::string filename;    // "<submitter>!<policy-domain>!<begin>!<end>!<unique-id>.json.gz"
  std::string subject;     // "Report Domain: <d> Submitter: <s> Report-ID: <<report-id>>"
  std::int64_t begin = 0;  // the date-range, Unix seconds: 00:00:00 and 23:59:59 of the day
  std::int64_t end = 0;
};

// Builds the report of `day` for `policy_domain` (the domain whose `_smtp._tls` record asked
// for it) from that day's tallies.
// - Keys in RFC 8460 §4.4's order; tallies of the same policy are merged and policies sorted, so
//   the caller's order does not change the bytes. Counts are JSON integers, capped at 2^53 - 1
//   (I-JSON, RFC 7493 §2.2). Strings that are not UTF-8 get U+FFFD for the bad bytes.
// - date-range: `day`T00:00:00Z to `day`T23:59:59Z, the form of RFC 8460 Appendix B (§4.1's
//   "00:00 to 24:00" would end on the next day's date; rfc-checklist §6 item 13).
// - policy-string and mx-host only when non-empty, mx-host only for sts; failure-details always
//   (an empty array when nothing failed); empty failure-details fields are left out.
// - report-id is stable (no clock, no randomness): the same day and domain give the same id,
//   and its "left@right" shape is what the Subject's Report-ID needs (RPT-30).
// - filename per RFC 8460 §5.1 (RPT-26): begin and end are the date-range's instants and the
//   unique id is 16 hex digits of the report-id's FNV-1a hash. The domains in the filename and
//   in the report-id are lower-cased and any character outside [a-z0-9.-] becomes "-", so the
//   name is always one safe path component (config and the store give A-labels anyway).
[[nodiscard]] Report build_report(const ReportMeta& meta, Day day, std::string_view policy_domain,
                                  std::span<const PolicyTally> tallies);

// 16 lower-case hex digits of the 64-bit FNV-1a hash of `text`: a stable, non-cryptographic
// name for derived identifiers (file names, Message-IDs, MIME boundaries).
[[nodiscard]] std::string hash_hex16(std::string_view text);

}  // namespace mtasts::tlsrpt
