// Exim's per-session `tlsrpt` request (design §7): parsing the readsocket line, and completing
// the session from what mtasts knows about the domain (DANE state, cached policy, its own policy
// failures).
#include "core/tlsrpt_mta_request.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mtasts {
namespace {

using tlsrpt::FailureKey;
using tlsrpt::PolicyOutcome;
using tlsrpt::PolicyType;
using tlsrpt::ResultType;
using tlsrpt::Session;

constexpr UnixTime kNow = 1'800'000'000;

MtaSessionReport parsed(std::string_view line) {
  auto report = parse_tlsrpt_request(line);
  EXPECT_TRUE(report.has_value()) << line << " -> " << report.error();
  return report ? *report : MtaSessionReport{};
}

std::string refused(std::string_view line) {
  auto report = parse_tlsrpt_request(line);
  EXPECT_FALSE(report.has_value()) << line;
  return report ? "" : report.error();
}

TEST(TlsrptRequest, parses_success_and_failure_lines) {
  const MtaSessionReport ok = parsed("tlsrpt example.com mx.example.com 192.0.2.25 192.0.2.1 ok");
  EXPECT_EQ(ok, (MtaSessionReport{"example.com", "mx.example.com", "192.0.2.25", "192.0.2.1",
                                  std::nullopt, ""}));

  const MtaSessionReport failed = parsed(
      "  TLSRPT\tExample.COM.  MX.example.com.\t2001:DB8:0::25 -  Certificate-Expired  "
      "certificate has\texpired (depth 0)  \t");
  EXPECT_EQ(failed.domain, "example.com");
  EXPECT_EQ(failed.mx_host, "MX.example.com.");  // normalized only for the report
  EXPECT_EQ(failed.mx_ip, "2001:db8::25");
  EXPECT_EQ(failed.sending_ip, "");
  EXPECT_EQ(failed.failure, ResultType::certificate_expired);
  EXPECT_EQ(failed.reason, "certificate has expired (depth 0)");

  EXPECT_EQ(parsed("tlsrpt b\xc3\xbc"
                   "cher.example mx.example.net - - starttls-not-supported")
                .domain,
            "xn--bcher-kva.example");
}

TEST(TlsrptRequest, every_mta_outcome) {
  const std::vector<std::pair<const char*, ResultType>> outcomes = {
      {"starttls-not-supported", ResultType::starttls_not_supported},
      {"certificate-host-mismatch", ResultType::certificate_host_mismatch},
      {"certificate-expired", ResultType::certificate_expired},
      {"certificate-not-trusted", ResultType::certificate_not_trusted},
      {"validation-failure", ResultType::validation_failure},
      {"tlsa-invalid", ResultType::tlsa_invalid},
      {"dnssec-invalid", ResultType::dnssec_invalid},
      {"dane-required", ResultType::dane_required},
  };
  for (const auto& [name, type] : outcomes) {
    SCOPED_TRACE(name);
    const MtaSessionReport report =
        parsed(std::string("tlsrpt example.com mx.example.com - 192.0.2.1 ") + name);
    EXPECT_EQ(report.failure, type);
    EXPECT_EQ(report.reason, "");
  }
}

TEST(TlsrptRequest, reason_is_cleaned_and_cut) {
  const MtaSessionReport control =
      parsed("tlsrpt example.com mx.example.com - - validation-failure bad\x01thing\x7f");
  EXPECT_EQ(control.reason, "bad thing ");
  const MtaSessionReport long_reason = parsed(
      "tlsrpt example.com mx.example.com - - certificate-not-trusted " + std::string(300, 'r'));
  EXPECT_EQ(long_reason.reason, std::string(kMaxFailureReason, 'r'));
  // After "ok" there is nothing to report: words there are ignored.
  const MtaSessionReport ok = parsed("tlsrpt example.com mx.example.com - - ok TLS1.3 fine");
  EXPECT_FALSE(ok.failure.has_value());
  EXPECT_EQ(ok.reason, "");
}

TEST(TlsrptRequest, refuses_bad_lines) {
  struct Row {
    const char* name;
    std::string line;
    std::string reason_start;
  };
  const std::vector<Row> rows = {
      {"empty", "", "empty request"},
      {"blanks", " \t ", "empty request"},
      {"other command", "getmta example.com", "unknown command \"getmta\"; expected tlsrpt"},
      {"command only", "tlsrpt", "tlsrpt takes at least 5 arguments"},
      {"no outcome", "tlsrpt example.com mx.example.com 192.0.2.25 192.0.2.1",
       "tlsrpt takes at least 5 arguments (domain mx-host mx-ip sending-ip outcome [reason]), "
       "got 4"},
      {"address literal domain", "tlsrpt [192.0.2.1] mx.example.com - - ok", "domain: "},
      {"bad domain", "tlsrpt exa_mple.com mx.example.com - - ok", "domain: "},
      {"bad mx ip", "tlsrpt example.com mx.example.com 192.0.2.256 - ok",
       "mx-ip \"192.0.2.256\" is not an IPv4 or IPv6 address (or \"-\")"},
      {"mx ip is a name", "tlsrpt example.com mx.example.com mx.example.com - ok",
       "mx-ip \"mx.example.com\" is not"},
      {"bad sending ip", "tlsrpt example.com mx.example.com - [192.0.2.1] ok",
       "sending-ip \"[192.0.2.1]\" is not"},
      {"unknown outcome", "tlsrpt example.com mx.example.com - - failed",
       "unknown outcome \"failed\"; expected ok, starttls-not-supported,"},
      {"mtasts's own result type", "tlsrpt example.com mx.example.com - - sts-policy-fetch-error",
       "unknown outcome \"sts-policy-fetch-error\""},
      {"control character in a word", "tlsrpt example.com mx\x01.example.com - - ok",
       "control character in request"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    const std::string reason = refused(row.line);
    EXPECT_TRUE(reason.starts_with(row.reason_start)) << reason;
    EXPECT_EQ(reason.find_first_of("\r\n\x01"), std::string::npos) << reason;
  }
}

TEST(TlsrptRequest, tlsa_policy_string_is_lower_hex) {
  EXPECT_EQ(tlsa_policy_string(3, 1, 1, {0x1f, 0xa0, 0x00, 0xff}), "3 1 1 1fa000ff");
  EXPECT_EQ(tlsa_policy_string(2, 0, 2, {}), "2 0 2 ");
}

// --- completion -------------------------------------------------------------------------------

MtaSessionReport report_for(std::string mx_host, std::optional<ResultType> failure = std::nullopt,
                            std::string reason = "") {
  return MtaSessionReport{"example.com", std::move(mx_host), "192.0.2.25", "198.51.100.1",
                          failure,       std::move(reason)};
}

CacheEntry policy_entry(Mode mode, std::vector<std::string> mx, std::string text,
                        UnixTime expires_at = kNow + 86400) {
  CacheEntry entry;
  entry.policy = CachedPolicy{Policy{mode, 86400, std::move(mx)}, "id1", kNow - 600, expires_at,
                              std::move(text)};
  entry.next_check = kNow + 3600;
  return entry;
}

const std::string kEnforceText =
    "version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmx: *.backup.example.com\r\n"
    "max_age: 86400\r\n";
const std::vector<std::string> kEnforceLines = {"version: STSv1", "mode: enforce",
                                                "mx: mx.example.com", "mx: *.backup.example.com",
                                                "max_age: 86400"};

FailureKey detail(ResultType result, std::string mx_name, std::string reason) {
  FailureKey key;
  key.result = result;
  key.sending_mta_ip = "198.51.100.1";
  key.receiving_mx_hostname = std::move(mx_name);
  key.receiving_ip = "192.0.2.25";
  key.failure_reason_code = std::move(reason);
  return key;
}

const PolicyOutcome& only_policy(const Session& session) {
  EXPECT_EQ(session.report_domain, "example.com");
  EXPECT_EQ(session.policies.size(), 1u);
  return session.policies.front();
}

TEST(TlsrptCompletion, sts_enforce_success) {
  const std::optional<CacheEntry> entry =
      policy_entry(Mode::enforce, {"mx.example.com", "*.backup.example.com"}, kEnforceText);
  const Session session = session_from_mta_report(report_for("MX.Example.com."), entry, kNow);
  const PolicyOutcome& policy = only_policy(session);
  EXPECT_EQ(policy.policy.type, PolicyType::sts);
  EXPECT_EQ(policy.policy.domain, "example.com");
  EXPECT_EQ(policy.policy.policy_strings, kEnforceLines);
  EXPECT_EQ(policy.policy.mx_hosts,
            (std::vector<std::string>{"mx.example.com", "*.backup.example.com"}));
  EXPECT_FALSE(policy.failed);
  EXPECT_TRUE(policy.failures.empty());
}

TEST(TlsrptCompletion, sts_policy_lines_with_lf_and_without_final_newline) {
  const std::optional<CacheEntry> entry =
      policy_entry(Mode::testing, {"mx.example.com"},
                   "version: STSv1\nmode: testing\nmx:\tmx.example.com\nmax_age: 86400");
  const Session session = session_from_mta_report(report_for("mx.example.com"), entry, kNow);
  EXPECT_EQ(only_policy(session).policy.policy_strings,
            (std::vector<std::string>{"version: STSv1", "mode: testing", "mx: mx.example.com",
                                      "max_age: 86400"}));
}

TEST(TlsrptCompletion, sts_mx_not_in_policy_is_a_failure_in_testing_mode_too) {
  for (Mode mode : {Mode::testing, Mode::enforce}) {
    SCOPED_TRACE(to_string(mode));
    const std::optional<CacheEntry> entry = policy_entry(mode, {"mx.example.com"}, kEnforceText);
    const Session session = session_from_mta_report(report_for("other.example.net"), entry, kNow);
    const PolicyOutcome& policy = only_policy(session);
    EXPECT_EQ(policy.policy.type, PolicyType::sts);
    EXPECT_TRUE(policy.failed);
    EXPECT_EQ(policy.failures,
              std::vector<FailureKey>{
                  detail(ResultType::validation_failure, "other.example.net", "mx-not-in-policy")});
  }
}

TEST(TlsrptCompletion, sts_mx_not_in_policy_and_the_mta_failure_are_two_details) {
  const std::optional<CacheEntry> entry =
      policy_entry(Mode::testing, {"mx.example.com"}, kEnforceText);
  const Session session = session_from_mta_report(
      report_for("a.b.example.com", ResultType::certificate_expired, "expired"), entry, kNow);
  const PolicyOutcome& policy = only_policy(session);
  EXPECT_TRUE(policy.failed);
  EXPECT_EQ(policy.failures,
            (std::vector<FailureKey>{
                detail(ResultType::validation_failure, "a.b.example.com", "mx-not-in-policy"),
                detail(ResultType::certificate_expired, "a.b.example.com", "expired")}));
}

TEST(TlsrptCompletion, sts_mta_failure_on_an_allowed_mx) {
  const std::optional<CacheEntry> entry =
      policy_entry(Mode::enforce, {"mx.example.com", "*.backup.example.com"}, kEnforceText);
  const Session session = session_from_mta_report(
      report_for("b1.backup.example.com", ResultType::certificate_host_mismatch, "wrong name"),
      entry, kNow);
  const PolicyOutcome& policy = only_policy(session);
  EXPECT_EQ(policy.policy.type, PolicyType::sts);
  EXPECT_EQ(policy.failures,
            std::vector<FailureKey>{detail(ResultType::certificate_host_mismatch,
                                           "b1.backup.example.com", "wrong name")});
}

TEST(TlsrptCompletion, expired_or_none_policy_is_no_policy_found) {
  const std::optional<CacheEntry> expired =
      policy_entry(Mode::enforce, {"mx.example.com"}, kEnforceText, kNow);
  const std::optional<CacheEntry> none = policy_entry(Mode::none, {}, "version: STSv1\n");
  for (const auto& entry : {expired, none}) {
    const Session session =
        session_from_mta_report(report_for("elsewhere.example.org"), entry, kNow);
    const PolicyOutcome& policy = only_policy(session);
    EXPECT_EQ(policy.policy.type, PolicyType::no_policy_found);
    EXPECT_EQ(policy.policy.domain, "example.com");
    EXPECT_TRUE(policy.policy.policy_strings.empty());
    EXPECT_TRUE(policy.policy.mx_hosts.empty());
    EXPECT_FALSE(policy.failed);
    EXPECT_TRUE(policy.failures.empty());
  }
}

TEST(TlsrptCompletion, no_entry_is_no_policy_found_and_the_mta_failure_counts) {
  const Session success = session_from_mta_report(report_for("mx.example.com"), std::nullopt, kNow);
  EXPECT_EQ(only_policy(success).policy.type, PolicyType::no_policy_found);
  EXPECT_FALSE(only_policy(success).failed);

  MtaSessionReport unknown_ips = report_for("MX.example.com", ResultType::starttls_not_supported);
  unknown_ips.mx_ip.clear();
  unknown_ips.sending_ip.clear();
  const Session failure = session_from_mta_report(unknown_ips, std::nullopt, kNow);
  const PolicyOutcome& policy = only_policy(failure);
  EXPECT_EQ(policy.policy.type, PolicyType::no_policy_found);
  EXPECT_EQ(policy.policy.domain, "example.com");
  EXPECT_TRUE(policy.failed);
  FailureKey expected;
  expected.result = ResultType::starttls_not_supported;
  expected.receiving_mx_hostname = "mx.example.com";
  EXPECT_EQ(policy.failures, std::vector<FailureKey>{expected});
}

TEST(TlsrptCompletion, policy_published_but_unavailable) {
  struct Row {
    const char* last_error;
    ResultType result;
    const char* reason;
  };
  const std::vector<Row> rows = {
      {"fetch_failed: https://mta-sts.example.com/.well-known/mta-sts.txt: HTTP 404",
       ResultType::sts_policy_fetch_error,
       "https://mta-sts.example.com/.well-known/mta-sts.txt: HTTP 404"},
      {"webpki_invalid: certificate has expired", ResultType::sts_webpki_invalid,
       "certificate has expired"},
      {"policy_syntax: policy: line 2: unknown mode \"strict\"", ResultType::sts_policy_invalid,
       "policy: line 2: unknown mode \"strict\""},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.last_error);
    CacheEntry entry;
    entry.unavailable = true;
    entry.last_error = row.last_error;
    const Session session = session_from_mta_report(report_for("mx.example.com"), entry, kNow);
    const PolicyOutcome& policy = only_policy(session);
    EXPECT_EQ(policy.policy.type, PolicyType::sts);
    EXPECT_EQ(policy.policy.domain, "example.com");
    EXPECT_TRUE(policy.policy.policy_strings.empty());
    EXPECT_TRUE(policy.policy.mx_hosts.empty());
    EXPECT_TRUE(policy.failed);
    EXPECT_EQ(policy.failures,
              std::vector<FailureKey>{detail(row.result, "mx.example.com", row.reason)});
  }

  // The MTA's own failure is a second detail; a long reason is cut.
  CacheEntry entry;
  entry.unavailable = true;
  entry.last_error = "fetch_failed: " + std::string(400, 'x');
  const Session both = session_from_mta_report(
      report_for("mx.example.com", ResultType::certificate_not_trusted, "unknown CA"), entry, kNow);
  EXPECT_EQ(only_policy(both).failures,
            (std::vector<FailureKey>{
                detail(ResultType::sts_policy_fetch_error, "mx.example.com",
                       std::string(kMaxFailureReason, 'x')),
                detail(ResultType::certificate_not_trusted, "mx.example.com", "unknown CA")}));
}

TEST(TlsrptCompletion, unavailable_for_a_reason_that_is_not_a_policy_failure) {
  for (const char* last_error : {"dns_temporary: SERVFAIL for _mta-sts.example.com", "",
                                 "no colon here", "fetch_failedx: y"}) {
    SCOPED_TRACE(last_error);
    CacheEntry entry;
    entry.unavailable = true;
    entry.last_error = last_error;
    const Session session = session_from_mta_report(report_for("mx.example.com"), entry, kNow);
    EXPECT_EQ(only_policy(session).policy.type, PolicyType::no_policy_found);
    EXPECT_FALSE(only_policy(session).failed);
  }
  // A healthy entry with an old error text is not unavailable.
  CacheEntry healthy;
  healthy.last_error = "fetch_failed: timeout";
  EXPECT_EQ(
      only_policy(session_from_mta_report(report_for("mx.example.com"), healthy, kNow)).policy.type,
      PolicyType::no_policy_found);
}

CacheEntry dane_entry(DaneHostState state) {
  CacheEntry entry = policy_entry(Mode::enforce, {"mx.example.com"}, kEnforceText);
  DaneState dane;
  dane.verdict = state == DaneHostState::usable ? DaneVerdict::all_usable : DaneVerdict::partial;
  dane.hosts = {DaneHost{10, "mx.example.com", state, "why"},
                DaneHost{20, "mx2.example.com", DaneHostState::no_tlsa, "none"}};
  entry.dane = dane;
  return entry;
}

TEST(TlsrptCompletion, dane_applies_before_the_sts_policy) {
  const std::vector<std::string> records = {tlsa_policy_string(3, 1, 1, {0xab, 0xcd}),
                                            tlsa_policy_string(2, 0, 1, {0x01})};
  for (DaneHostState state : {DaneHostState::usable, DaneHostState::unusable}) {
    SCOPED_TRACE(to_string(state));
    const std::optional<CacheEntry> entry = dane_entry(state);
    const Session success =
        session_from_mta_report(report_for("MX.example.com."), entry, kNow, records);
    const PolicyOutcome& policy = only_policy(success);
    EXPECT_EQ(policy.policy.type, PolicyType::tlsa);
    EXPECT_EQ(policy.policy.domain, "mx.example.com");
    EXPECT_EQ(policy.policy.policy_strings, (std::vector<std::string>{"3 1 1 abcd", "2 0 1 01"}));
    EXPECT_TRUE(policy.policy.mx_hosts.empty());
    EXPECT_FALSE(policy.failed);

    const Session failure = session_from_mta_report(
        report_for("mx.example.com", ResultType::tlsa_invalid, "no TLSA record matched"), entry,
        kNow, records);
    EXPECT_TRUE(only_policy(failure).failed);
    EXPECT_EQ(only_policy(failure).failures,
              std::vector<FailureKey>{
                  detail(ResultType::tlsa_invalid, "mx.example.com", "no TLSA record matched")});
  }
}

TEST(TlsrptCompletion, dane_of_another_host_leaves_the_sts_policy) {
  // mx2 has a secure denial of TLSA: DANE does not cover it, the STS policy does.
  const std::optional<CacheEntry> entry = dane_entry(DaneHostState::usable);
  const Session session = session_from_mta_report(report_for("mx2.example.com"), entry, kNow);
  const PolicyOutcome& policy = only_policy(session);
  EXPECT_EQ(policy.policy.type, PolicyType::sts);
  EXPECT_EQ(policy.failures,
            std::vector<FailureKey>{
                detail(ResultType::validation_failure, "mx2.example.com", "mx-not-in-policy")});
}

}  // namespace
}  // namespace mtasts
