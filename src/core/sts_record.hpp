// The `_mta-sts.<domain>` TXT record (RFC 8461 §3.1).
#pragma once

#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace mtasts {

struct StsRecord {
  std::string id;  // 1-32 ASCII letters and digits, compared as a string (never as a number)

  friend bool operator==(const StsRecord&, const StsRecord&) = default;
};

// Parses one TXT record (its character-strings already concatenated with no separator, STS-08)
// against the strict ABNF: "v=STSv1" first (case-sensitive, STS-02), fields separated by
// *WSP ";" *WSP with an optional trailing ";" and trailing WSP (STS-04), "id" required (STS-03),
// first occurrence of a duplicated field wins (STS-10), extension fields
// `(ALPHA/DIGIT) *31(ALPHA/DIGIT/"_"/"-"/".") "=" 1*(%x21-3A / %x3C / %x3E-7E)` accepted and
// ignored, US-ASCII only (STS-05). A field named "id" is always the id: a malformed first id is an
// error, not an extension. Trailing WSP without a final ";" is accepted (txt-trailing-whitespace).
// Whitespace before the first ";" is accepted (rfc-checklist §6.1). Errors: record_syntax with a
// reason that quotes the offending part.
[[nodiscard]] std::expected<StsRecord, Error> parse_sts_record(std::string_view record);

// STS-03, RFC 8461 §3.1: true when `id` is an sts-id value, 1*32(ALPHA / DIGIT).
[[nodiscard]] bool is_sts_id(std::string_view id);

// STS-06: of all TXT records at `_mta-sts.<domain>`, keeps those that begin with "v=STSv1"
// followed by ";", WSP or the end; exactly one must remain and it must parse.
// Errors: no_record (none remain), multiple_records (more than one), record_syntax.
[[nodiscard]] std::expected<StsRecord, Error> select_sts_record(
    const std::vector<std::string>& records);

}  // namespace mtasts
