// The MTA-STS policy file (RFC 8461 §3.2): a strict line-by-line parser over the ABNF
//
//   sts-policy-record      = sts-policy-field *WSP *(sts-policy-term sts-policy-field *WSP)
//                            [sts-policy-term]
//   sts-policy-field-delim = ":" *WSP
//   sts-policy-term        = LF / CRLF
//   sts-policy-ext-name    = (sts-policy-alphanum) *31(sts-policy-alphanum / "_" / "-" / ".")
//   sts-policy-ext-value   = sts-policy-vchar [*(%x20 / sts-policy-vchar) sts-policy-vchar]
//   sts-policy-vchar       = %x21-7E / UTF8-2 / UTF8-3 / UTF8-4
//
// plus the version, mode, max_age and mx productions, all case-sensitive (%s).
#include "core/policy.hpp"

#include <algorithm>
#include <optional>
#include <utility>

#include "core/domain.hpp"
#include "core/text_cursor.hpp"
#include "core/text_quote.hpp"

namespace mtasts {

namespace {

constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";
constexpr std::size_t kMaxKeyLength = 32;
constexpr std::size_t kMaxAgeDigits = 10;

// Length of the well-formed UTF-8 sequence (RFC 3629 §4, UTF8-2 / UTF8-3 / UTF8-4) that starts at
// text[pos] with a non-ASCII byte, or 0 when it is malformed (overlong, surrogate, > U+10FFFF,
// truncated).
std::size_t utf8_sequence_length(std::string_view text, std::size_t pos) {
  const auto at = [&](std::size_t i) -> unsigned {
    return pos + i < text.size() ? static_cast<unsigned char>(text[pos + i]) : 0u;
  };
  const auto tail = [&](std::size_t i) { return at(i) >= 0x80 && at(i) <= 0xbf; };
  const unsigned lead = at(0);
  if (lead >= 0xc2 && lead <= 0xdf) return tail(1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    const unsigned lo = lead == 0xe0 ? 0xa0 : 0x80;
    const unsigned hi = lead == 0xed ? 0x9f : 0xbf;
    return (at(1) >= lo && at(1) <= hi && tail(2)) ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    const unsigned lo = lead == 0xf0 ? 0x90 : 0x80;
    const unsigned hi = lead == 0xf4 ? 0x8f : 0xbf;
    return (at(1) >= lo && at(1) <= hi && tail(2) && tail(3)) ? 4 : 0;
  }
  return 0;
}

// Checks a value (leading WSP already taken by the delimiter, trailing WSP already trimmed)
// against sts-policy-ext-value: visible ASCII or UTF-8, inner spaces only, no CTLs.
std::optional<std::string> ext_value_problem(std::string_view value) {
  for (std::size_t i = 0; i < value.size();) {
    const auto byte = static_cast<unsigned char>(value[i]);
    if (byte >= 0x20 && byte <= 0x7e) {
      ++i;
    } else if (byte >= 0x80) {
      const std::size_t n = utf8_sequence_length(value, i);
      if (n == 0) return "malformed UTF-8 (RFC 3629)";
      i += n;
    } else if (byte == '\t') {
      return "a tab inside the value: only spaces may sit between its characters";
    } else {
      return "a control character";
    }
  }
  return std::nullopt;
}

// "policy line N: <what>, found "<line>"[ (<detail>)]": says what was expected, then the line.
class LineError {
 public:
  LineError(std::size_t line_no, std::string_view line) : line_no_(line_no), line_(line) {}
  [[nodiscard]] std::unexpected<Error> operator()(std::string_view what,
                                                  std::string_view detail = {}) const {
    std::string reason = "policy line " + std::to_string(line_no_) + ": " + std::string(what) +
                         ", found " + quote_input(line_);
    if (!detail.empty()) reason += " (" + std::string(detail) + ")";
    return std::unexpected(Error{ErrorCategory::policy_syntax, std::move(reason)});
  }

 private:
  std::size_t line_no_;
  std::string_view line_;
};

std::unexpected<Error> policy_error(std::string reason) {
  return std::unexpected(Error{ErrorCategory::policy_syntax, "policy: " + std::move(reason)});
}

}  // namespace

std::string_view to_string(Mode mode) {
  switch (mode) {
    case Mode::enforce:
      return "enforce";
    case Mode::testing:
      return "testing";
    case Mode::none:
      return "none";
  }
  return "none";
}

std::optional<Mode> mode_from_string(std::string_view text) {
  // STS-13, RFC 8461 §3.2: %s"testing" / %s"enforce" / %s"none", case-sensitive.
  if (text == "enforce") return Mode::enforce;
  if (text == "testing") return Mode::testing;
  if (text == "none") return Mode::none;
  return std::nullopt;
}

std::expected<std::string, Error> check_mx_pattern(std::string_view value) {
  // STS-14, RFC 8461 §3.2: sts-policy-mx-value = ["*."] Domain (RFC 5321 §4.1.2), A-labels
  // only, no trailing dot (rfc-checklist §6.11: strict reject). Domain may be one label
  // ("*.com", "com"): the grammar allows it and has no public-suffix rule.
  const bool wildcard = value.starts_with("*.");
  auto host = check_mx_domain(wildcard ? value.substr(2) : value);
  if (host && wildcard) host->insert(0, "*.");
  return host;
}

std::expected<Policy, Error> parse_policy(std::string_view body) {
  if (body.empty()) return policy_error("expected \"key: value\" lines, found an empty body");
  // rfc-checklist §6.4: a byte-order mark is not in the ABNF. We take the strict stance and
  // reject it (and blank lines, a double final newline, comments and leading WSP below).
  if (body.starts_with(kByteOrderMark)) {
    return policy_error("expected a key at the start of the body, found a UTF-8 byte-order mark");
  }

  Policy policy;
  bool have_version = false;
  bool have_mode = false;
  bool have_max_age = false;

  text::Cursor lines(body);
  std::size_t line_no = 0;
  while (!lines.at_end()) {
    ++line_no;
    // STS-15, rfc-checklist §6.3: sts-policy-term = LF / CRLF; the last one is optional.
    std::string_view line = lines.take_until('\n');
    if (lines.consume('\n') && line.ends_with('\r')) line.remove_suffix(1);
    const LineError fail(line_no, line);

    // STS-15: a CR is only allowed right before LF (vector pol-cr-only fails).
    if (line.find('\r') != std::string_view::npos) {
      return fail("expected LF or CRLF line ends", "a CR not followed by LF");
    }
    // rfc-checklist §6.4: no blank lines (nor a double final newline): strict reject.
    if (line.empty()) return fail("expected \"key: value\", not a blank line");

    // Key: (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / "."). Leading WSP was removed from
    // the grammar on purpose (STS-15, rfc-checklist §6.4); "#" comments do not exist.
    text::Cursor cursor(line);
    if (cursor.next_is(text::is_wsp)) {
      return fail("expected a key at the start of the line, not whitespace");
    }
    if (!cursor.next_is(text::is_alnum)) {
      return fail("expected a key starting with a letter or digit");
    }
    const std::string_view key = cursor.take_while(text::is_name_char);
    if (key.size() > kMaxKeyLength) return fail("expected a key of at most 32 characters");
    if (!cursor.consume(':')) {
      if (cursor.next_is(text::is_wsp)) {
        return fail("expected \":\" right after the key, not whitespace before it");
      }
      return fail("expected \"key: value\" with a key of letters, digits, \"_\", \"-\", \".\"");
    }
    // sts-policy-field-delim = ":" *WSP, and *WSP after the field before the line end.
    const std::string_view value = text::trim_wsp(cursor.rest());
    if (value.empty()) return fail("expected a value after \"" + std::string(key) + ":\"");
    // Every line is at least an sts-policy-extension; UTF-8 is allowed there (STS-16, vector
    // pol-unknown-key-utf8-value). Known keys are narrowed further below.
    if (const auto problem = ext_value_problem(value)) {
      return fail("expected a value of visible characters and inner spaces", *problem);
    }

    if (key == "mx") {
      // STS-14 (check_mx_pattern). Every mx line counts, and rfc-checklist §6.5: one malformed
      // mx line invalidates the whole policy.
      auto pattern = check_mx_pattern(value);
      if (!pattern) {
        return fail("expected mx: [\"*.\"]<LDH hostname in A-label form>", pattern.error().reason);
      }
      policy.mx.push_back(std::move(*pattern));
      continue;
    }
    // STS-10, RFC 8461 §3.2: for every field except mx, the first occurrence wins and later
    // ones are ignored (vectors pol-duplicate-mode-first-wins, pol-duplicate-max-age-first-wins).
    if (key == "version") {
      if (have_version) continue;
      // STS-13: sts-policy-version-value = %s"STSv1".
      if (value != "STSv1") return fail("expected version: STSv1");
      have_version = true;
    } else if (key == "mode") {
      if (have_mode) continue;
      const auto mode = mode_from_string(value);
      if (!mode) return fail("expected mode: enforce, testing or none (case-sensitive)");
      policy.mode = *mode;
      have_mode = true;
    } else if (key == "max_age") {
      if (have_max_age) continue;
      // STS-13: sts-policy-max-age-value = 1*10(DIGIT).
      if (value.size() > kMaxAgeDigits || !std::ranges::all_of(value, text::is_digit)) {
        return fail("expected max_age: 1 to 10 digits");
      }
      std::int64_t seconds = 0;
      for (const char c : value) seconds = seconds * 10 + (c - '0');
      // rfc-checklist §6.2 (erratum 7282): clamp to 31557600, do not reject; rejecting would
      // silently downgrade an enforce policy. rfc-checklist §6.8: 0 is valid.
      policy.max_age = std::min(seconds, kMaxAgeCap);
      have_max_age = true;
    }
    // STS-16, RFC 8461 §3.2: unknown keys (including "Mode", keys are case-sensitive) are
    // ignored once syntactically valid.
  }

  // STS-13: version, mode and max_age are required.
  if (!have_version) return policy_error("expected a \"version: STSv1\" line, found none");
  if (!have_mode) return policy_error("expected a \"mode:\" line, found none");
  if (!have_max_age) return policy_error("expected a \"max_age:\" line, found none");
  // STS-14: at least one mx unless mode is none.
  if (policy.mx.empty() && policy.mode != Mode::none) {
    return policy_error("expected at least one \"mx:\" line with mode " +
                        std::string(to_string(policy.mode)) + ", found none");
  }
  return policy;
}

bool is_text_plain(std::string_view content_type) {
  // STS-12, RFC 8461 §3.2 with RFC 7231 §3.1.1.1: media-type = type "/" subtype
  // *(OWS ";" OWS parameter); type and subtype are case-insensitive; all parameters (charset
  // included) are ignored. rfc-checklist §6.6: a missing Content-Type is not text/plain.
  const std::string_view media = text::trim_wsp(content_type.substr(0, content_type.find(';')));
  constexpr std::string_view kTextPlain = "text/plain";
  return media.size() == kTextPlain.size() &&
         std::ranges::equal(media, kTextPlain, [](char a, char b) {
           return text::ascii_lower(a) == text::ascii_lower(b);
         });
}

}  // namespace mtasts
