// MX host matching against policy patterns (RFC 8461 §4.1, STS-33).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mtasts {

// RFC 8461 §4.1 and Appendix B, defined on any name an MX record may hold (the host comes from a
// record someone else published, so it is never refused, only matched). Case-insensitive; one
// trailing root dot on the host is ignored (rfc-checklist §6.11), never more. Then:
// - a host equal to the pattern matches (Appendix B checks equality first), even a host that is
//   not a hostname ("mx_1.example.com", "*.example.net");
// - a pattern "*.<suffix>" also matches a host whose left-most label is not empty and whose rest
//   after that label and its dot is exactly <suffix>: "*.example.net" matches "mx.example.net"
//   and "mx_1.example.net", never "example.net", ".example.net" nor "a.b.example.net";
// - nothing else matches. No IDNA here: hosts and patterns are compared as given (A-labels).
[[nodiscard]] bool mx_matches(std::string_view pattern, std::string_view host);

// True when `host` matches any of `patterns` (mx_matches).
[[nodiscard]] bool mx_allowed(const std::vector<std::string>& patterns, std::string_view host);

// The name an MX host as an MTA typed it is matched as: normalize_domain's result when the host
// is a hostname (lower-case, one root dot stripped, U-labels turned into A-labels, STS-51), and
// otherwise the host ASCII lower-cased with one root dot stripped. Never fails.
[[nodiscard]] std::string mx_host_name(std::string_view host);

// mx_allowed for a host as an MTA typed it (mx_host_name first): the getmta(D, H) test.
[[nodiscard]] bool mx_host_allowed(const std::vector<std::string>& patterns, std::string_view host);

}  // namespace mtasts
