// The datagrams Postfix (>= 3.10) sends through sys4's libtlsrpt to a TLSRPT collector, one per
// delivery request, on a UNIX datagram socket (design §7). libtlsrpt (0.5) writes one JSON object:
//
//   {"dpv": "1","d": "<domain>","pr": "<_smtp._tls record>","policies":[{"policy-type":2,
//    "policy-domain": "<domain>","policy-string":["..."],"mx-host":["..."],
//    "failure-details":[{"c":202,"s": "<sending ip>","n": "<mx name>","h": "<helo>",
//    "r": "<mx ip>","a": "<additional information>","f": "<failure reason code>"}],"t":1,"f":1}]}
//
// policy-type is 1 tlsa, 2 sts or 9 no-policy-found; t counts the failure details; f is the
// policy's final result (0 success, 1 failure). Absent lists and absent failure fields are not
// written. libtlsrpt before 0.5 sent no "dpv".
#pragma once

#include <cstddef>
#include <expected>
#include <string_view>

#include "core/error.hpp"
#include "core/tlsrpt_session.hpp"

namespace mtasts {

// Bounds on what one datagram may carry; anything larger is refused, never cut.
inline constexpr std::size_t kMaxTlsrptDatagram = 65536;  // octets
inline constexpr std::size_t kMaxDatagramPolicies = 16;
inline constexpr std::size_t kMaxDatagramListEntries = 64;  // policy-string, mx-host
inline constexpr std::size_t kMaxDatagramFailures = 64;     // failure-details
inline constexpr std::size_t kMaxDatagramString = 1024;     // octets of one string value
inline constexpr std::size_t kMaxDatagramRecord = 4096;     // octets of "pr" (a TXT record)

// Parses one libtlsrpt datagram into a session:
// - a JSON object (RFC 8259, UTF-8) of at most kMaxTlsrptDatagram octets, no key twice in any
//   object, unknown keys ignored;
// - "dpv", when present, is the string "1"; "pr" (the TLSRPT record) is optional;
// - "d" is required and normalized to A-labels (normalize_domain), like "policy-domain"; a
//   no-policy-found policy without policy-domain gets "d";
// - "policies" holds 1 to kMaxDatagramPolicies objects with a known "policy-type", optional
//   string lists "policy-string" and "mx-host", optional "failure-details" objects each with a
//   known result code "c", "t" equal to the number of failure details, "f" 0 or 1;
// - the IP fields "s" and "r" are IPv4 or IPv6 text, normalized (normalize_ip_text); "n" is
//   normalized like an MX host (mx_host_name); text fields go through clean_report_text; an
//   empty string is an absent field.
// Errors: session_report, the reason naming the key
// ("policies[1].failure-details[0].c: unknown result code 999").
[[nodiscard]] std::expected<tlsrpt::Session, Error> parse_tlsrpt_datagram(
    std::string_view datagram);

}  // namespace mtasts
