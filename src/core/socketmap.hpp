// The Postfix socketmap protocol as mtastsd serves it for smtp_tls_policy_maps (design §2.3;
// docs/protocol-socketmap.md). Pure parts: the request "<map-name> <key>", which keys are
// answered without a lookup, and the reply for an engine Answer. Netstring framing is in
// core/netstring.hpp.
//
// Replies (Postfix socketmap_table(5)): "OK <data>", "NOTFOUND ", "TEMP <reason>",
// "TIMEOUT <reason>", "PERM <reason>". Postfix treats TEMP and TIMEOUT as "retry later" and PERM
// as a configuration error; both defer the delivery. NOTFOUND keeps Postfix's own
// smtp_tls_security_level (so DANE or a site default stays in force).
#pragma once

#include <cstddef>
#include <expected>
#include <string>
#include <string_view>

#include "core/decide.hpp"

namespace mtasts {

// Per-map options, selected by the map name of the request (the last field of
// `socketmap:unix:/run/mtasts/socketmap.sock:NAME`), configured as [socketmap.NAME].
struct SocketmapMapOptions {
  // Answer mode testing like enforce ("strict testing"): mail waits unless the policy's checks
  // pass. Off: testing domains get NOTFOUND, as RFC 8461 §5 asks (deliver, report).
  bool enforce_testing = false;
  // Add "servername=hostname" (SNI = the MX host name, RFC 8461 §4.2; Postfix >= 3.4).
  bool servername = true;
  // Add the Postfix >= 3.10 TLSRPT attributes (policy_type, policy_domain, mx_host_pattern,
  // policy_string; policy_failure where a published policy is unavailable). Postfix < 3.10
  // refuses replies with them: keep off for 3.7.
  bool tlsrpt = false;
  // With tlsrpt: answer testing domains "OK may" plus the TLSRPT attributes so Postfix reports
  // their TLS results. This replaces smtp_tls_security_level for those domains with "may"
  // (also where DANE would have applied), hence off by default.
  bool report_testing = false;
  friend bool operator==(const SocketmapMapOptions&, const SocketmapMapOptions&) = default;
};

struct SocketmapRequest {
  std::string map;  // the first word
  std::string key;  // everything after the first space
  friend bool operator==(const SocketmapRequest&, const SocketmapRequest&) = default;
};

// Splits "<map-name> <key>" at the first space. Errors (a one-line reason): no space, an empty
// name or key, control characters.
[[nodiscard]] std::expected<SocketmapRequest, std::string> parse_socketmap_request(
    std::string_view payload);

enum class SocketmapKey {
  domain,            // look it up (after normalize_domain)
  parent_probe,      // ".example.com": Postfix asking for a parent-domain policy; never ours
  explicit_nexthop,  // "[host]", "[host]:port", "host:port", a Unix socket path: not an MX
                     // delivery to a recipient domain, so no MTA-STS (RFC 8461 §4)
};

// Classifies a key before any lookup: parent probes and explicit next hops (address literals
// included) are answered "NOTFOUND " at once.
[[nodiscard]] SocketmapKey classify_socketmap_key(std::string_view key);

// Postfix caps replies at 100000 octets (dict_sockmap.c); replies stay below this.
inline constexpr std::size_t kSocketmapMaxReply = 99000;

// The reply for `answer`, the engine's answer for `domain` (normalized):
// - DANE first: a failed DANE lookup "TEMP <reason>"; every MX host with usable TLSA, DANE made
//   mandatory, or some hosts with TLSA under an enforce policy (or a testing one with
//   enforce_testing) "OK dane-only"; some hosts with TLSA otherwise "OK dane" (Postfix's
//   per-host DANE, RFC 7672 §2.2), except for fail, which keeps its reply below;
// - enforce (or testing with enforce_testing): "OK secure match=<patterns>" with the policy's
//   mx patterns sorted, duplicates dropped, joined by ':' (deterministic, design §6), then
//   " servername=hostname" and the TLSRPT attributes as the options say;
// - testing with tlsrpt and report_testing: "OK may" and the TLSRPT attributes;
// - fail (strict mode: a policy is published but none could be had): "TEMP <reason>", or with
//   tlsrpt "OK secure policy_type=sts policy_domain=<d> policy_failure=<type>" so Postfix defers
//   and reports the failure;
// - everything else (testing, none, no policy): "NOTFOUND ".
// `policy_text` is the policy as served (for policy_string, one attribute per non-empty line;
// lines Postfix could not carry inside "{ ... }" are left out). `last_error` is the cache
// entry's "<category>: <reason>" (for the fail reply). policy_string and then mx_host_pattern
// attributes are dropped if the reply would exceed kSocketmapMaxReply; a match list alone too
// long for it (only possible with max_policy_bytes far above 64 KiB) gives "TEMP <reason>".
//
// `mx_hosts` are the domain's MX host names (normalized) when the caller looked them up. Postfix
// has no one-label wildcard in match= ("*.example.net" only matches a certificate naming
// "*.example.net" literally) and its ".example.net" matches any depth, which design §6 rules
// out; so each "*." pattern is replaced by the MX hosts it matches (RFC 8461 §4.1: one label).
// A "*." pattern without a matching host is kept as written: it matches no certificate, so
// Postfix defers rather than delivering unchecked.
[[nodiscard]] std::string socketmap_reply(std::string_view domain, const Answer& answer,
                                          std::string_view policy_text, std::string_view last_error,
                                          const SocketmapMapOptions& options,
                                          const std::vector<std::string>& mx_hosts = {});

// The names for match=: the exact patterns, and for each "*." pattern the MX hosts it matches
// (the pattern itself when none does). Sorted, duplicates dropped. Only MX hosts that are
// normalized hostnames are used (a name that is not could break the reply); the others are
// left out, never an error.
[[nodiscard]] std::vector<std::string> postfix_match_names(
    const std::vector<std::string>& patterns, const std::vector<std::string>& mx_hosts);

// Whether any pattern is a "*." wildcard (the caller then needs the MX hosts).
[[nodiscard]] bool has_wildcard_pattern(const std::vector<std::string>& patterns);

// The TLSRPT result type (RFC 8460 §4.3.2.1) for a cache entry's last_error
// "<category>: <reason>": sts-webpki-invalid, sts-policy-invalid or sts-policy-fetch-error.
[[nodiscard]] std::string_view sts_policy_failure(std::string_view last_error);

// "TEMP <reason>" / "PERM <reason>" with the reason made one printable line of at most ~400
// octets.
[[nodiscard]] std::string socketmap_temp(std::string_view reason);
[[nodiscard]] std::string socketmap_perm(std::string_view reason);

}  // namespace mtasts
