// MX host validation against policy patterns (STS-33, RFC 8461 §4.1 and Appendix B, with
// RFC 6125 §6.4).
#include "core/mx_match.hpp"

#include <algorithm>

#include "core/domain.hpp"

namespace mtasts {

namespace {

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// RFC 6125 §6.4.1: DNS names compare case-insensitively (ASCII only; hosts are A-labels).
bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::ranges::equal(a, b, [](char x, char y) { return ascii_lower(x) == ascii_lower(y); });
}

// rfc-checklist §6.11: an MX name from DNS may carry the root dot; one is stripped, never more
// ("mx.example.com.." stays a name that is not "mx.example.com").
std::string_view without_root_dot(std::string_view host) {
  if (host.ends_with('.')) host.remove_suffix(1);
  return host;
}

// `name` has had its root dot stripped already.
bool name_matches(std::string_view pattern, std::string_view name) {
  if (pattern.empty()) return false;
  // RFC 8461 Appendix B: a host equal to the pattern matches, whatever its form.
  if (iequals(pattern, name)) return true;
  if (!pattern.starts_with("*.")) return false;
  // STS-33, RFC 8461 §4.1: "*" matches exactly one entire left-most label, so "*.example.net"
  // matches "mx.example.net" but neither "example.net", ".example.net" nor "a.b.example.net".
  const std::string_view suffix = pattern.substr(2);  // "example.net"
  if (suffix.empty()) return false;                   // "*." alone matches nothing
  const std::size_t dot = name.find('.');
  if (dot == std::string_view::npos || dot == 0) return false;  // the label is never empty
  return iequals(name.substr(dot + 1), suffix);
}

bool any_matches(const std::vector<std::string>& patterns, std::string_view name) {
  return std::ranges::any_of(
      patterns, [name](const std::string& pattern) { return name_matches(pattern, name); });
}

}  // namespace

bool mx_matches(std::string_view pattern, std::string_view host) {
  return name_matches(pattern, without_root_dot(host));
}

bool mx_allowed(const std::vector<std::string>& patterns, std::string_view host) {
  return any_matches(patterns, without_root_dot(host));
}

std::string mx_host_name(std::string_view host) {
  // STS-51: a U-label host is compared in A-label form, as the patterns are written.
  if (auto normalized = normalize_domain(host)) return std::move(*normalized);
  // Not a hostname (an MX record can name anything): never refused, matched as written.
  std::string name(without_root_dot(host));
  std::ranges::transform(name, name.begin(), ascii_lower);
  return name;
}

bool mx_host_allowed(const std::vector<std::string>& patterns, std::string_view host) {
  // mx_host_name strips the root dot; any_matches must not strip a second one.
  return any_matches(patterns, mx_host_name(host));
}

}  // namespace mtasts
