// Exim's per-session TLSRPT report (design §7): after each outbound TLS session Exim's
// event_action sends mtastsd one readsocket line
//
//   tlsrpt <domain> <mx-host> <mx-ip> <sending-ip> <outcome> [<reason ...>]
//
// and mtastsd completes it into a TLSRPT session from what it knows about the domain: the
// DANE state, the cached MTA-STS policy, or the policy failure it saw itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/decide.hpp"
#include "core/tlsrpt_session.hpp"

namespace mtasts {

// The failure-reason-code an MTA or mtasts gives is cut to this many octets.
inline constexpr std::size_t kMaxFailureReason = 256;

// The failure-reason-code of a delivery to an MX host that the applied STS policy does not list
// (validation-failure, RFC 8460 §4.3.3).
inline constexpr std::string_view kMxNotInPolicyReason = "mx-not-in-policy";

struct MtaSessionReport {
  std::string domain;      // the recipient (policy) domain, normalized to A-labels
  std::string mx_host;     // as the MTA sent it (mx_host_name() normalizes it for the report)
  std::string mx_ip;       // normalized address text; "" when the MTA sent "-"
  std::string sending_ip;  // normalized address text; "" when the MTA sent "-"
  std::optional<tlsrpt::ResultType> failure;  // std::nullopt: the outcome was "ok"
  std::string reason;  // failure-reason-code (clean_report_text, kMaxFailureReason); "" when none
  friend bool operator==(const MtaSessionReport&, const MtaSessionReport&) = default;
};

// Parses a whole request line, command word included:
//   tlsrpt <domain> <mx-host> <mx-ip> <sending-ip> <outcome> [<reason ...>]
// Words are separated by spaces or tabs, leading and trailing blanks ignored, the command and
// the outcome in any case. The domain must be a hostname (normalize_domain); the IPs are IPv4 or
// IPv6 text or "-" for unknown; the outcome is "ok" (TLS negotiated and the certificate verified
// as the applied policy requires) or one of the MTA-side RFC 8460 result types:
// starttls-not-supported, certificate-host-mismatch, certificate-expired,
// certificate-not-trusted, validation-failure, tlsa-invalid, dnssec-invalid, dane-required.
// The reason is the rest of the line after the outcome (control characters replaced, cut to
// kMaxFailureReason octets); after "ok" it is ignored. Control characters in the first six words
// are refused. The error is a one-line reason quoting the offending input.
[[nodiscard]] std::expected<MtaSessionReport, std::string> parse_tlsrpt_request(
    std::string_view line);

// A TLSA record as RFC 8460 §4.5 writes it in policy-string: "usage selector mtype HEX", the
// certificate association data in lower-case hex without spaces ("3 1 1 1f3a...").
[[nodiscard]] std::string tlsa_policy_string(std::uint8_t usage, std::uint8_t selector,
                                             std::uint8_t matching_type,
                                             const std::vector<std::uint8_t>& data);

// The session an MTA report stands for, completed from what mtasts knows about the domain
// (`entry`, std::nullopt when nothing is cached) at `now`:
// - DANE applies to the MX host (its cached DANE host state is usable or unusable: a secure
//   TLSA RRset): policy type tlsa, policy-domain the MX host (the TLSA base domain),
//   policy-string `tlsa_records` (the host's TLSA RRs as tlsa_policy_string() writes them; the
//   cache keeps no RRs, so the caller passes them when it has them);
// - else an unexpired cached policy in mode enforce or testing: sts, policy-domain the domain,
//   policy-string the policy's lines as served, mx-host its mx patterns. An MX host the patterns
//   do not allow adds a validation-failure "mx-not-in-policy" (testing mode too);
// - else a policy is published but unavailable (entry->unavailable with a last_error whose
//   category has a TLSRPT result type, result_type_of()): sts with no strings and a failure of
//   that type whose failure-reason-code is the error's reason;
// - else (mode none, no policy, nothing cached): no-policy-found, policy-domain the domain.
// The MTA's own failure is one more failure detail in every case. Every failure detail carries
// the sending IP, the MX host (mx_host_name) and the MX IP. The policy failed when it has any
// failure detail.
[[nodiscard]] tlsrpt::Session session_from_mta_report(
    const MtaSessionReport& report, const std::optional<CacheEntry>& entry, UnixTime now,
    const std::vector<std::string>& tlsa_records = {});

}  // namespace mtasts
