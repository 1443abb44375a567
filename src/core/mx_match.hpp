// MX host matching against policy patterns (RFC 8461 §4.1, STS-33).
#pragma once

#include <string_view>
#include <vector>
#include <string>

namespace mtasts {

// Case-insensitive. A pattern "*.example.net" matches exactly one extra left-most label
// ("mx.example.net", never "example.net" nor "a.b.example.net"). One trailing root dot on the host
// is ignored (rfc-checklist §6.11). Hosts and patterns are expected in A-label form.
[[nodiscard]] bool mx_matches(std::string_view pattern, std::string_view host);

// True when `host` matches any of `patterns`.
[[nodiscard]] bool mx_allowed(const std::vector<std::string>& patterns, std::string_view host);

}  // namespace mtasts
