// Fuzzes parse_tlsrpt_datagram (what Postfix's libtlsrpt sends to mtastsd's datagram socket)
// and builds a report from what it accepts: any datagram that parses must count and report
// without a crash, and the report must be one JSON document.
#include <nlohmann/json.hpp>

#include "core/tlsrpt_datagram.hpp"
#include "core/tlsrpt_report.hpp"
#include "fuzz_check.hpp"

using namespace mtasts;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto session = parse_tlsrpt_datagram(fuzz::as_text(data, size));
  if (!session) {
    FUZZ_CHECK(session.error().category == ErrorCategory::session_report);
    FUZZ_CHECK(fuzz::one_line(session.error().reason));
    return 0;
  }
  FUZZ_CHECK(!session->policies.empty());
  std::vector<tlsrpt::PolicyTally> tallies;
  for (const tlsrpt::PolicyOutcome& outcome : session->policies) {
    tlsrpt::PolicyTally tally{
        outcome.policy, outcome.failed ? 0U : 1U, outcome.failed ? 1U : 0U, {}};
    for (const tlsrpt::FailureKey& failure : outcome.failures) ++tally.failures[failure];
    tallies.push_back(std::move(tally));
  }
  const tlsrpt::Report report =
      tlsrpt::build_report({"org", "a@b.example", "b.example"},
                           tlsrpt::Day{std::chrono::days{20000}}, session->report_domain, tallies);
  FUZZ_CHECK(nlohmann::json::accept(report.json));
  return 0;
}
