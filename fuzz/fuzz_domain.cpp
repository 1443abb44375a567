// Fuzzes normalize_domain, check_ldh_hostname, is_same_or_subdomain and mx_matches.
// Input: "<pattern>\n<host>"; without a newline the whole input is both.
#include <string>

#include "core/domain.hpp"
#include "core/mx_match.hpp"
#include "fuzz_check.hpp"

using namespace mtasts;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = fuzz::as_text(data, size);
  const std::size_t newline = input.find('\n');
  const std::string_view pattern = input.substr(0, newline);
  const std::string_view host =
      newline == std::string_view::npos ? input : input.substr(newline + 1);

  (void)mx_matches(pattern, host);

  const auto normalized = normalize_domain(host);
  if (normalized) {
    const std::string& name = *normalized;
    // STS-51: idempotent, bounded, an LDH A-label name.
    FUZZ_CHECK(!name.empty() && name.size() <= 253);
    const auto again = normalize_domain(name);
    FUZZ_CHECK(again && *again == name);
    const auto checked = check_ldh_hostname(name);
    FUZZ_CHECK(checked && *checked == name);
    // STS-33: a name matches itself (and with a root dot), and "*.<parent>" matches it.
    FUZZ_CHECK(mx_matches(name, name));
    FUZZ_CHECK(mx_matches(name, name + "."));
    FUZZ_CHECK(is_same_or_subdomain(name, name));
    const std::size_t dot = name.find('.');
    const std::string parent = name.substr(dot + 1);
    FUZZ_CHECK(is_same_or_subdomain(name, parent));
    if (parent.find('.') != std::string::npos) {
      FUZZ_CHECK(mx_matches("*." + parent, name));
      FUZZ_CHECK(!mx_matches("*." + name, name));  // the wildcard label is never empty
    }
    const auto normalized_pattern = normalize_domain(pattern);
    if (normalized_pattern) (void)mx_matches(*normalized_pattern, name);
  } else {
    FUZZ_CHECK(normalized.error().category == ErrorCategory::invalid_domain ||
               normalized.error().category == ErrorCategory::address_literal);
    FUZZ_CHECK(fuzz::one_line(normalized.error().reason));
  }

  // An accepted LDH hostname is already normalized.
  const auto ldh = check_ldh_hostname(host);
  if (ldh) {
    const auto via_normalize = normalize_domain(host);
    FUZZ_CHECK(via_normalize && *via_normalize == *ldh);
  }
  return 0;
}
