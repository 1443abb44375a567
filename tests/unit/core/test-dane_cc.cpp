// DANE discovery (RFC 7672 §2) as pure steps: every branch of the MX, address and TLSA steps,
// the usable-TLSA rules, the verdict with its bounded lifetime, and the stored host lines.
// Rows carry the rfc-checklist §4 ids (DANE-xx, I-x) where they apply.
#include "core/dane.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace mtasts {
namespace {

constexpr std::int64_t kNow = 1'700'000'000;
constexpr DaneTiming kTiming{/*min_ttl=*/60, /*max_ttl=*/3600, /*failure_retry=*/45};

DnsResult dns(DnsOutcome outcome, DnsTrust trust, std::uint32_t ttl = 300,
              std::string detail = "") {
  return DnsResult{outcome, trust, ttl, std::move(detail)};
}

std::string name_of(DnsOutcome outcome) {
  switch (outcome) {
    case DnsOutcome::records:
      return "records";
    case DnsOutcome::none:
      return "none";
    case DnsOutcome::failed:
      return "failed";
  }
  return "?";
}

std::string name_of(DnsTrust trust) {
  switch (trust) {
    case DnsTrust::secure:
      return "secure";
    case DnsTrust::insecure:
      return "insecure";
    case DnsTrust::bogus:
      return "bogus";
    case DnsTrust::indeterminate:
      return "indeterminate";
  }
  return "?";
}

constexpr DnsOutcome kOutcomes[] = {DnsOutcome::records, DnsOutcome::none, DnsOutcome::failed};
constexpr DnsTrust kTrusts[] = {DnsTrust::secure, DnsTrust::insecure, DnsTrust::bogus,
                                DnsTrust::indeterminate};

TlsaParams tlsa(int usage, int selector, int matching_type, std::size_t size) {
  return TlsaParams{static_cast<std::uint8_t>(usage), static_cast<std::uint8_t>(selector),
                    static_cast<std::uint8_t>(matching_type), size};
}

DaneHost host(std::uint16_t preference, std::string name, DaneHostState state,
              std::string why = "why") {
  return DaneHost{preference, std::move(name), state, std::move(why)};
}

// ---- usable TLSA records (RFC 7672 §3.1, RFC 7671 §5) ----

struct UsableRow {
  const char* name;
  TlsaParams record;
  bool usable;
};

TEST(DaneTlsa, usable_records) {
  const std::vector<UsableRow> rows = {
      {"DANE-10 §3.1.3 PKIX-TA(0) is unusable", tlsa(0, 1, 1, 32), false},
      {"DANE-10 §3.1.3 PKIX-EE(1) is unusable", tlsa(1, 1, 1, 32), false},
      {"DANE-10 PKIX-EE(1) full certificate is unusable", tlsa(1, 0, 0, 500), false},
      {"DANE-03a §3.1.2 DANE-TA(2) cert SHA2-256", tlsa(2, 0, 1, 32), true},
      {"DANE-03a §3.1.1 DANE-EE(3) SPKI SHA2-256", tlsa(3, 1, 1, 32), true},
      {"DANE-EE(3) SPKI SHA2-512", tlsa(3, 1, 2, 64), true},
      {"DANE-TA(2) SPKI SHA2-512", tlsa(2, 1, 2, 64), true},
      {"DANE-EE(3) cert Full(0) non-empty", tlsa(3, 0, 0, 1), true},
      {"DANE-TA(2) SPKI Full(0) non-empty", tlsa(2, 1, 0, 294), true},
      {"Full(0) with empty data is unusable", tlsa(3, 0, 0, 0), false},
      {"SHA2-256 must be 32 octets: 31", tlsa(3, 1, 1, 31), false},
      {"SHA2-256 must be 32 octets: 33", tlsa(3, 1, 1, 33), false},
      {"SHA2-256 must be 32 octets: 64", tlsa(3, 1, 1, 64), false},
      {"SHA2-256 with no data", tlsa(3, 1, 1, 0), false},
      {"SHA2-512 must be 64 octets: 63", tlsa(3, 1, 2, 63), false},
      {"SHA2-512 must be 64 octets: 65", tlsa(3, 1, 2, 65), false},
      {"SHA2-512 must be 64 octets: 32", tlsa(3, 1, 2, 32), false},
      {"selector 2 is unknown", tlsa(3, 2, 1, 32), false},
      {"selector 255 is unknown", tlsa(3, 255, 1, 32), false},
      {"matching type 3 is unknown", tlsa(3, 1, 3, 32), false},
      {"matching type 255 (private use) is unknown", tlsa(3, 1, 255, 64), false},
      {"usage 4 is unknown", tlsa(4, 1, 1, 32), false},
      {"usage 255 (private use) is unknown", tlsa(255, 1, 1, 32), false},
  };
  for (const UsableRow& row : rows) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(is_usable_tlsa(row.record), row.usable);
  }
}

// ---- the words stored and shown ----

TEST(DaneText, host_states_and_verdicts_round_trip) {
  const std::vector<std::pair<DaneHostState, std::string>> states = {
      {DaneHostState::usable, "usable"},         {DaneHostState::unusable, "unusable"},
      {DaneHostState::no_tlsa, "no-tlsa"},       {DaneHostState::insecure, "insecure"},
      {DaneHostState::no_address, "no-address"}, {DaneHostState::failed, "failed"},
  };
  for (const auto& [state, text] : states) {
    SCOPED_TRACE(text);
    EXPECT_EQ(to_string(state), text);
    EXPECT_EQ(dane_host_state_from(text), state);
  }
  const std::vector<std::pair<DaneVerdict, std::string>> verdicts = {
      {DaneVerdict::not_applicable, "not-applicable"},
      {DaneVerdict::partial, "partial"},
      {DaneVerdict::all_usable, "all-usable"},
      {DaneVerdict::failed, "failed"},
  };
  for (const auto& [verdict, text] : verdicts) {
    SCOPED_TRACE(text);
    EXPECT_EQ(to_string(verdict), text);
    EXPECT_EQ(dane_verdict_from(text), verdict);
  }
  for (const char* bad : {"", "Usable", "no_tlsa", "no-tlsa ", " usable", "all_usable",
                          "not_applicable", "FAILED", "secure"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(dane_host_state_from(bad));
    EXPECT_FALSE(dane_verdict_from(bad));
  }
}

// ---- step 1: the MX RRset (RFC 7672 §2.2.1) ----

struct MxRow {
  const char* name;
  DnsResult mx;
  std::vector<MxHostName> hosts;
  std::optional<DaneVerdict> verdict;  // set: a final state; unset: hosts to examine
  std::int64_t expires_at = 0;         // of the final state
  std::string reason_part;             // of the final state
  std::vector<std::string> examined = {};
};

TEST(DaneMxStep, every_branch) {
  const std::vector<MxHostName> two = {{10, "mx1.example.com"}, {20, "mx2.example.com"}};
  const std::vector<MxRow> rows = {
      {"DANE-06 §2.2.1 insecure MX RRset: DANE does not apply",
       dns(DnsOutcome::records, DnsTrust::insecure, 300), two, DaneVerdict::not_applicable,
       kNow + 300, "is not DNSSEC-signed"},
      {"DANE-06 insecure denial of MX: DANE does not apply",
       dns(DnsOutcome::none, DnsTrust::insecure, 900),
       {},
       DaneVerdict::not_applicable,
       kNow + 900,
       "is not DNSSEC-signed"},
      {"DANE-02 §2.1.1 indeterminate MX records: failed",
       dns(DnsOutcome::records, DnsTrust::indeterminate, 300), two, DaneVerdict::failed,
       kNow + kTiming.failure_retry, "could not be determined"},
      {"DANE-02 indeterminate denial: failed",
       dns(DnsOutcome::none, DnsTrust::indeterminate, 300),
       {},
       DaneVerdict::failed,
       kNow + kTiming.failure_retry,
       "could not be determined"},
      {"DANE-04 §2.1.2 bogus MX records: failed", dns(DnsOutcome::records, DnsTrust::bogus, 300),
       two, DaneVerdict::failed, kNow + kTiming.failure_retry, "(bogus)"},
      {"DANE-04 bogus denial: failed",
       dns(DnsOutcome::none, DnsTrust::bogus, 300),
       {},
       DaneVerdict::failed,
       kNow + kTiming.failure_retry,
       "(bogus)"},
      {"DANE-04 bogus failure: failed",
       dns(DnsOutcome::failed, DnsTrust::bogus, 0),
       {},
       DaneVerdict::failed,
       kNow + kTiming.failure_retry,
       "(bogus)"},
      {"DANE-04 SERVFAIL claimed secure: failed",
       dns(DnsOutcome::failed, DnsTrust::secure, 0),
       {},
       DaneVerdict::failed,
       kNow + kTiming.failure_retry,
       "lookup failed"},
      {"DANE-04 SERVFAIL insecure: failed, never not-applicable",
       dns(DnsOutcome::failed, DnsTrust::insecure, 0),
       {},
       DaneVerdict::failed,
       kNow + kTiming.failure_retry,
       "lookup failed"},
      {"DANE-04 timeout indeterminate: failed",
       dns(DnsOutcome::failed, DnsTrust::indeterminate),
       {},
       DaneVerdict::failed,
       kNow + kTiming.failure_retry,
       "lookup failed"},
      {"secure MX RRset: its hosts are examined",
       dns(DnsOutcome::records, DnsTrust::secure),
       two,
       std::nullopt,
       0,
       "",
       {"mx1.example.com", "mx2.example.com"}},
      {"RFC 5321 §5.1 secure denial of MX: the implicit MX is the domain",
       dns(DnsOutcome::none, DnsTrust::secure),
       {},
       std::nullopt,
       0,
       "",
       {"example.com"}},
      {"RFC 7505 null MX: nothing to examine",
       dns(DnsOutcome::records, DnsTrust::secure, 120),
       {{0, ""}},
       DaneVerdict::not_applicable,
       kNow + 120,
       "null MX"},
      {"a null MX beside real hosts is skipped",
       dns(DnsOutcome::records, DnsTrust::secure),
       {{0, ""}, {10, "mx1.example.com"}},
       std::nullopt,
       0,
       "",
       {"mx1.example.com"}},
      {"secure records naming no host",
       dns(DnsOutcome::records, DnsTrust::secure, 200),
       {},
       DaneVerdict::not_applicable,
       kNow + 200,
       "names no host"},
      {"DANE-05 §2.2.1 preference order, ties keep DNS order",
       dns(DnsOutcome::records, DnsTrust::secure),
       {{30, "c.example.com"}, {10, "b.example.com"}, {20, "z.example.com"}, {10, "a.example.com"}},
       std::nullopt,
       0,
       "",
       {"b.example.com", "a.example.com", "z.example.com", "c.example.com"}},
      {"a host listed twice is examined once, at its best preference",
       dns(DnsOutcome::records, DnsTrust::secure),
       {{20, "mx1.example.com"}, {10, "mx2.example.com"}, {5, "mx1.example.com"}},
       std::nullopt,
       0,
       "",
       {"mx1.example.com", "mx2.example.com"}},
      {"final states keep at least dane_min_ttl", dns(DnsOutcome::records, DnsTrust::insecure, 0),
       two, DaneVerdict::not_applicable, kNow + kTiming.min_ttl, "not DNSSEC-signed"},
      {"final states keep at most dane_max_ttl",
       dns(DnsOutcome::records, DnsTrust::insecure, 86400), two, DaneVerdict::not_applicable,
       kNow + kTiming.max_ttl, "not DNSSEC-signed"},
      {"failures are retried after failure_retry whatever the TTL",
       dns(DnsOutcome::records, DnsTrust::bogus, 86400), two, DaneVerdict::failed,
       kNow + kTiming.failure_retry, "(bogus)"},
  };
  for (const MxRow& row : rows) {
    SCOPED_TRACE(row.name);
    const DaneMxStep step = dane_mx_step("example.com", row.mx, row.hosts, kNow, kTiming);
    EXPECT_FALSE(step.truncated);
    if (row.verdict) {
      ASSERT_TRUE(step.final_state);
      EXPECT_EQ(step.final_state->verdict, *row.verdict);
      EXPECT_EQ(step.final_state->checked_at, kNow);
      EXPECT_EQ(step.final_state->expires_at, row.expires_at);
      EXPECT_NE(step.final_state->reason.find(row.reason_part), std::string::npos)
          << step.final_state->reason;
      EXPECT_NE(step.final_state->reason.find("example.com"), std::string::npos);
      EXPECT_TRUE(step.final_state->hosts.empty());
      EXPECT_FALSE(step.final_state->required);  // the service sets it
      EXPECT_TRUE(step.hosts.empty());
    } else {
      EXPECT_FALSE(step.final_state);
      std::vector<std::string> examined;
      for (const MxHostName& name : step.hosts) examined.push_back(name.name);
      EXPECT_EQ(examined, row.examined);
    }
  }
}

TEST(DaneMxStep, failure_detail_is_kept_for_the_admin) {
  const DaneMxStep step =
      dane_mx_step("example.com", dns(DnsOutcome::failed, DnsTrust::indeterminate, 0, "servfail"),
                   {}, kNow, kTiming);
  ASSERT_TRUE(step.final_state);
  EXPECT_EQ(step.final_state->reason, "the MX RRset of example.com lookup failed: servfail");
}

TEST(DaneMxStep, preferences_are_kept_with_the_hosts) {
  const DaneMxStep step = dane_mx_step(
      "example.com", dns(DnsOutcome::records, DnsTrust::secure),
      {{20, "b.example.com"}, {10, "a.example.com"}, {10, "b.example.com"}}, kNow, kTiming);
  ASSERT_EQ(step.hosts.size(), 2u);
  EXPECT_EQ(step.hosts[0].preference, 10);
  EXPECT_EQ(step.hosts[0].name, "a.example.com");
  EXPECT_EQ(step.hosts[1].preference, 10);
  EXPECT_EQ(step.hosts[1].name, "b.example.com");
}

std::vector<MxHostName> numbered_hosts(int count) {
  std::vector<MxHostName> hosts;
  for (int i = 0; i < count; ++i) {
    hosts.push_back(
        MxHostName{static_cast<std::uint16_t>(i), "mx" + std::to_string(i) + ".example.com"});
  }
  return hosts;
}

TEST(DaneMxStep, at_most_sixteen_hosts_are_examined) {
  const DnsResult secure = dns(DnsOutcome::records, DnsTrust::secure);
  DaneMxStep exact = dane_mx_step("example.com", secure, numbered_hosts(16), kNow, kTiming);
  EXPECT_EQ(exact.hosts.size(), kMaxDaneHosts);
  EXPECT_FALSE(exact.truncated);

  // Duplicates do not count against the limit.
  std::vector<MxHostName> with_duplicates = numbered_hosts(16);
  for (const MxHostName& name : numbered_hosts(16)) with_duplicates.push_back(name);
  DaneMxStep duplicates = dane_mx_step("example.com", secure, with_duplicates, kNow, kTiming);
  EXPECT_EQ(duplicates.hosts.size(), kMaxDaneHosts);
  EXPECT_FALSE(duplicates.truncated);

  DaneMxStep over = dane_mx_step("example.com", secure, numbered_hosts(40), kNow, kTiming);
  ASSERT_EQ(over.hosts.size(), kMaxDaneHosts);
  EXPECT_TRUE(over.truncated);
  EXPECT_FALSE(over.final_state);
  // The best-preference hosts are the ones kept (DANE-05).
  EXPECT_EQ(over.hosts.front().name, "mx0.example.com");
  EXPECT_EQ(over.hosts.back().name, "mx15.example.com");
}

// ---- step 2: the host's addresses (RFC 7672 §2.2.2) ----

struct TrustRow {
  DnsOutcome outcome;
  DnsTrust trust;
  std::optional<DaneHostState> state;  // unset: go on to TLSA
  const char* id;
};

TEST(DaneAddressStep, every_outcome_and_trust) {
  using O = DnsOutcome;
  using T = DnsTrust;
  using S = DaneHostState;
  const std::vector<TrustRow> rows = {
      {O::records, T::secure, std::nullopt, "DANE-07 secure addresses: look up TLSA next"},
      {O::records, T::insecure, S::insecure, "DANE-07 §2.2.2 insecure addresses: no TLSA lookup"},
      {O::records, T::bogus, S::failed, "DANE-04 bogus addresses: the host is unusable"},
      {O::records, T::indeterminate, S::failed, "DANE-02 indeterminate addresses: as bogus"},
      {O::none, T::secure, S::no_address, "no addresses (secure denial): ignored"},
      {O::none, T::insecure, S::no_address, "no addresses (insecure denial): ignored"},
      {O::none, T::bogus, S::failed, "DANE-04 bogus denial of addresses"},
      {O::none, T::indeterminate, S::failed, "DANE-02 indeterminate denial of addresses"},
      {O::failed, T::secure, S::failed, "DANE-04 address lookup failed"},
      {O::failed, T::insecure, S::failed, "DANE-04 address lookup failed (insecure)"},
      {O::failed, T::bogus, S::failed, "DANE-04 address lookup failed (bogus)"},
      {O::failed, T::indeterminate, S::failed, "DANE-04 address lookup timed out"},
  };
  ASSERT_EQ(rows.size(), std::size(kOutcomes) * std::size(kTrusts));
  const MxHostName mx{20, "mx1.example.com"};
  for (const TrustRow& row : rows) {
    SCOPED_TRACE(row.id + (" " + name_of(row.outcome) + "/" + name_of(row.trust)));
    const auto result = dane_address_step(mx, dns(row.outcome, row.trust, 300, "detail"));
    ASSERT_EQ(result.has_value(), row.state.has_value());
    if (!result) continue;
    EXPECT_EQ(result->state, *row.state);
    EXPECT_EQ(result->preference, 20);
    EXPECT_EQ(result->name, "mx1.example.com");
    EXPECT_FALSE(result->why.empty());
    if (result->state == S::failed) {
      EXPECT_NE(result->why.find("mx1.example.com"), std::string::npos) << result->why;
      EXPECT_NE(result->why.find("detail"), std::string::npos) << result->why;
    }
  }
}

// ---- step 3: the TLSA RRset (RFC 7672 §2.2) ----

TEST(DaneTlsaStep, every_outcome_and_trust) {
  using O = DnsOutcome;
  using T = DnsTrust;
  using S = DaneHostState;
  const std::vector<TrustRow> rows = {
      {O::records, T::secure, S::usable, "DANE-03a secure RRset with a usable record"},
      {O::records, T::insecure, S::insecure, "DANE-03c insecure TLSA: pre-DANE TLS"},
      {O::records, T::bogus, S::failed, "DANE-03d DANE-04 bogus TLSA"},
      {O::records, T::indeterminate, S::failed, "DANE-02 indeterminate TLSA"},
      {O::none, T::secure, S::no_tlsa, "DANE-03c authenticated denial of TLSA"},
      {O::none, T::insecure, S::insecure, "DANE-03c insecure denial of TLSA"},
      {O::none, T::bogus, S::failed, "DANE-03d DANE-04 bogus denial of TLSA"},
      {O::none, T::indeterminate, S::failed, "DANE-02 indeterminate denial of TLSA"},
      {O::failed, T::secure, S::failed, "DANE-03d DANE-04 I-5 TLSA SERVFAIL"},
      {O::failed, T::insecure, S::failed, "DANE-03d DANE-04 TLSA SERVFAIL (insecure)"},
      {O::failed, T::bogus, S::failed, "DANE-03d DANE-04 TLSA failed (bogus)"},
      {O::failed, T::indeterminate, S::failed, "DANE-03d DANE-04 TLSA timeout"},
  };
  ASSERT_EQ(rows.size(), std::size(kOutcomes) * std::size(kTrusts));
  const MxHostName mx{10, "mx1.example.com"};
  const std::vector<TlsaParams> records = {tlsa(3, 1, 1, 32)};
  for (const TrustRow& row : rows) {
    SCOPED_TRACE(row.id + (" " + name_of(row.outcome) + "/" + name_of(row.trust)));
    // The records only count when the lookup gave records.
    const DaneHost result =
        dane_tlsa_step(mx, dns(row.outcome, row.trust, 300, "detail"),
                       row.outcome == O::records ? records : std::vector<TlsaParams>{});
    ASSERT_TRUE(row.state);
    EXPECT_EQ(result.state, *row.state);
    EXPECT_EQ(result.preference, 10);
    EXPECT_EQ(result.name, "mx1.example.com");
    EXPECT_FALSE(result.why.empty());
    if (result.state == S::failed) {
      EXPECT_NE(result.why.find("_25._tcp.mx1.example.com"), std::string::npos) << result.why;
      EXPECT_NE(result.why.find("detail"), std::string::npos) << result.why;
    }
  }
}

struct RecordsRow {
  const char* name;
  std::vector<TlsaParams> records;
  DaneHostState state;
  std::string why;
};

TEST(DaneTlsaStep, secure_records_usable_or_not) {
  const std::vector<RecordsRow> rows = {
      {"DANE-03a one usable DANE-EE(3)",
       {tlsa(3, 1, 1, 32)},
       DaneHostState::usable,
       "1 of 1 TLSA records usable"},
      {"DANE-03a one usable record among unusable ones",
       {tlsa(1, 1, 1, 32), tlsa(2, 0, 1, 32), tlsa(3, 1, 1, 31)},
       DaneHostState::usable,
       "1 of 3 TLSA records usable"},
      {"DANE-03b DANE-10 only PKIX-EE(1): TLS required, not authenticated",
       {tlsa(1, 1, 1, 32)},
       DaneHostState::unusable,
       "none of 1 TLSA records usable"},
      {"DANE-03b DANE-10 PKIX-TA(0) and PKIX-EE(1) only",
       {tlsa(0, 0, 1, 32), tlsa(1, 1, 2, 64)},
       DaneHostState::unusable,
       "none of 2 TLSA records usable"},
      {"DANE-03b unknown selector and digest sizes",
       {tlsa(3, 2, 1, 32), tlsa(3, 1, 1, 20), tlsa(2, 1, 7, 32)},
       DaneHostState::unusable,
       "none of 3 TLSA records usable"},
      {"a secure 'records' answer carrying none is a denial",
       {},
       DaneHostState::no_tlsa,
       "no TLSA records"},
  };
  const MxHostName mx{10, "mx1.example.com"};
  for (const RecordsRow& row : rows) {
    SCOPED_TRACE(row.name);
    const DaneHost result =
        dane_tlsa_step(mx, dns(DnsOutcome::records, DnsTrust::secure), row.records);
    EXPECT_EQ(result.state, row.state);
    EXPECT_NE(result.why.find(row.why), std::string::npos) << result.why;
  }
}

// ---- the verdict ----

struct VerdictRow {
  const char* name;
  std::vector<DaneHost> hosts;
  bool truncated;
  DaneVerdict verdict;
  std::string reason_part;
};

TEST(DaneVerdict, from_the_hosts) {
  using S = DaneHostState;
  const std::vector<VerdictRow> rows = {
      {"I-1 every host usable: all-usable",
       {host(10, "mx1.example.com", S::usable), host(20, "mx2.example.com", S::usable)},
       false,
       DaneVerdict::all_usable,
       "every MX host (2)"},
      {"DANE-05 better MX without TLSA, worse with: partial (per-host DANE, preference wins)",
       {host(10, "mx1.example.com", S::no_tlsa), host(20, "mx2.example.com", S::usable)},
       false,
       DaneVerdict::partial,
       "1 of 2 MX hosts"},
      {"usable and insecure hosts: partial",
       {host(10, "mx1.example.com", S::usable), host(20, "mx2.example.com", S::insecure)},
       false,
       DaneVerdict::partial,
       "(1 usable)"},
      {"DANE-03b I-6 every host's records unusable: partial (TLS required)",
       {host(10, "mx1.example.com", S::unusable), host(20, "mx2.example.com", S::unusable)},
       false,
       DaneVerdict::partial,
       "2 of 2 MX hosts have DNSSEC-signed TLSA records (0 usable)"},
      {"usable and unusable: partial",
       {host(10, "mx1.example.com", S::usable), host(20, "mx2.example.com", S::unusable)},
       false,
       DaneVerdict::partial,
       "2 of 2"},
      {"I-8 DANE-03c no host with TLSA: not applicable",
       {host(10, "mx1.example.com", S::no_tlsa), host(20, "mx2.example.com", S::insecure)},
       false,
       DaneVerdict::not_applicable,
       "no MX host"},
      {"DANE-07 only insecure hosts: not applicable",
       {host(10, "mx1.example.com", S::insecure)},
       false,
       DaneVerdict::not_applicable,
       "no MX host"},
      {"hosts without addresses are ignored: the rest all usable",
       {host(10, "mx1.example.com", S::no_address), host(20, "mx2.example.com", S::usable)},
       false,
       DaneVerdict::all_usable,
       "every MX host (1)"},
      {"hosts without addresses are ignored in the count of partial",
       {host(5, "gone.example.com", S::no_address), host(10, "mx1.example.com", S::usable),
        host(20, "mx2.example.com", S::no_tlsa)},
       false,
       DaneVerdict::partial,
       "1 of 2 MX hosts"},
      {"no host has addresses: not applicable",
       {host(10, "mx1.example.com", S::no_address)},
       false,
       DaneVerdict::not_applicable,
       "no MX host"},
      {"DANE-04 I-5 one host failed: failed, whatever the others",
       {host(10, "mx1.example.com", S::usable), host(20, "mx2.example.com", S::failed, "SERVFAIL")},
       false,
       DaneVerdict::failed,
       "MX host mx2.example.com: SERVFAIL"},
      {"DANE-04 the first failed host is named",
       {host(10, "mx1.example.com", S::failed, "bogus A"),
        host(20, "mx2.example.com", S::failed, "timeout")},
       false,
       DaneVerdict::failed,
       "MX host mx1.example.com: bogus A"},
      {"a failed host without addresses elsewhere still fails",
       {host(10, "mx1.example.com", S::no_address),
        host(20, "mx2.example.com", S::failed, "bogus")},
       false,
       DaneVerdict::failed,
       "mx2.example.com"},
      {"more than 16 hosts, the 16 examined all usable: never all-usable",
       {host(10, "mx1.example.com", S::usable), host(20, "mx2.example.com", S::usable)},
       true,
       DaneVerdict::partial,
       "2 of 2"},
      {"truncated without TLSA: not applicable",
       {host(10, "mx1.example.com", S::no_tlsa)},
       true,
       DaneVerdict::not_applicable,
       "no MX host"},
      {"truncated with a failure: failed",
       {host(10, "mx1.example.com", S::failed)},
       true,
       DaneVerdict::failed,
       "mx1.example.com"},
  };
  for (const VerdictRow& row : rows) {
    SCOPED_TRACE(row.name);
    const DaneState state = dane_verdict(row.hosts, row.truncated, 600, kNow, kTiming);
    EXPECT_EQ(state.verdict, row.verdict);
    EXPECT_NE(state.reason.find(row.reason_part), std::string::npos) << state.reason;
    EXPECT_EQ(state.hosts, row.hosts);  // kept in MX preference order, for `query`
    EXPECT_EQ(state.checked_at, kNow);
    EXPECT_EQ(state.expires_at,
              row.verdict == DaneVerdict::failed ? kNow + kTiming.failure_retry : kNow + 600);
    EXPECT_FALSE(state.required);
  }
}

TEST(DaneVerdict, lifetime_is_the_ttl_clamped) {
  const std::vector<DaneHost> usable = {host(10, "mx1.example.com", DaneHostState::usable)};
  struct Row {
    const char* name;
    std::uint32_t ttl;
    DaneTiming timing;
    std::int64_t lifetime;
  };
  const std::vector<Row> rows = {
      {"TTL 0 gets dane_min_ttl", 0, kTiming, 60},
      {"TTL below the minimum", 59, kTiming, 60},
      {"TTL at the minimum", 60, kTiming, 60},
      {"TTL inside the bounds", 1234, kTiming, 1234},
      {"TTL at the maximum", 3600, kTiming, 3600},
      {"TTL above the maximum", 3601, kTiming, 3600},
      {"largest TTL", std::numeric_limits<std::uint32_t>::max(), kTiming, 3600},
      {"min 0 keeps a TTL of 0", 0, DaneTiming{0, 3600, 60}, 0},
      {"max below min: min wins", 10, DaneTiming{600, 60, 60}, 600},
      {"max below min, large TTL: min wins", 100000, DaneTiming{600, 60, 60}, 600},
      {"seven days", 10'000'000, DaneTiming{0, 7 * 86400, 60}, 7 * 86400},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(dane_verdict(usable, false, row.ttl, kNow, row.timing).expires_at,
              kNow + row.lifetime);
    // A final state from the MX step uses the same clamp.
    const DaneMxStep step = dane_mx_step(
        "example.com", dns(DnsOutcome::records, DnsTrust::insecure, row.ttl), {}, kNow, row.timing);
    ASSERT_TRUE(step.final_state);
    EXPECT_EQ(step.final_state->expires_at, kNow + row.lifetime);
  }
}

TEST(DaneVerdict, failures_are_retried_after_failure_retry_whatever_the_ttl) {
  const std::vector<DaneHost> failed = {host(10, "mx1.example.com", DaneHostState::failed)};
  for (std::uint32_t ttl : {0u, 30u, 600u, 86400u, std::numeric_limits<std::uint32_t>::max()}) {
    SCOPED_TRACE(ttl);
    const DaneState state = dane_verdict(failed, false, ttl, kNow, kTiming);
    EXPECT_EQ(state.verdict, DaneVerdict::failed);
    EXPECT_EQ(state.expires_at, kNow + kTiming.failure_retry);
  }
}

TEST(DaneVerdict, reasons_are_one_bounded_line) {
  const std::string why = "line one\nline two\r\x01" + std::string(1000, 'x');
  const DaneState state = dane_verdict({host(10, "mx1.example.com", DaneHostState::failed, why)},
                                       false, 60, kNow, kTiming);
  ASSERT_EQ(state.hosts.size(), 1u);
  EXPECT_EQ(state.hosts[0].why.size(), 300u);
  EXPECT_TRUE(state.hosts[0].why.starts_with("line one line two  "));
  EXPECT_EQ(state.reason.find('\n'), std::string::npos);
  EXPECT_EQ(state.reason.find('\r'), std::string::npos);
}

// ---- the stored host lines ----

TEST(DaneHostsText, round_trip) {
  std::vector<std::vector<DaneHost>> lists = {
      {},
      {host(10, "mx1.example.com", DaneHostState::usable, "1 of 1 TLSA records usable")},
      {host(0, "example.com", DaneHostState::no_tlsa, "")},
      {host(65535, "a.example", DaneHostState::failed, "TLSA at _25._tcp.a.example lookup failed"),
       host(10, "b.example", DaneHostState::insecure, "x  y   z "),
       host(20, "c.example", DaneHostState::unusable, "none"),
       host(30, "d.example", DaneHostState::no_address, "no A or AAAA records")},
  };
  std::vector<DaneHost> sixteen;
  for (int i = 0; i < 16; ++i) {
    sixteen.push_back(host(static_cast<std::uint16_t>(i), "mx" + std::to_string(i) + ".example",
                           DaneHostState::usable, "ok"));
  }
  lists.push_back(sixteen);
  for (const auto& hosts : lists) {
    SCOPED_TRACE(format_dane_hosts(hosts));
    const std::string text = format_dane_hosts(hosts);
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'),
              hosts.empty() ? 0 : static_cast<long>(hosts.size()) - 1);
    const auto parsed = parse_dane_hosts(text);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(*parsed, hosts);
  }
  EXPECT_EQ(format_dane_hosts({host(10, "mx1.example.com", DaneHostState::usable, "why")}),
            "10 mx1.example.com usable why");
}

TEST(DaneHostsText, reasons_with_line_breaks_stay_one_line_each) {
  const std::vector<DaneHost> hosts = {host(10, "a.example", DaneHostState::failed, "x\ny\rz"),
                                       host(20, "b.example", DaneHostState::usable, "ok")};
  const std::string text = format_dane_hosts(hosts);
  EXPECT_EQ(text, "10 a.example failed x y z\n20 b.example usable ok");
  const auto parsed = parse_dane_hosts(text);
  ASSERT_TRUE(parsed);
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0].why, "x y z");
}

TEST(DaneHostsText, malformed_text_is_rejected) {
  std::string seventeen;
  for (int i = 0; i < 17; ++i) {
    if (i > 0) seventeen += '\n';
    seventeen += std::to_string(i) + " mx" + std::to_string(i) + ".example usable ok";
  }
  const std::vector<std::pair<const char*, std::string>> rows = {
      {"preference not a number", "x mx.example usable ok"},
      {"negative preference", "-1 mx.example usable ok"},
      {"signed preference", "+1 mx.example usable ok"},
      {"preference above 65535", "65536 mx.example usable ok"},
      {"preference with junk", "1e1 mx.example usable ok"},
      {"empty preference (leading space)", " 10 mx.example usable ok"},
      {"preference only", "10"},
      {"no state", "10 mx.example"},
      {"empty name (two spaces)", "10  mx.example usable ok"},
      {"unknown state", "10 mx.example secure ok"},
      {"state in upper case", "10 mx.example USABLE ok"},
      {"state with CR", "10 mx.example usable\r"},
      {"an empty line first", "\n10 mx.example usable ok"},
      {"an empty line between", "10 a.example usable ok\n\n20 b.example usable ok"},
      {"one bad line of two", "10 a.example usable ok\n20 b.example maybe ok"},
      {"more than 16 hosts", seventeen},
  };
  for (const auto& [name, text] : rows) {
    SCOPED_TRACE(name);
    EXPECT_FALSE(parse_dane_hosts(text));
  }
}

}  // namespace
}  // namespace mtasts
