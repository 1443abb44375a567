// A cursor over untrusted text, the character classes of RFC 5234 Appendix B.1 and the
// productions that the strict core parsers share: the `_mta-sts` record (RFC 8461 §3.1), the
// `_smtp._tls` record (RFC 8460 §3) and the policy file (RFC 8461 §3.2). ASCII only: a byte
// >= 0x80 belongs to no class here.
#pragma once

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace mtasts::text {

constexpr bool is_wsp(char c) {
  return c == ' ' || c == '\t';
}
constexpr bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
constexpr bool is_alnum(char c) {
  return is_alpha(c) || is_digit(c);
}
// HEXDIG, in either case as RFC 3986 §2.1 pct-encoding allows.
constexpr bool is_hexdig(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
// After the first character of sts-ext-name, tlsrpt-ext-name and sts-policy-ext-name:
// ALPHA / DIGIT / "_" / "-" / ".".
constexpr bool is_name_char(char c) {
  return is_alnum(c) || c == '_' || c == '-' || c == '.';
}
// sts-ext-value and tlsrpt-ext-value: %x21-3A / %x3C / %x3E-7E, visible ASCII but "=" and ";".
constexpr bool is_ext_value_char(char c) {
  return c >= 0x21 && c <= 0x7e && c != '=' && c != ';';
}
constexpr char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
constexpr bool is_ascii(std::string_view text) {
  return std::ranges::none_of(text, [](char c) { return static_cast<unsigned char>(c) >= 0x80; });
}
// `text` without leading and trailing WSP.
constexpr std::string_view trim_wsp(std::string_view text) {
  while (!text.empty() && is_wsp(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_wsp(text.back())) text.remove_suffix(1);
  return text;
}

// A read position in a text. Reading past the end is impossible: every step stops there.
class Cursor {
 public:
  constexpr explicit Cursor(std::string_view text, std::size_t pos = 0)
      : text_(text), pos_(std::min(pos, text.size())) {}

  [[nodiscard]] constexpr std::size_t pos() const { return pos_; }
  [[nodiscard]] constexpr bool at_end() const { return pos_ == text_.size(); }
  // What is left to read: what an error message quotes after "found".
  [[nodiscard]] constexpr std::string_view rest() const { return text_.substr(pos_); }
  // True when a next character exists and satisfies `pred`.
  template <class Pred>
  [[nodiscard]] constexpr bool next_is(Pred pred) const {
    return !at_end() && pred(text_[pos_]);
  }
  [[nodiscard]] constexpr bool next_is(char c) const { return !at_end() && text_[pos_] == c; }

  // Steps over `c` when it is next; false (and no step) otherwise.
  constexpr bool consume(char c) {
    if (!next_is(c)) return false;
    ++pos_;
    return true;
  }
  // Reads the longest run of characters satisfying `pred` (maybe empty).
  template <class Pred>
  constexpr std::string_view take_while(Pred pred) {
    const std::size_t start = pos_;
    while (next_is(pred)) ++pos_;
    return text_.substr(start, pos_ - start);
  }
  template <class Pred>
  constexpr void skip_while(Pred pred) {
    while (next_is(pred)) ++pos_;
  }
  constexpr void skip_wsp() { skip_while(is_wsp); }
  // Reads up to the next `c` (not included) or to the end.
  constexpr std::string_view take_until(char c) {
    return take_while([c](char x) { return x != c; });
  }

 private:
  std::string_view text_;
  std::size_t pos_;
};

// The tag-value list that the `_mta-sts` and `_smtp._tls` TXT records share after their version
// (RFC 8461 §3.1, RFC 8460 §3):
//
//   field-delim = *WSP ";" *WSP
//   ext-name    = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//   ext-value   = 1*(%x21-3A / %x3C / %x3E-7E)
//
// Errors are the reason, saying what was expected and quoting the rest of the record from where
// it went wrong; the caller prefixes the record's name.

// True when `record` begins with `version` followed by ";", WSP or the end.
[[nodiscard]] bool begins_with_version(std::string_view record, std::string_view version);

// The problem, if any, with the start of `record`: it must be US-ASCII only and begin with
// `version` (case-sensitive, no leading WSP).
[[nodiscard]] std::optional<std::string> version_problem(std::string_view record,
                                                         std::string_view version);

// Reads one field-delim and then, unless the record ends there (trailing WSP and the last
// field-delim are optional), an ext-name and its "=". Sets `name` to the name, or to "" at the
// end of the record. Returns the problem, if any.
[[nodiscard]] std::optional<std::string> read_field_name(Cursor& cursor, std::string_view& name);

// Reads into `value` the ext-value after `name` "=". Returns the problem, if any.
[[nodiscard]] std::optional<std::string> read_ext_value(Cursor& cursor, std::string_view name,
                                                        std::string_view& value);

}  // namespace mtasts::text
