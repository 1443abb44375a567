// DANE discovery for SMTP (RFC 7672 §2) as pure functions: given what validated DNS said about a
// recipient domain's MX RRset, each MX host's addresses and its TLSA RRset, does DANE govern
// delivery, and how? No I/O, no clock: DNS results and `now` are arguments. The service runs the
// lookups in the order these functions ask for (MX, then per host A/AAAA before TLSA, DANE-07).
//
// Stance (docs/dane.md): DANE is evaluated first and MTA-STS can never rescue it (RFC 8461 §2):
// a failed or bogus DANE lookup holds the mail (DANE-02, DANE-04); a secure MX RRset whose hosts
// all have usable TLSA records hands delivery to the MTA's own DANE; otherwise MTA-STS answers
// as usual while the MTA's opportunistic DANE still covers hosts that have TLSA records.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mtasts {

// The DNSSEC status of one answer as the validating resolver reported it.
enum class DnsTrust { secure, insecure, bogus, indeterminate };
// What one lookup gave: records, a definite "none" (NXDOMAIN or NODATA), or no answer to rely on
// (SERVFAIL, timeout, malformed answer).
enum class DnsOutcome { records, none, failed };

struct DnsResult {
  DnsOutcome outcome = DnsOutcome::failed;
  DnsTrust trust = DnsTrust::indeterminate;
  std::uint32_t ttl = 0;
  std::string detail;  // why it failed, for the admin
};

struct TlsaParams {
  std::uint8_t usage = 0;
  std::uint8_t selector = 0;
  std::uint8_t matching_type = 0;
  std::size_t data_size = 0;
};

// RFC 7672 §3.1 with RFC 7671 §5: usable for SMTP are DANE-TA(2) and DANE-EE(3) with selector
// Cert(0) or SPKI(1) and matching type Full(0, non-empty), SHA2-256(1, 32 octets) or
// SHA2-512(2, 64 octets). PKIX-TA(0) and PKIX-EE(1) are unusable (DANE-10).
[[nodiscard]] bool is_usable_tlsa(const TlsaParams& record);

enum class DaneHostState {
  usable,      // secure TLSA RRset with at least one usable record: DANE authentication
  unusable,    // secure TLSA RRset, none usable: TLS required, not authenticated (DANE-03b)
  no_tlsa,     // secure denial of TLSA: opportunistic TLS (DANE-03c)
  insecure,    // address or TLSA records not signed: DANE does not apply (DANE-07)
  no_address,  // the host has no address records: nobody delivers there
  failed,      // a lookup failed or was bogus: the host must not be used (DANE-02, DANE-04)
};
[[nodiscard]] std::string_view to_string(DaneHostState state);
[[nodiscard]] std::optional<DaneHostState> dane_host_state_from(std::string_view text);

struct DaneHost {
  std::uint16_t preference = 0;
  std::string name;
  DaneHostState state = DaneHostState::failed;
  std::string why;
  friend bool operator==(const DaneHost&, const DaneHost&) = default;
};

enum class DaneVerdict {
  not_applicable,  // MX RRset insecure, or no host with secure TLSA records: MTA-STS as usual
  partial,         // some hosts have secure TLSA records (not all usable): per-host DANE
  all_usable,      // every MX host has usable secure TLSA records: DANE governs alone
  failed,          // a DANE lookup failed or was bogus: hold the mail
};
[[nodiscard]] std::string_view to_string(DaneVerdict verdict);
[[nodiscard]] std::optional<DaneVerdict> dane_verdict_from(std::string_view text);

// What is cached about one domain's DANE state.
struct DaneState {
  DaneVerdict verdict = DaneVerdict::not_applicable;
  std::string reason;           // one line for `query` and logs
  std::vector<DaneHost> hosts;  // in MX preference order
  std::int64_t checked_at = 0;
  std::int64_t expires_at = 0;  // re-check DNS from then on
  bool required = false;        // DANE is mandatory for this domain by local configuration
  friend bool operator==(const DaneState&, const DaneState&) = default;
};

// Bounds on how long a DANE state is kept (its DNS TTLs, clamped), and how soon a failure is
// looked at again (failures are never remembered as "no DANE").
struct DaneTiming {
  std::int64_t min_ttl = 60;
  std::int64_t max_ttl = 3600;
  std::int64_t failure_retry = 60;
};

struct MxHostName {
  std::uint16_t preference = 0;
  std::string name;  // normalized, no root dot; "" for a null MX (RFC 7505)
};

// Step 1, the MX RRset (RFC 7672 §2.2.1). Either a final state (MX insecure: not applicable;
// bogus or failed: failed) or the hosts to examine, in preference order. A secure denial of MX
// gives the implicit MX: the domain itself (RFC 5321 §5.1).
struct DaneMxStep {
  std::optional<DaneState> final_state;  // set when no host needs looking at
  std::vector<MxHostName> hosts;
  bool truncated = false;  // more than kMaxDaneHosts hosts; the rest were left out
};
// At most this many MX hosts are examined; with more, the rest count as unknown (never
// all_usable).
inline constexpr std::size_t kMaxDaneHosts = 16;
[[nodiscard]] DaneMxStep dane_mx_step(std::string_view domain, const DnsResult& mx,
                                      std::vector<MxHostName> hosts, std::int64_t now,
                                      const DaneTiming& timing);

// Step 2, one host's address records (RFC 7672 §2.2.2): a final host state, or nullopt when the
// addresses are secure and the TLSA RRset must be looked up.
[[nodiscard]] std::optional<DaneHost> dane_address_step(const MxHostName& host,
                                                        const DnsResult& addresses);

// Step 3, the host's TLSA RRset at _25._tcp.<host> (RFC 7672 §2.2).
[[nodiscard]] DaneHost dane_tlsa_step(const MxHostName& host, const DnsResult& tlsa,
                                      const std::vector<TlsaParams>& records);

// The domain's state from its hosts. `ttl` is the smallest TTL of the answers used.
[[nodiscard]] DaneState dane_verdict(std::vector<DaneHost> hosts, bool hosts_truncated,
                                     std::uint32_t ttl, std::int64_t now, const DaneTiming& timing);

// The text a state's hosts are stored as: one line per host, "<pref> <name> <state> <why>".
[[nodiscard]] std::string format_dane_hosts(const std::vector<DaneHost>& hosts);
[[nodiscard]] std::optional<std::vector<DaneHost>> parse_dane_hosts(std::string_view text);

}  // namespace mtasts
