// The policy file served at https://mta-sts.<domain>/.well-known/mta-sts.txt (RFC 8461 §3.2).
#pragma once

#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace mtasts {

enum class Mode { enforce, testing, none };

[[nodiscard]] std::string_view to_string(Mode mode);
[[nodiscard]] std::optional<Mode> mode_from_string(std::string_view text);

// RFC 8461 §3.2: max_age is capped at 31557600 seconds (about one year).
inline constexpr std::int64_t kMaxAgeCap = 31557600;

struct Policy {
  Mode mode = Mode::none;
  std::int64_t max_age = 0;     // as published, already clamped to kMaxAgeCap (§6.2)
  std::vector<std::string> mx;  // patterns in order of appearance, lower-cased, A-labels
  friend bool operator==(const Policy&, const Policy&) = default;
};

// Parses a policy body against the strict ABNF of §3.2:
// - lines end in LF or CRLF, the last terminator optional (STS-15); a lone CR is an error;
// - `key ":" *WSP value *WSP`, no leading WSP, no WSP before ":", no blank lines or comments;
// - "version" must be exactly "STSv1", "mode" one of enforce|testing|none, "max_age" 1-10 digits
//   (clamped to kMaxAgeCap), keys and values case-sensitive (STS-13);
// - first occurrence of a duplicated non-mx key wins (STS-10); every "mx" line counts;
// - unknown keys ignored when syntactically valid (STS-16);
// - mx values are `["*."] Domain` in LDH A-label form with no trailing dot (STS-14); one
//   malformed mx line invalidates the whole policy (§6.5);
// - at least one mx unless mode is none (STS-14).
// Errors: policy_syntax, naming the line number and quoting the line.
[[nodiscard]] std::expected<Policy, Error> parse_policy(std::string_view body);

// One mx value, sts-policy-mx-value = ["*."] Domain (STS-14): an optional "*." and then a name
// that check_mx_domain accepts. Returns the pattern lower-cased. Errors: invalid_domain.
[[nodiscard]] std::expected<std::string, Error> check_mx_pattern(std::string_view value);

// STS-12: true when a Content-Type header value is text/plain (case-insensitive, parameters
// ignored). A missing header (empty view) is not text/plain (§6.6).
[[nodiscard]] bool is_text_plain(std::string_view content_type);

}  // namespace mtasts
