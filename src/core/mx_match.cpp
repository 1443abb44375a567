// MX host validation against policy patterns (STS-33, RFC 8461 §4.1 with RFC 6125 §6.4).
#include "core/mx_match.hpp"

#include <algorithm>

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

}  // namespace

bool mx_matches(std::string_view pattern, std::string_view host) {
  // rfc-checklist §6.11: an MX name from DNS may carry the root dot; strip one before matching.
  if (host.ends_with('.')) host.remove_suffix(1);
  if (host.empty() || pattern.empty()) return false;
  // The host is the reference identifier (the MX record's target): it never holds a wildcard.
  if (host.find('*') != std::string_view::npos) return false;

  if (!pattern.starts_with("*.")) return iequals(pattern, host);

  // STS-33, RFC 8461 §4.1: "*" matches exactly one entire left-most label, so "*.example.net"
  // matches "mx.example.net" but neither "example.net" nor "a.b.example.net".
  const std::string_view suffix = pattern.substr(1);  // ".example.net"
  if (suffix.size() < 2) return false;                // "*." alone matches nothing
  if (host.size() <= suffix.size()) return false;     // the wildcard label is never empty
  const std::string_view first_label = host.substr(0, host.size() - suffix.size());
  if (first_label.find('.') != std::string_view::npos) return false;
  return iequals(host.substr(first_label.size()), suffix);
}

bool mx_allowed(const std::vector<std::string>& patterns, std::string_view host) {
  return std::ranges::any_of(
      patterns, [host](const std::string& pattern) { return mx_matches(pattern, host); });
}

}  // namespace mtasts
