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

#include "core/text_quote.hpp"

namespace mtasts {

namespace {

constexpr std::string_view kVersion = "v=STSv1";
constexpr std::size_t kMaxNameLength = 32;
constexpr std::size_t kMaxIdLength = 32;

bool is_wsp(char c) {
  return c == ' ' || c == '\t';
}
bool is_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
bool is_name_char(char c) {
  return is_alnum(c) || c == '_' || c == '-' || c == '.';
}
// %x21-3A / %x3C / %x3E-7E: visible ASCII except "=" and ";".
bool is_value_char(char c) {
  return c >= 0x21 && c <= 0x7e && c != '=' && c != ';';
}

Error syntax(std::string reason) {
  return Error{ErrorCategory::record_syntax, "_mta-sts TXT record: " + std::move(reason)};
}

// The version test for a record that came alone (rfc-checklist §6.1): the ABNF allows WSP
// between "v=STSv1" and ";", so "v=STSv1 ; id=..." is a valid record when it is the only one.
bool begins_with_version(std::string_view record) {
  if (!record.starts_with(kVersion)) return false;
  if (record.size() == kVersion.size()) return true;
  const char next = record[kVersion.size()];
  return next == ';' || is_wsp(next);
}

// The multiple-record filter of RFC 8461 §3.1 (STS-06), literally: records that do not begin
// with "v=STSv1;" are discarded.
constexpr std::string_view kFilterPrefix = "v=STSv1;";

}  // namespace

std::expected<StsRecord, Error> parse_sts_record(std::string_view record) {
  // STS-05, RFC 8461 §3.1: TXT records MUST be US-ASCII; a sender treats anything else as
  // syntactically invalid. Control characters are excluded by the grammar below.
  if (const auto bad = std::ranges::find_if(
          record, [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
      bad != record.end()) {
    return std::unexpected(
        syntax("expected US-ASCII only, found a non-ASCII byte in " + quote_input(record)));
  }
  // STS-02, RFC 8461 §3.1: the record MUST begin with %s"v=STSv1" (case-sensitive), with no
  // leading whitespace.
  if (!record.starts_with(kVersion)) {
    return std::unexpected(
        syntax("expected the record to begin with \"v=STSv1\", found " + quote_input(record)));
  }

  std::optional<std::string> id;
  std::size_t pos = kVersion.size();
  const auto rest = [&] { return quote_input(record.substr(pos)); };
  const auto skip_wsp = [&] {
    while (pos < record.size() && is_wsp(record[pos])) ++pos;
  };

  while (true) {
    // sts-field-delim = *WSP ";" *WSP. rfc-checklist §6.1 (erratum 6285): whitespace before
    // the first ";" ("v=STSv1 ; id=...") follows the ABNF and is accepted.
    skip_wsp();
    // The ABNF ends with an optional delimiter; trailing WSP with no ";" is accepted as well
    // (rfc-checklist STS-04 vector txt-trailing-whitespace gives a policy).
    if (pos == record.size()) break;
    if (record[pos] != ';') {
      return std::unexpected(syntax("expected \";\" between fields, found " + rest()));
    }
    ++pos;
    skip_wsp();
    if (pos == record.size()) break;  // STS-04: a trailing delimiter is optional

    // sts-ext-name (which "id" also satisfies): (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" /
    // ".")
    const std::size_t name_start = pos;
    if (!is_alnum(record[pos])) {
      return std::unexpected(
          syntax("expected a field name starting with a letter or digit, found " + rest()));
    }
    while (pos < record.size() && is_name_char(record[pos])) ++pos;
    const std::string_view name = record.substr(name_start, pos - name_start);
    if (name.size() > kMaxNameLength) {
      return std::unexpected(
          syntax("expected a field name of at most 32 characters, found " + quote_input(name)));
    }
    if (pos == record.size() || record[pos] != '=') {
      return std::unexpected(
          syntax("expected \"=\" after field name " + quote_input(name) + ", found " + rest()));
    }
    ++pos;
    const std::size_t value_start = pos;
    while (pos < record.size() && is_value_char(record[pos])) ++pos;
    const std::string_view value = record.substr(value_start, pos - value_start);
    if (value.empty()) {
      return std::unexpected(
          syntax("expected a value after \"" + std::string(name) + "=\", found " + rest()));
    }

    if (name == "id") {
      // STS-10, RFC 8461 §3.2: a duplicated field keeps its first occurrence; later ones are
      // ignored (they are still valid sts-extension syntax).
      if (id) continue;
      // STS-03, RFC 8461 §3.1: sts-id = %s"id=" 1*32(ALPHA / DIGIT). A field named "id" is the
      // id field, so a malformed first id makes the record invalid rather than an extension.
      if (value.size() > kMaxIdLength || !std::ranges::all_of(value, is_alnum)) {
        return std::unexpected(syntax("expected id=<1 to 32 letters or digits>, found " +
                                      quote_input("id=" + std::string(value))));
      }
      id = std::string(value);
    }
    // STS-04, RFC 8461 §3.2: unknown extension fields (and "v" repeated) are ignored.
  }

  // STS-03: id is required; "ID=" is an extension, keys are case-sensitive.
  if (!id) {
    return std::unexpected(
        syntax("expected an \"id=\" field, found none in " + quote_input(record)));
  }
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
    if (alone ? !begins_with_version(record) : !record.starts_with(kFilterPrefix)) continue;
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
