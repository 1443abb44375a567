// Errors are values: a closed category an engine can branch on, plus a sentence an admin can act
// on. The TLSRPT result type of each category is decided in one place (tlsrpt_result.hpp).
#pragma once

#include <exception>
#include <string>
#include <string_view>

namespace mtasts {

enum class ErrorCategory {
  invalid_domain,   // input is not a hostname we can look up
  address_literal,  // [192.0.2.1] style next hop: no policy can exist (STS-30)
  no_record,        // no _mta-sts / _smtp._tls record (NXDOMAIN, NODATA, none of the right version)
  multiple_records,  // more than one record of the right version (STS-06, RPT-04)
  record_syntax,     // the one record does not follow the grammar
  dns_temporary,     // SERVFAIL, timeout, network error: cannot tell now
  dns_bogus,         // DNSSEC validation failed
  fetch_failed,      // policy host unreachable, non-200, redirect, timeout, body too large
  webpki_invalid,    // policy host certificate failed PKIX validation
  policy_syntax,     // the policy body (or its media type) is not a valid STSv1 policy
  store,             // the cache could not be read or written
  config,            // bad configuration
  session_report,    // a TLSRPT session report from an MTA (datagram or request) is malformed
  report_delivery,   // a TLSRPT report could not be delivered (sendmail or HTTPS POST)
  shared_cache,      // the fleet's shared cache (Redis) could not be used: never fatal
  internal,          // a bug; never expected
};

[[nodiscard]] std::string_view to_string(ErrorCategory category);

struct Error {
  ErrorCategory category;
  std::string reason;  // one line, says what was expected and what was found

  friend bool operator==(const Error&, const Error&) = default;
};

// What an exception that ended a coroutine or a thread says, for a log line: its what(), or
// "unknown exception" for one that is not a std::exception.
[[nodiscard]] std::string exception_text(std::exception_ptr error);

}  // namespace mtasts
