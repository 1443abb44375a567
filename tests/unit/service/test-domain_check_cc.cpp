// check_domain (service/domain_check.hpp) over the fake wiring: which steps run in which order
// for which DNS answers, DANE from validated answers, and that nothing touches the cache.
#include "service/domain_check.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "unit/service/fake_wiring.hpp"

namespace mtasts {
namespace {

constexpr const char* kPolicy =
    "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 604800\n";

std::vector<std::string> step_ids(const CheckReport& report) {
  std::vector<std::string> ids;
  for (const CheckStep& step : report.steps) ids.push_back(step.step);
  return ids;
}

const CheckStep& step_named(const CheckReport& report, const std::string& id) {
  for (const CheckStep& step : report.steps) {
    if (step.step == id) return step;
  }
  throw std::runtime_error("no step " + id);
}

struct DomainCheckTest : ::testing::Test {
  DomainCheckTest() {
    wiring.resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=1;"});
    wiring.resolver.set_txt("_smtp._tls.example.com", {"v=TLSRPTv1; rua=mailto:t@example.com"});
    wiring.resolver.mx_answers["example.com"] = dns::Answer<dns::MxRecord>{
        dns::Status::ok, dns::Security::insecure, {{10, "mx.example.com"}}, 300, "example.com", ""};
    wiring.fetcher.bodies["example.com"] = kPolicy;
  }
  testing::FakeWiring wiring;
  Config config;
};

TEST_F(DomainCheckTest, GoodDomainRunsEveryStepAndWritesNothing) {
  const CheckReport report = check_domain(config, "example.com", {}, wiring);
  EXPECT_EQ(step_ids(report),
            (std::vector<std::string>{"txt", "policy-fetch", "policy", "mx", "tlsrpt", "dane"}));
  EXPECT_EQ(report.status(), CheckStatus::ok) << render_check_text(report, CheckStyle::plain);
  EXPECT_EQ(wiring.shared_store.memory.loads, 0);
  EXPECT_EQ(wiring.shared_store.memory.saves, 0);
  EXPECT_EQ(wiring.fetcher.fetches["example.com"], 1);
}

TEST_F(DomainCheckTest, NoRecordMeansNoFetch) {
  wiring.resolver.txt_records.erase("_mta-sts.example.com");
  const CheckReport report = check_domain(config, "example.com", {}, wiring);
  EXPECT_EQ(step_ids(report), (std::vector<std::string>{"txt", "tlsrpt", "dane"}));
  EXPECT_EQ(step_named(report, "txt").status(), CheckStatus::error);
  EXPECT_EQ(wiring.fetcher.fetches["example.com"], 0);
}

TEST_F(DomainCheckTest, FetchFailureIsItsStepsError) {
  wiring.fetcher.bodies.clear();
  const CheckReport report = check_domain(config, "example.com", {}, wiring);
  EXPECT_EQ(step_ids(report), (std::vector<std::string>{"txt", "policy-fetch", "tlsrpt", "dane"}));
  const CheckStep& fetch = step_named(report, "policy-fetch");
  ASSERT_EQ(fetch.findings.size(), 1U);
  EXPECT_EQ(fetch.findings[0].status, CheckStatus::error);
  EXPECT_EQ(fetch.findings[0].text, "HTTP 404 from mta-sts.example.com");
}

TEST_F(DomainCheckTest, UncoveredMxIsAnError) {
  wiring.resolver.mx_answers["example.com"].records.push_back({20, "backup.example.net"});
  const CheckReport report = check_domain(config, "example.com", {}, wiring);
  EXPECT_EQ(step_named(report, "mx").status(), CheckStatus::error);
}

TEST_F(DomainCheckTest, DaneFromValidatedAnswers) {
  config.trust_anchor_file = "/nonexistent/anchor.key";  // only says "validate"; fakes answer
  auto& mx = wiring.resolver.mx_answers["example.com"];
  mx.security = dns::Security::secure;
  wiring.resolver.address_answers["mx.example.com"] = dns::Answer<std::string>{
      dns::Status::ok, dns::Security::secure, {"192.0.2.25"}, 300, "mx.example.com", ""};
  wiring.resolver.tlsa_answers["_25._tcp.mx.example.com"] =
      dns::Answer<dns::TlsaRecord>{dns::Status::ok,
                                   dns::Security::secure,
                                   {dns::TlsaRecord{3, 1, 1, std::vector<std::uint8_t>(32, 0xa1)}},
                                   300,
                                   "_25._tcp.mx.example.com",
                                   ""};
  const CheckReport report = check_domain(config, "example.com", {}, wiring);
  const CheckStep& dane = step_named(report, "dane");
  EXPECT_EQ(dane.status(), CheckStatus::ok);
  ASSERT_FALSE(dane.findings.empty());
  EXPECT_TRUE(dane.findings.back().text.starts_with("DANE governs delivery"))
      << dane.findings.back().text;
}

TEST_F(DomainCheckTest, SmtpWithoutProberSaysSo) {
  DomainCheckOptions options;
  options.smtp = true;
  const CheckReport report = check_domain(config, "example.com", options, wiring);
  EXPECT_EQ(report.steps.back().step, "smtp");
  EXPECT_EQ(report.steps.back().status(), CheckStatus::warning);
}

}  // namespace
}  // namespace mtasts
