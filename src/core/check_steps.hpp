// The steps of `mtasts check DOMAIN` (core/check_report.hpp) built from what the network said:
// DNS answers, the facts of a policy fetch and of SMTP STARTTLS probes. Pure: every lookup
// result and `now` are arguments; the service gathers them (service/domain_check.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/check_report.hpp"
#include "core/dane.hpp"
#include "core/policy.hpp"
#include "core/sts_record.hpp"

namespace mtasts {

// One certificate of a chain as the peer sent it.
struct CertFacts {
  std::string subject;            // one-line distinguished name
  std::string issuer;             // one-line distinguished name
  std::vector<std::string> sans;  // DNS SANs ("DNS:x") and IP SANs ("IP:x")
  std::int64_t not_before = 0;    // Unix time
  std::int64_t not_after = 0;     // Unix time
};

// What a TLS handshake showed, for a diagnosis: kept even when the handshake failed.
struct TlsFacts {
  std::string version;               // "TLSv1.3"; "" when the handshake did not finish
  std::vector<CertFacts> chain;      // leaf first, as sent; empty when none was seen
  std::string verify_error;          // PKIX validation error; "" when valid or not reached
  std::optional<bool> name_matches;  // the leaf names the host (SAN only, STS-18)
};

// What one policy fetch showed beyond its result (adapters/https fills it step by step).
struct PolicyFetchFacts {
  std::string host;     // mta-sts.<domain>
  std::string url;      // https://mta-sts.<domain>/.well-known/mta-sts.txt
  std::string address;  // the peer that accepted, "127.0.0.1:443"
  TlsFacts tls;
  std::optional<unsigned> http_status;      // once a response header came
  std::optional<std::string> content_type;  // the header's value, when present
  std::optional<std::string> location;      // for a 3xx
  std::optional<std::size_t> body_size;     // once the body was read
};

// The outcome of one SMTP STARTTLS probe of an MX host (adapters/smtp).
struct SmtpProbeFacts {
  std::string host;
  std::string address;   // the peer that accepted; "" when none did
  std::string greeting;  // the 220 line, quoted by the renderer
  bool starttls_offered = false;
  TlsFacts tls;
  std::optional<std::string> failure;  // what went wrong first (connect, greeting, EHLO, TLS)
};

// RFC 8461 §3.1: the TXT records at _mta-sts.<domain>; `records` only when outcome is records.
// `dane_governs`: every MX host has usable DANE records, so a domain without MTA-STS is fine.
struct TxtCheck {
  CheckStep step;
  std::optional<StsRecord> record;  // the one valid STSv1 record, when there is one
};
[[nodiscard]] TxtCheck check_sts_txt(std::string_view domain, const DnsResult& lookup,
                                     const std::vector<std::string>& records,
                                     bool dane_governs = false);

// RFC 8461 §3.3: the fetch. `failure` is the fetcher's error reason, nullopt when a body came.
[[nodiscard]] CheckStep check_policy_fetch(const PolicyFetchFacts& facts,
                                           const std::optional<std::string>& failure,
                                           std::int64_t now);

// RFC 8461 §3.2: the policy body, line by line, and the verdict of the strict parser.
struct PolicyCheck {
  CheckStep step;
  std::optional<Policy> policy;
};
[[nodiscard]] PolicyCheck check_policy_body(std::string_view body);

// RFC 8461 §4.1: the domain's MX hosts against the policy's mx patterns.
[[nodiscard]] CheckStep check_mx_coverage(std::string_view domain, const Policy& policy,
                                          const DnsResult& lookup,
                                          const std::vector<MxHostName>& hosts);

// RFC 8460 §3: the TXT records at _smtp._tls.<domain>.
[[nodiscard]] CheckStep check_tlsrpt_txt(std::string_view domain, const DnsResult& lookup,
                                         const std::vector<std::string>& records);

// RFC 7672 §2: the DANE state of the domain; nullopt when no validating resolver was configured.
// `sts_published` says whether an MTA-STS policy would otherwise apply.
[[nodiscard]] CheckStep check_dane_state(const std::optional<DaneState>& state, bool sts_published);

// RFC 3207 and RFC 8461 §4.2: one probe per MX host.
[[nodiscard]] CheckStep check_smtp_probes(const std::vector<SmtpProbeFacts>& probes,
                                          std::int64_t now);

// "2026-12-07" for a Unix time (UTC).
[[nodiscard]] std::string check_date(std::int64_t unix_time);

}  // namespace mtasts
