// Fuzzes parse_policy (RFC 8461 §3.2) and is_text_plain. Input: a policy body.
#include <algorithm>
#include <string>

#include "core/domain.hpp"
#include "core/policy.hpp"
#include "fuzz_check.hpp"

using namespace mtasts;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = fuzz::as_text(data, size);
  (void)is_text_plain(input);

  const auto policy = parse_policy(input);
  if (!policy) {
    FUZZ_CHECK(policy.error().category == ErrorCategory::policy_syntax);
    FUZZ_CHECK(fuzz::one_line(policy.error().reason));
    return 0;
  }
  // STS-13, §6.2: max_age within [0, cap]; STS-14: mx present unless none, and every pattern
  // is ["*."] plus a lower-case LDH Domain of one label or more (check_mx_domain).
  FUZZ_CHECK(policy->max_age >= 0 && policy->max_age <= kMaxAgeCap);
  FUZZ_CHECK(policy->mode == Mode::none || !policy->mx.empty());
  for (const std::string& mx : policy->mx) {
    const std::string_view host = mx.starts_with("*.") ? std::string_view(mx).substr(2) : mx;
    const auto checked = check_mx_domain(host);
    FUZZ_CHECK(checked && *checked == host);
  }
  // A canonical rendering of the parsed policy parses back to the same value.
  std::string canonical = "version: STSv1\r\nmode: " + std::string(to_string(policy->mode)) +
                          "\r\nmax_age: " + std::to_string(policy->max_age);
  for (const std::string& mx : policy->mx) canonical += "\r\nmx: " + mx;
  const auto again = parse_policy(canonical);
  FUZZ_CHECK(again && *again == *policy);
  return 0;
}
