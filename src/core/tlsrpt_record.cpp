// The `_smtp._tls` TXT record (RFC 8460 §3): a strict cursor parser over the ABNF
//
//   tlsrpt-record    = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
//   field-delim      = *WSP ";" *WSP
//   tlsrpt-field     = tlsrpt-rua / tlsrpt-extension
//   tlsrpt-version   = %s"v=TLSRPTv1"
//   tlsrpt-rua       = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
//   tlsrpt-uri       = URI   ; RFC 3986, with ",", "!" and ";" percent-encoded
//   tlsrpt-extension = tlsrpt-ext-name "=" tlsrpt-ext-value
//   tlsrpt-ext-name  = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")
//   tlsrpt-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)
#include "core/tlsrpt_record.hpp"

#include <algorithm>
#include <optional>
#include <utility>

#include "core/text_cursor.hpp"
#include "core/text_quote.hpp"

namespace mtasts {

namespace {

constexpr std::string_view kVersion = "v=TLSRPTv1";

using text::ascii_lower;
using text::is_alnum;

// RFC 3986 §2: unreserved / pct-encoded ("%" checked by the caller) / sub-delims / ":" "@" "/"
// "?" "#" "[" "]", minus ",", "!" and ";", which RPT-03 (RFC 8460 §3) requires percent-encoded.
bool is_uri_char(char c) {
  if (is_alnum(c)) return true;
  switch (c) {
    case '-':
    case '.':
    case '_':
    case '~':  // unreserved
    case '$':
    case '&':
    case '\'':
    case '(':
    case ')':
    case '*':  // sub-delims ...
    case '+':
    case '=':  // ... without "!" "," ";"
    case ':':
    case '@':
    case '/':
    case '?':
    case '#':
    case '[':
    case ']':
    case '%':
      return true;
    default:
      return false;
  }
}

int hex_value(char c) {
  if (text::is_digit(c)) return c - '0';
  return ascii_lower(c) - 'a' + 10;
}

std::unexpected<Error> syntax(std::string reason) {
  return std::unexpected(
      Error{ErrorCategory::record_syntax, "_smtp._tls TXT record: " + std::move(reason)});
}

// Checks one URI as far as the record grammar needs: RFC 3986 scheme ":" then URI characters
// with well-formed pct-encoding. Returns the reason when it is not a URI.
std::optional<std::string> uri_problem(std::string_view uri) {
  const std::size_t colon = uri.find(':');
  if (colon == std::string_view::npos || colon == 0 || !text::is_alpha(uri.front()) ||
      !std::ranges::all_of(uri.substr(0, colon), [](char c) {
        return is_alnum(c) || c == '+' || c == '-' || c == '.';
      })) {
    return "expected a URI \"scheme:...\" in rua, found " + quote_input(uri);
  }
  for (std::size_t i = 0; i < uri.size(); ++i) {
    if (uri[i] == '%' &&
        !(i + 2 < uri.size() && text::is_hexdig(uri[i + 1]) && text::is_hexdig(uri[i + 2]))) {
      return "expected \"%\" followed by two hex digits in rua URI " + quote_input(uri);
    }
  }
  return std::nullopt;
}

// RPT-03: keeps mailto: and https: URIs in the form the reporter uses; other schemes (and
// URIs of those schemes that name no endpoint) give nullopt and are skipped.
std::optional<std::string> usable_uri(std::string_view uri) {
  const std::size_t colon = uri.find(':');
  std::string scheme(uri.substr(0, colon));
  std::ranges::transform(scheme, scheme.begin(), ascii_lower);  // RFC 3986 §3.1
  const std::string_view rest = uri.substr(colon + 1);

  if (scheme == "https") {
    // RFC 3986 §3.2: "//" authority with a host. Kept verbatim apart from the scheme:
    // decoding would change what the URL means ("%2F" is not "/"), and it cannot contain a
    // raw "," that would need decoding anyway.
    if (!rest.starts_with("//")) return std::nullopt;
    std::string_view authority = rest.substr(2, rest.find_first_of("/?#", 2) - 2);
    if (const std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
      authority.remove_prefix(at + 1);
    }
    if (authority.empty() || authority.front() == ':') return std::nullopt;
    return "https:" + std::string(rest);
  }
  if (scheme == "mailto") {
    // RFC 6068: "mailto:" to ["?" hfields]. RFC 8460 §5.3 fixes the report's own header
    // fields, so hfields are dropped; the address is percent-decoded (RPT-03: "a%2Cb@x" is one
    // address) and must be one addr-spec-like "local@domain" of visible ASCII.
    const std::string_view to = rest.substr(0, rest.find('?'));
    std::string address;
    for (std::size_t i = 0; i < to.size(); ++i) {
      if (to[i] == '%') {
        address.push_back(static_cast<char>(hex_value(to[i + 1]) * 16 + hex_value(to[i + 2])));
        i += 2;
      } else {
        address.push_back(to[i]);
      }
    }
    const bool visible = std::ranges::all_of(address, [](char c) {
      const auto byte = static_cast<unsigned char>(c);
      return byte > 0x20 && byte < 0x7f;
    });
    const std::size_t at = address.rfind('@');
    if (!visible || at == std::string::npos || at == 0 || at + 1 == address.size()) {
      return std::nullopt;
    }
    return "mailto:" + address;
  }
  return std::nullopt;
}

}  // namespace

std::expected<TlsrptRecord, Error> parse_tlsrpt_record(std::string_view record) {
  // RFC 8460 §3 ABNF is US-ASCII throughout (URI characters, %x21-7E values). RPT-02:
  // %s"v=TLSRPTv1" first, case-sensitive.
  if (auto problem = text::version_problem(record, kVersion)) return syntax(std::move(*problem));
  text::Cursor cursor(record, kVersion.size());

  std::optional<std::vector<std::string>> rua;  // the first rua's usable URIs
  while (true) {
    // field-delim = *WSP ";" *WSP; whitespace before ";" follows the ABNF (as rfc-checklist
    // §6.1 for STS); trailing WSP without ";" is accepted like the STS record's, and so is an
    // optional trailing delimiter.
    std::string_view name;
    if (auto problem = text::read_field_name(cursor, name)) return syntax(std::move(*problem));
    if (name.empty()) break;

    if (name != "rua") {
      // RPT-06, RFC 8460 §3: unknown extension fields are accepted and ignored.
      std::string_view value;
      if (auto problem = text::read_ext_value(cursor, name, value)) {
        return syntax(std::move(*problem));
      }
      continue;
    }

    // RPT-03: tlsrpt-rua = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri). A field named
    // "rua" is always the rua field, so its URIs must parse.
    std::vector<std::string> uris;
    while (true) {
      const std::string_view uri = cursor.take_while(is_uri_char);
      if (uri.empty()) {
        return syntax(
            "expected a URI in rua (\",\", \"!\" and \";\" inside a URI must be percent-encoded), "
            "found " +
            quote_input(cursor.rest()));
      }
      if (auto problem = uri_problem(uri)) return syntax(std::move(*problem));
      if (auto usable = usable_uri(uri)) uris.push_back(std::move(*usable));
      // WSP not followed by "," is the start of the next field-delim, which skips it anyway.
      cursor.skip_wsp();
      if (!cursor.consume(',')) break;
      cursor.skip_wsp();
    }
    // RFC 8460 is silent on a repeated rua; like RFC 8461 §3.2 (STS-10) the first one wins.
    if (!rua) rua = std::move(uris);
  }

  if (!rua) return syntax("expected a \"rua=\" field, found none in " + quote_input(record));
  // RPT-03: only mailto: and https: are defined; a rua with neither leaves nowhere to report.
  if (rua->empty()) {
    return syntax("expected a mailto: or https: URI in the first rua, found none usable in " +
                  quote_input(record));
  }
  return TlsrptRecord{std::move(*rua)};
}

std::expected<TlsrptRecord, Error> select_tlsrpt_record(const std::vector<std::string>& records) {
  // RPT-04, RFC 8460 §3: drop records not beginning with "v=TLSRPTv1;" (here "v=TLSRPTv1"
  // followed by ";", WSP or the end); if the number left is not one, no TLSRPT.
  const std::string* chosen = nullptr;
  std::size_t kept = 0;
  for (const std::string& record : records) {
    if (!text::begins_with_version(record, kVersion)) continue;
    if (++kept == 1) chosen = &record;
  }
  if (kept == 0) {
    return std::unexpected(Error{ErrorCategory::no_record,
                                 "_smtp._tls: none of the " + std::to_string(records.size()) +
                                     " TXT records begins with \"v=TLSRPTv1;\""});
  }
  if (kept > 1) {
    return std::unexpected(
        Error{ErrorCategory::multiple_records,
              "_smtp._tls: " + std::to_string(kept) +
                  " TXT records begin with \"v=TLSRPTv1\"; exactly one is allowed (RFC 8460 §3)"});
  }
  return parse_tlsrpt_record(*chosen);
}

}  // namespace mtasts
