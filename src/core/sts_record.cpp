// The `_mta-sts` TXT record (RFC 8461 §3.1): a strict cursor parser over the ABNF
//
//   sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
//   sts-field       = sts-id / sts-extension
//   sts-field-delim = *WSP ";" *WSP
//   sts-version     = %s"v=STSv1"
//   sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
//   sts-extension   = sts-ext-name "=" sts-ext-value
//   sts-ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//   sts-ext-value   = 1*(%x21-3A / %x3C / %x3E-7E)
#include "core/sts_record.hpp"

#include <algorithm>
#include <optional>
#include <utility>

#include "core/text_cursor.hpp"
#include "core/text_quote.hpp"

namespace mtasts {

namespace {

constexpr std::string_view kVersion = "v=STSv1";
constexpr std::size_t kMaxIdLength = 32;

std::unexpected<Error> syntax(std::string reason) {
  return std::unexpected(
      Error{ErrorCategory::record_syntax, "_mta-sts TXT record: " + std::move(reason)});
}

// The multiple-record filter of RFC 8461 §3.1 (STS-06), literally: records that do not begin
// with "v=STSv1;" are discarded.
constexpr std::string_view kFilterPrefix = "v=STSv1;";

}  // namespace

bool is_sts_id(std::string_view id) {
  return !id.empty() && id.size() <= kMaxIdLength && std::ranges::all_of(id, text::is_alnum);
}

std::expected<StsRecord, Error> parse_sts_record(std::string_view record) {
  // STS-05, RFC 8461 §3.1: TXT records MUST be US-ASCII; a sender treats anything else as
  // syntactically invalid (control characters are excluded by the grammar). STS-02: the record
  // MUST begin with %s"v=STSv1" (case-sensitive), with no leading whitespace.
  if (auto problem = text::version_problem(record, kVersion)) return syntax(std::move(*problem));
  text::Cursor cursor(record, kVersion.size());

  std::optional<std::string> id;
  while (true) {
    // sts-field-delim = *WSP ";" *WSP. rfc-checklist §6.1 (erratum 6285): whitespace before
    // the first ";" ("v=STSv1 ; id=...") follows the ABNF and is accepted. The ABNF ends with an
    // optional delimiter (STS-04); trailing WSP with no ";" is accepted as well (rfc-checklist
    // STS-04 vector txt-trailing-whitespace gives a policy). Then sts-ext-name, which "id" also
    // satisfies.
    std::string_view name;
    std::string_view value;
    if (auto problem = text::read_field_name(cursor, name)) return syntax(std::move(*problem));
    if (name.empty()) break;
    if (auto problem = text::read_ext_value(cursor, name, value)) {
      return syntax(std::move(*problem));
    }

    if (name == "id") {
      // STS-10, RFC 8461 §3.2: a duplicated field keeps its first occurrence; later ones are
      // ignored (they are still valid sts-extension syntax).
      if (id) continue;
      // STS-03, RFC 8461 §3.1: sts-id = %s"id=" 1*32(ALPHA / DIGIT). A field named "id" is the
      // id field, so a malformed first id makes the record invalid rather than an extension.
      if (!is_sts_id(value)) {
        return syntax("expected id=<1 to 32 letters or digits>, found " +
                      quote_input("id=" + std::string(value)));
      }
      id = std::string(value);
    }
    // STS-04, RFC 8461 §3.2: unknown extension fields (and "v" repeated) are ignored.
  }

  // STS-03: id is required; "ID=" is an extension, keys are case-sensitive.
  if (!id) return syntax("expected an \"id=\" field, found none in " + quote_input(record));
  return StsRecord{std::move(*id)};
}

std::expected<StsRecord, Error> select_sts_record(const std::vector<std::string>& records) {
  // STS-06, RFC 8461 §3.1: when several TXT records are returned, drop those that do not begin
  // with "v=STSv1;"; exactly one must remain. A record returned alone only has to begin with
  // "v=STSv1" and parse (rfc-checklist §6.1: "v=STSv1 ; id=..." is valid when it is the only
  // TXT record).
  const bool alone = records.size() == 1;
  const std::string* chosen = nullptr;
  std::size_t kept = 0;
  for (const std::string& record : records) {
    if (alone ? !text::begins_with_version(record, kVersion) : !record.starts_with(kFilterPrefix)) {
      continue;
    }
    if (++kept == 1) chosen = &record;
  }
  if (kept == 0) {
    return std::unexpected(
        Error{ErrorCategory::no_record, "_mta-sts: none of the " + std::to_string(records.size()) +
                                            " TXT records begins with \"v=STSv1;\""});
  }
  if (kept > 1) {
    return std::unexpected(
        Error{ErrorCategory::multiple_records,
              "_mta-sts: " + std::to_string(kept) +
                  " TXT records begin with \"v=STSv1\"; exactly one is allowed (RFC 8461 §3.1)"});
  }
  return parse_sts_record(*chosen);
}

}  // namespace mtasts
