// The `mtasts check` report model and its renderings, and the pure steps built from DNS answers,
// fetch facts and probe facts (core/check_report.hpp, core/check_steps.hpp).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/check_report.hpp"
#include "core/check_steps.hpp"

namespace mtasts {
namespace {

constexpr std::int64_t kNow = 1800000000;  // 2027-01-15
constexpr std::int64_t kDay = 86400;

DnsResult records() {
  return DnsResult{DnsOutcome::records, DnsTrust::insecure, 300, ""};
}
DnsResult none() {
  return DnsResult{DnsOutcome::none, DnsTrust::insecure, 0, ""};
}
DnsResult failed() {
  return DnsResult{DnsOutcome::failed, DnsTrust::indeterminate, 0, "servfail"};
}

bool has_finding(const CheckStep& step, CheckStatus status, std::string_view part) {
  for (const CheckFinding& finding : step.findings) {
    if (finding.status == status && finding.text.find(part) != std::string::npos) return true;
  }
  return false;
}

CheckReport sample_report() {
  CheckReport report;
  report.domain = "example.com";
  CheckStep good{"txt", "_mta-sts.example.com TXT record", "RFC 8461 §3.1", {}};
  good.ok("record \"v=STSv1; id=1\": policy id 1");
  CheckStep bad{"policy", "the policy", "RFC 8461 §3.2", {}};
  bad.warn("line 3: unknown key \"foo\" is ignored");
  bad.fail("invalid policy: line 4");
  report.steps = {good, bad};
  return report;
}

TEST(CheckReport, StatusIsTheWorstFinding) {
  CheckReport report = sample_report();
  EXPECT_EQ(report.steps[0].status(), CheckStatus::ok);
  EXPECT_EQ(report.steps[1].status(), CheckStatus::error);
  EXPECT_EQ(report.status(), CheckStatus::error);
  report.steps[1].findings.pop_back();
  EXPECT_EQ(report.status(), CheckStatus::warning);
  EXPECT_EQ(CheckReport{}.status(), CheckStatus::ok);
}

TEST(CheckReport, PlainTextUsesWordsAndNoEscapes) {
  const std::string text = render_check_text(sample_report(), CheckStyle::plain);
  EXPECT_NE(text.find("OK   _mta-sts.example.com TXT record (RFC 8461 §3.1)\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("    WARN line 3: unknown key"), std::string::npos) << text;
  EXPECT_NE(text.find("    FAIL invalid policy: line 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("result: error\n"), std::string::npos) << text;
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_EQ(text.find("✗"), std::string::npos);
}

TEST(CheckReport, TerminalTextUsesSymbols) {
  const std::string text = render_check_text(sample_report(), CheckStyle::terminal);
  EXPECT_NE(text.find("✓"), std::string::npos);
  EXPECT_NE(text.find("!"), std::string::npos);
  EXPECT_NE(text.find("✗"), std::string::npos);
  EXPECT_NE(text.find('\x1b'), std::string::npos);
}

TEST(CheckReport, JsonHasTheDocumentedSchema) {
  const auto json = nlohmann::json::parse(render_check_json(sample_report()));
  EXPECT_EQ(json["domain"], "example.com");
  EXPECT_EQ(json["status"], "error");
  ASSERT_EQ(json["steps"].size(), 2U);
  EXPECT_EQ(json["steps"][0]["step"], "txt");
  EXPECT_EQ(json["steps"][0]["status"], "ok");
  EXPECT_EQ(json["steps"][0]["rfc"], "RFC 8461 §3.1");
  EXPECT_EQ(json["steps"][1]["findings"][0]["status"], "warning");
  EXPECT_EQ(json["steps"][1]["findings"][1]["text"], "invalid policy: line 4");
}

TEST(CheckReport, JsonSurvivesInvalidUtf8) {
  CheckReport report;
  report.domain = "example.com";
  CheckStep step{"txt", "t", "", {}};
  step.fail(std::string("bad \xff byte"));
  report.steps.push_back(step);
  const auto json = nlohmann::json::parse(render_check_json(report));
  EXPECT_EQ(json["steps"][0]["findings"][0]["status"], "error");
}

TEST(CheckTxt, OneValidRecordAmongOthers) {
  TxtCheck check = check_sts_txt("example.com", records(), {"v=spf1 -all", "v=STSv1; id=abc123;"});
  ASSERT_TRUE(check.record);
  EXPECT_EQ(check.record->id, "abc123");
  EXPECT_EQ(check.step.status(), CheckStatus::ok);
  EXPECT_TRUE(has_finding(check.step, CheckStatus::ok, "not an MTA-STS record"));
}

TEST(CheckTxt, FaultsAreErrorsWithTheirReason) {
  EXPECT_TRUE(has_finding(check_sts_txt("example.com", none(), {}).step, CheckStatus::error,
                          "no TXT record at _mta-sts.example.com"));
  EXPECT_EQ(check_sts_txt("example.com", none(), {}, true).step.status(), CheckStatus::ok);
  EXPECT_TRUE(has_finding(check_sts_txt("example.com", failed(), {}).step, CheckStatus::error,
                          "no answer for _mta-sts.example.com: servfail"));
  auto lower = check_sts_txt("example.com", records(), {"v=stsv1; id=abc;"});
  EXPECT_FALSE(lower.record);
  EXPECT_TRUE(has_finding(lower.step, CheckStatus::error, "is filtered out"));
  auto two = check_sts_txt("example.com", records(), {"v=STSv1; id=a;", "v=STSv1; id=b;"});
  EXPECT_TRUE(has_finding(two.step, CheckStatus::error, "2 records begin with v=STSv1"));
  auto bad = check_sts_txt("example.com", records(), {"v=STSv1; id=abc-1;"});
  EXPECT_FALSE(bad.record);
  EXPECT_TRUE(has_finding(bad.step, CheckStatus::error, "is invalid"));
}

TEST(CheckPolicyBody, ValidPolicyListsItsLines) {
  PolicyCheck check =
      check_policy_body("version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 604800\n");
  ASSERT_TRUE(check.policy);
  EXPECT_EQ(check.step.status(), CheckStatus::ok);
  EXPECT_TRUE(has_finding(check.step, CheckStatus::ok, "line 2: \"mode: enforce\""));
  EXPECT_TRUE(has_finding(check.step, CheckStatus::ok, "valid policy: mode enforce"));
}

TEST(CheckPolicyBody, WarningsForAcceptedButDoubtfulLines) {
  PolicyCheck check = check_policy_body(
      "version: STSv1\nmode: testing\nmode: enforce\nmx: mx.example.com\nmax_age: 600\nfoo: "
      "bar\n");
  ASSERT_TRUE(check.policy);
  EXPECT_EQ(check.step.status(), CheckStatus::warning);
  EXPECT_TRUE(has_finding(check.step, CheckStatus::warning, "line 2: mode testing"));
  EXPECT_TRUE(has_finding(check.step, CheckStatus::warning, "line 3: mode again"));
  EXPECT_TRUE(has_finding(check.step, CheckStatus::warning, "max_age 600 is very short"));
  EXPECT_TRUE(has_finding(check.step, CheckStatus::warning, "unknown key \"foo\""));
  PolicyCheck over =
      check_policy_body("version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 31557601\n");
  EXPECT_TRUE(has_finding(over.step, CheckStatus::warning, "over the limit 31557600"));
}

TEST(CheckPolicyBody, LongBodiesAreCutButWarningsKept) {
  std::string body = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 604800\n";
  for (int i = 0; i < 100; ++i) body += "pad: xxxxxxxx\n";
  body += "max_age: 600\n";
  PolicyCheck check = check_policy_body(body);
  ASSERT_TRUE(check.policy);
  std::size_t warnings = 0;
  for (const CheckFinding& finding : check.step.findings) {
    if (finding.status == CheckStatus::warning) ++warnings;
  }
  // One for the padding key, one for the second max_age on line 105.
  EXPECT_EQ(warnings, 2U);
  EXPECT_TRUE(has_finding(check.step, CheckStatus::warning, "line 5: unknown key \"pad\""));
  EXPECT_TRUE(
      has_finding(check.step, CheckStatus::ok, "line 6: \"pad: xxxxxxxx\" (unknown key again"));
  EXPECT_TRUE(has_finding(check.step, CheckStatus::warning, "line 105: max_age again"));
  EXPECT_TRUE(has_finding(check.step, CheckStatus::ok, "64 more lines not listed"));
}

TEST(CheckPolicyBody, InvalidPolicyIsAnError) {
  PolicyCheck check = check_policy_body("version: STSv1\nmode : enforce\nmx: a.example\n");
  EXPECT_FALSE(check.policy);
  EXPECT_TRUE(has_finding(check.step, CheckStatus::error, "invalid policy:"));
}

TEST(CheckMx, CoveredAndUncoveredHosts) {
  Policy policy{Mode::enforce, 86400, {"mx1.example.com", "*.mail.example.com"}};
  CheckStep step = check_mx_coverage(
      "example.com", policy, records(),
      {{10, "mx1.example.com"}, {20, "a.mail.example.com"}, {30, "other.example.net"}});
  EXPECT_TRUE(has_finding(step, CheckStatus::ok,
                          "mx 20 a.mail.example.com: covered by pattern "
                          "*.mail.example.com"));
  EXPECT_TRUE(has_finding(step, CheckStatus::error, "mx 30 other.example.net: not covered"));
  policy.mode = Mode::testing;
  step = check_mx_coverage("example.com", policy, records(), {{30, "other.example.net"}});
  EXPECT_EQ(step.status(), CheckStatus::warning);
}

TEST(CheckFetch, CertificateAndHttpFacts) {
  PolicyFetchFacts facts;
  facts.host = "mta-sts.example.com";
  facts.url = "https://mta-sts.example.com/.well-known/mta-sts.txt";
  facts.address = "192.0.2.1:443";
  facts.tls.version = "TLSv1.3";
  facts.tls.chain = {CertFacts{"CN=mta-sts.example.com",
                               "CN=Test CA",
                               {"DNS:mta-sts.example.com"},
                               kNow - 10 * kDay,
                               kNow + 90 * kDay}};
  facts.tls.name_matches = true;
  facts.http_status = 200;
  facts.content_type = "text/plain";
  facts.body_size = 80;
  CheckStep step = check_policy_fetch(facts, std::nullopt, kNow);
  EXPECT_EQ(step.status(), CheckStatus::ok);
  EXPECT_TRUE(has_finding(step, CheckStatus::ok, "(90 days left)"));
  EXPECT_TRUE(has_finding(step, CheckStatus::ok, "TLS version TLSv1.3"));

  facts.tls.chain[0].not_after = kNow - 2 * kDay;
  facts.tls.verify_error = "certificate has expired";
  EXPECT_TRUE(
      has_finding(check_policy_fetch(facts, "x", kNow), CheckStatus::error, "(2 days ago)"));

  facts.tls.verify_error.clear();
  facts.tls.chain[0].not_after = kNow + 3 * kDay;
  EXPECT_TRUE(has_finding(check_policy_fetch(facts, std::nullopt, kNow), CheckStatus::warning,
                          "(3 days left): renew it now"));
  facts.tls.chain[0].not_after = kNow - kDay - 5;
  EXPECT_TRUE(has_finding(check_policy_fetch(facts, "x", kNow), CheckStatus::error, "(1 day ago)"));

  PolicyFetchFacts redirect;
  redirect.http_status = 301;
  redirect.location = "https://elsewhere.example/";
  CheckStep moved = check_policy_fetch(redirect, "policy fetch: HTTP 301", kNow);
  EXPECT_TRUE(has_finding(moved, CheckStatus::error, "HTTP status 301: redirect to"));
  // The fetcher's reason is not repeated when a finding already names the fault.
  EXPECT_FALSE(has_finding(moved, CheckStatus::error, "policy fetch: HTTP 301"));

  PolicyFetchFacts nothing;
  EXPECT_TRUE(has_finding(check_policy_fetch(nothing, "policy fetch: cannot connect", kNow),
                          CheckStatus::error, "cannot connect"));
}

TEST(CheckTlsrpt, RecordAndFaults) {
  CheckStep ok =
      check_tlsrpt_txt("example.com", records(), {"v=TLSRPTv1; rua=mailto:tls@example.com"});
  EXPECT_EQ(ok.status(), CheckStatus::ok);
  EXPECT_TRUE(has_finding(ok, CheckStatus::ok, "reports go to mailto:tls@example.com"));
  EXPECT_EQ(check_tlsrpt_txt("example.com", none(), {}).status(), CheckStatus::warning);
  EXPECT_EQ(
      check_tlsrpt_txt("example.com", records(),
                       {"v=TLSRPTv1; rua=mailto:a@x.example", "v=TLSRPTv1; rua=mailto:b@x.example"})
          .status(),
      CheckStatus::error);
}

TEST(CheckDane, VerdictsAndHosts) {
  EXPECT_EQ(check_dane_state(std::nullopt, true).status(), CheckStatus::ok);
  DaneState state;
  state.verdict = DaneVerdict::failed;
  state.reason = "TLSA lookup failed";
  state.hosts = {DaneHost{10, "mx.example.com", DaneHostState::failed, "bogus"}};
  CheckStep step = check_dane_state(state, true);
  EXPECT_TRUE(has_finding(step, CheckStatus::error, "mx 10 mx.example.com: failed"));
  EXPECT_TRUE(has_finding(step, CheckStatus::error, "DANE lookup failed"));
  state.verdict = DaneVerdict::all_usable;
  state.hosts = {DaneHost{10, "mx.example.com", DaneHostState::usable, "usable TLSA"}};
  EXPECT_TRUE(has_finding(check_dane_state(state, true), CheckStatus::ok, "DANE governs"));
}

TEST(CheckSmtp, ProbeOutcomes) {
  SmtpProbeFacts good;
  good.host = "mx.example.com";
  good.address = "192.0.2.25:25";
  good.greeting = "220 mx.example.com ESMTP";
  good.starttls_offered = true;
  good.tls.version = "TLSv1.3";
  good.tls.chain = {
      CertFacts{"CN=mx", "CN=CA", {"DNS:mx.example.com"}, kNow - kDay, kNow + 60 * kDay}};
  good.tls.name_matches = true;
  EXPECT_EQ(check_smtp_probes({good}, kNow).status(), CheckStatus::ok);

  SmtpProbeFacts plain = good;
  plain.starttls_offered = false;
  plain.tls = {};
  EXPECT_TRUE(has_finding(check_smtp_probes({plain}, kNow), CheckStatus::error,
                          "mx.example.com: does not offer STARTTLS"));

  SmtpProbeFacts wrong = good;
  wrong.tls.name_matches = false;
  EXPECT_TRUE(has_finding(check_smtp_probes({wrong}, kNow), CheckStatus::error,
                          "mx.example.com: certificate does not name mx.example.com"));

  SmtpProbeFacts down;
  down.host = "mx.example.com";
  down.failure = "cannot connect (192.0.2.25:25: Connection refused)";
  EXPECT_TRUE(has_finding(check_smtp_probes({down}, kNow), CheckStatus::error, "cannot connect"));
}

TEST(CheckDate, Utc) {
  EXPECT_EQ(check_date(0), "1970-01-01");
  EXPECT_EQ(check_date(kNow), "2027-01-15");
}

}  // namespace
}  // namespace mtasts
