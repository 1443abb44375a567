// What a TLSRPT reporter (RFC 8460) collects: one record per delivery attempt (an SMTP session),
// with the policies that applied and how each ended, and the per-day tallies a report is built
// from. The same shape comes from Postfix's libtlsrpt datagrams, from Exim's `tlsrpt` requests
// and from mtasts's own policy failures (design §7).
#pragma once

#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace mtasts::tlsrpt {

// RFC 8460 §4.4 policy-type; the numbers are libtlsrpt's (tlsrpt.h).
enum class PolicyType : int { tlsa = 1, sts = 2, no_policy_found = 9 };

// RFC 8460 §4.3 result-type; the numbers are libtlsrpt's (tlsrpt.h).
enum class ResultType : int {
  starttls_not_supported = 201,
  certificate_host_mismatch = 202,
  certificate_not_trusted = 203,
  certificate_expired = 204,
  validation_failure = 205,
  sts_policy_fetch_error = 301,
  sts_policy_invalid = 302,
  sts_webpki_invalid = 303,
  tlsa_invalid = 304,
  dnssec_invalid = 305,
  dane_required = 306,
};

// "sts", "tlsa", "no-policy-found".
[[nodiscard]] std::string_view to_string(PolicyType type);
// "starttls-not-supported", ...: the RFC 8460 §6.6 registry names.
[[nodiscard]] std::string_view to_string(ResultType type);
[[nodiscard]] std::optional<PolicyType> policy_type_from_code(std::int64_t code);
[[nodiscard]] std::optional<ResultType> result_type_from_code(std::int64_t code);
[[nodiscard]] std::optional<ResultType> result_type_from_name(std::string_view name);

// The TLSRPT result type of a policy failure mtasts itself saw (fetch_failed, webpki_invalid,
// policy_syntax); std::nullopt for categories that are not a policy failure.
[[nodiscard]] std::optional<ResultType> result_type_of(ErrorCategory category);

// The applied policy as a report names it (RFC 8460 §4.4 "policy"). Ordered, so it can key a map.
struct PolicyKey {
  PolicyType type = PolicyType::no_policy_found;
  std::string domain;                       // policy-domain, A-labels, lower case
  std::vector<std::string> policy_strings;  // policy-string: STS lines / TLSA "u s m HEX" RRs
  std::vector<std::string> mx_hosts;        // mx-host: the STS policy's mx patterns
  friend auto operator<=>(const PolicyKey&, const PolicyKey&) = default;
  friend bool operator==(const PolicyKey&, const PolicyKey&) = default;
};

// One failure-details entry without its count (RFC 8460 §4.4). Empty strings are absent fields.
struct FailureKey {
  ResultType result = ResultType::validation_failure;
  std::string sending_mta_ip;
  std::string receiving_mx_hostname;
  std::string receiving_mx_helo;
  std::string receiving_ip;
  std::string additional_information;
  std::string failure_reason_code;
  friend auto operator<=>(const FailureKey&, const FailureKey&) = default;
  friend bool operator==(const FailureKey&, const FailureKey&) = default;
};

// How one policy fared in one session: `failed` is the session's final result under it (a
// session may carry failure details and still succeed, e.g. one MX failed and the next worked).
struct PolicyOutcome {
  PolicyKey policy;
  bool failed = false;
  std::vector<FailureKey> failures;
  friend bool operator==(const PolicyOutcome&, const PolicyOutcome&) = default;
};

// One delivery attempt as the MTA reported it.
struct Session {
  std::string report_domain;  // the recipient (policy) domain the report goes to, A-labels
  std::string tlsrpt_record;  // the _smtp._tls record the MTA saw ("" when none or unknown)
  std::vector<PolicyOutcome> policies;  // at least one
  friend bool operator==(const Session&, const Session&) = default;
};

// IPv4 or IPv6 address text in its canonical form: dotted decimal, or RFC 5952 for IPv6
// ("2001:DB8:0::1" -> "2001:db8::1"); std::nullopt when `text` is neither.
[[nodiscard]] std::optional<std::string> normalize_ip_text(std::string_view text);

// Free text from an MTA made safe for a report and a log line: control characters (tab
// included) become spaces, bytes that are not UTF-8 become "?", and the text is cut to at most
// `max_octets` octets without splitting a character.
[[nodiscard]] std::string clean_report_text(std::string_view text, std::size_t max_octets);

// A UTC calendar day.
using Day = std::chrono::sys_days;

// "2026-12-07".
[[nodiscard]] std::string format_day(Day day);
// Parses "YYYY-MM-DD" (a real calendar date).
[[nodiscard]] std::optional<Day> parse_day(std::string_view text);
// The UTC day holding Unix time `unix_seconds`.
[[nodiscard]] Day day_of(std::int64_t unix_seconds);

// The counts of one (day, report domain, policy): what a report's policies[] entry says.
struct PolicyTally {
  PolicyKey policy;
  std::uint64_t successful = 0;
  std::uint64_t failed = 0;
  std::map<FailureKey, std::uint64_t> failures;  // failed-session-count per entry
  friend bool operator==(const PolicyTally&, const PolicyTally&) = default;
};

}  // namespace mtasts::tlsrpt
