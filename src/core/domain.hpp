// Domain names as they arrive from MTAs and from DNS: any case, maybe a root dot, maybe U-labels.
#pragma once

#include <expected>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace mtasts {

// Normalizes a domain or host name for lookups and matching: ASCII lower-case, one trailing root
// dot stripped, U-labels converted to A-labels (IDNA2008 via libidn2, STS-51), then checked as an
// LDH hostname: labels 1-63 octets of letters, digits and hyphens, no leading or trailing hyphen,
// at least two labels, total at most 253 octets, last label not all-numeric.
// Errors: address_literal for "[...]" and for IPv4/IPv6 address text; invalid_domain otherwise,
// with the reason naming the offending part.
[[nodiscard]] std::expected<std::string, Error> normalize_domain(std::string_view input);

// Checks an ASCII name as an LDH hostname in A-label form (RFC 5321 §4.1.2 Domain, RFC 1035
// lengths): the rules of normalize_domain, but no U-labels, no root dot and no address text
// are accepted. "xn--" labels must be valid IDNA2008 A-labels. Returns the name lower-cased.
// Errors: invalid_domain.
[[nodiscard]] std::expected<std::string, Error> check_ldh_hostname(std::string_view name);

// The Domain of a policy `mx` value after an optional "*." (STS-14, RFC 8461 §3.2 with RFC 5321
// §4.1.2 Domain = sub-domain *("." sub-domain)): the rules of check_ldh_hostname, except that one
// label is enough ("com" in "mx: *.com"; the RFC has no public-suffix rule). Returns the name
// lower-cased. Errors: invalid_domain.
[[nodiscard]] std::expected<std::string, Error> check_mx_domain(std::string_view name);

// True when `name` (already normalized) is a subdomain of or equal to `parent`.
[[nodiscard]] bool is_same_or_subdomain(std::string_view name, std::string_view parent);

}  // namespace mtasts
