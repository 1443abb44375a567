// Domain normalization (STS-51, RFC 8461 §3.2 + RFC 5891) and the LDH hostname check shared with
// the policy parser (STS-14, RFC 5321 §4.1.2).
#include "core/domain.hpp"

#include <arpa/inet.h>
#include <idn2.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "core/text_quote.hpp"

namespace mtasts {

namespace {

constexpr std::size_t kMaxNameOctets = 253;  // RFC 1035 §2.3.4, without the root dot
constexpr std::size_t kMaxLabelOctets = 63;  // RFC 1035 §2.3.4
// Raw input cap before any IDNA work: 253 octets of A-labels never need more than this much
// UTF-8, and it bounds what libidn2 is asked to chew on.
constexpr std::size_t kMaxInputOctets = 1024;
constexpr int kIdnaFlags = IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL;

bool is_alpha(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_ldh(char c) {
  return is_alpha(c) || is_digit(c) || c == '-';
}
char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}
bool is_ascii(std::string_view text) {
  return std::ranges::all_of(text, [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

Error invalid(std::string reason) {
  return Error{ErrorCategory::invalid_domain, std::move(reason)};
}

struct FreeDeleter {
  void operator()(char* p) const { std::free(p); }
};

// Runs libidn2 (IDNA2008 with UTS #46 non-transitional mapping) on one NUL-free string.
std::expected<std::string, std::string> idna_to_ascii(const std::string& text) {
  char* raw = nullptr;
  const int rc = idn2_to_ascii_8z(text.c_str(), &raw, kIdnaFlags);
  std::unique_ptr<char, FreeDeleter> out(raw);
  if (rc != IDN2_OK || out == nullptr) return std::unexpected(std::string(idn2_strerror(rc)));
  return std::string(out.get());
}

bool is_ip_address_text(const std::string& text) {
  unsigned char buf[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) return true;
  return text.find(':') != std::string::npos && inet_pton(AF_INET6, text.c_str(), buf) == 1;
}

// One label of an ASCII hostname, already lower-cased.
std::optional<std::string> label_problem(std::string_view label) {
  if (label.empty()) return "empty label";
  if (label.size() > kMaxLabelOctets) {
    return "label longer than 63 octets: " + quote_input(label);
  }
  for (const char c : label) {
    if (!is_ldh(c)) {
      return "expected letters, digits and hyphens in label " + quote_input(label) + ", found " +
             quote_input(std::string_view(&c, 1));
    }
  }
  // RFC 5321 §4.1.2 sub-domain = Let-dig [Ldh-str]: no leading or trailing hyphen. Other "--"
  // labels (R-LDH, e.g. "r1---sn-abc") are legal RFC 5321 names in real use and are kept.
  if (label.front() == '-' || label.back() == '-') {
    return "label starts or ends with a hyphen: " + quote_input(label);
  }
  // STS-51 / STS-14: an "xn--" label must be a real IDNA2008 A-label; libidn2 decodes,
  // validates and re-encodes it, and the result must be the label itself.
  if (label.starts_with("xn--")) {
    const auto again = idna_to_ascii(std::string(label));
    if (!again) {
      return "label " + quote_input(label) + " is not a valid A-label (libidn2: " + again.error() +
             ")";
    }
    if (*again != label) {
      return "label " + quote_input(label) + " is not a canonical A-label (expected " +
             quote_input(*again) + ")";
    }
  }
  return std::nullopt;
}

// check_ldh_hostname with the least number of labels as a parameter.
std::expected<std::string, Error> check_ldh_name(std::string_view name, std::size_t min_labels) {
  if (name.empty()) return std::unexpected(invalid("expected a hostname, found an empty string"));
  if (!is_ascii(name)) {
    return std::unexpected(
        invalid("expected an A-label hostname, found non-ASCII text " + quote_input(name)));
  }
  // rfc-checklist §6.11: a trailing root dot is not RFC 5321 Domain syntax.
  if (name.back() == '.') {
    return std::unexpected(
        invalid("expected a hostname without a trailing dot, found " + quote_input(name)));
  }
  if (name.size() > kMaxNameOctets) {
    return std::unexpected(invalid("hostname longer than 253 octets: " + quote_input(name)));
  }
  std::string lower(name);
  std::ranges::transform(lower, lower.begin(), ascii_lower);

  std::size_t labels = 0;
  std::string_view last;
  std::string_view rest = lower;
  while (true) {
    const std::size_t dot = rest.find('.');
    const std::string_view label = rest.substr(0, dot);
    if (auto problem = label_problem(label)) {
      return std::unexpected(invalid(*problem + " in hostname " + quote_input(name)));
    }
    ++labels;
    last = label;
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  if (labels < min_labels) {
    return std::unexpected(
        invalid("expected a hostname with at least two labels, found " + quote_input(name)));
  }
  // An all-numeric top label is address text ("192.0.2.1"), never a hostname (RFC 3696 §2).
  if (std::ranges::all_of(last, is_digit)) {
    return std::unexpected(
        invalid("expected a top-level label that is not all-numeric in " + quote_input(name)));
  }
  return lower;
}

}  // namespace

std::expected<std::string, Error> check_ldh_hostname(std::string_view name) {
  return check_ldh_name(name, 2);
}

std::expected<std::string, Error> check_mx_domain(std::string_view name) {
  // STS-14, RFC 8461 §3.2 with RFC 5321 §4.1.2: Domain = sub-domain *("." sub-domain), so one
  // label is grammatical ("com" in "mx: *.com"); the RFC has no public-suffix rule.
  return check_ldh_name(name, 1);
}

std::expected<std::string, Error> normalize_domain(std::string_view input) {
  if (input.empty()) return std::unexpected(invalid("expected a domain, found an empty string"));
  if (input.size() > kMaxInputOctets) {
    return std::unexpected(invalid("domain longer than 1024 octets: " + quote_input(input)));
  }
  // STS-30, RFC 8461 §3.4: no policy can be associated with an address literal.
  if (input.front() == '[') {
    if (input.back() == ']') {
      return std::unexpected(Error{
          ErrorCategory::address_literal,
          "address literal " + quote_input(input) + " has no MTA-STS policy (RFC 8461 §3.4)"});
    }
    return std::unexpected(invalid("unterminated address literal " + quote_input(input)));
  }
  for (const char c : input) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte == 0x7f) {
      return std::unexpected(invalid(
          "expected a domain without spaces or control characters, found " + quote_input(input)));
    }
  }

  std::string name(input);
  std::ranges::transform(name, name.begin(), ascii_lower);  // lower-case first, then IDNA
  // rfc-checklist §6.11: names from DNS and MTAs may carry the root dot; strip one.
  if (name.back() == '.') name.pop_back();
  if (name.empty())
    return std::unexpected(invalid("expected a domain, found " + quote_input(input)));

  const auto address_error = [&] {
    return Error{ErrorCategory::address_literal,
                 "IP address " + quote_input(input) + " has no MTA-STS policy (RFC 8461 §3.4)"};
  };
  if (is_ip_address_text(name)) return std::unexpected(address_error());
  if (name.find(':') != std::string::npos) {
    return std::unexpected(invalid("expected a domain, found ':' in " + quote_input(input)));
  }

  // STS-51, RFC 5891: U-labels become A-labels. Only labels with non-ASCII bytes go through
  // libidn2, so legal RFC 5321 names that IDNA would refuse ("r1---sn-abc") stay usable; ASCII
  // "xn--" labels are validated by check_ldh_hostname.
  if (!is_ascii(name)) {
    std::string converted;
    std::string_view rest = name;
    while (true) {
      const std::size_t dot = rest.find('.');
      const std::string_view label = rest.substr(0, dot);
      if (is_ascii(label)) {
        converted += label;
      } else {
        auto ascii = idna_to_ascii(std::string(label));
        if (!ascii) {
          return std::unexpected(invalid("label " + quote_input(label) +
                                         " is not a valid IDNA2008 U-label (libidn2: " +
                                         ascii.error() + ") in " + quote_input(input)));
        }
        std::ranges::transform(*ascii, ascii->begin(), ascii_lower);
        converted += *ascii;
      }
      if (dot == std::string_view::npos) break;
      converted += '.';
      rest.remove_prefix(dot + 1);
    }
    name = std::move(converted);
    // UTS #46 maps full-width digits and dots: the result may be address text after all.
    if (is_ip_address_text(name)) return std::unexpected(address_error());
  }

  auto checked = check_ldh_hostname(name);
  if (!checked && name != input) {
    return std::unexpected(invalid(checked.error().reason + " (from " + quote_input(input) + ")"));
  }
  return checked;
}

bool is_same_or_subdomain(std::string_view name, std::string_view parent) {
  if (name.empty() || parent.empty()) return false;
  if (name == parent) return true;
  return name.size() > parent.size() && name.ends_with(parent) &&
         name[name.size() - parent.size() - 1] == '.';
}

}  // namespace mtasts
