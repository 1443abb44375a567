// build_report: the RFC 8460 §4.4 report JSON, its §5.1 file name and §5.3 Subject.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "core/tlsrpt_report.hpp"

namespace mtasts::tlsrpt {
namespace {

using namespace std::chrono_literals;

constexpr Day kDay = std::chrono::sys_days{2026y / std::chrono::December / 7};
constexpr std::int64_t kDayStart = 1796601600;  // 2026-12-07T00:00:00Z

// RPT-26 (RFC 8460 §5.1), case-insensitive as the checklist gives it.
const std::regex kFilename(R"(^[a-z0-9.-]+![a-z0-9.-]+![0-9]+![0-9]+(![a-z0-9]+)?\.json(\.gz)?$)",
                           std::regex::icase);
// RPT-30 (RFC 8460 §5.3), on the unfolded Subject.
const std::regex kSubject(R"(^Report Domain: \S+ Submitter: \S+ Report-ID: <[^@>]+@[^>]+>$)");

ReportMeta meta() {
  return {.organization_name = "Example Sender Ltd",
          .contact_info = "tlsrpt-admin@mail.example.net",
          .submitter = "mail.example.net"};
}

PolicyTally sts_tally() {
  PolicyTally tally;
  tally.policy = {.type = PolicyType::sts,
                  .domain = "example.com",
                  .policy_strings = {"version: STSv1", "mode: enforce", "mx: mx1.example.com",
                                     "mx: *.backup.example.com", "max_age: 604800"},
                  .mx_hosts = {"mx1.example.com", "*.backup.example.com"}};
  tally.successful = 5;
  tally.failed = 4;
  tally.failures[{.result = ResultType::validation_failure,
                  .sending_mta_ip = "2001:db8::10",
                  .receiving_mx_hostname = "mx9.other.example",
                  .receiving_mx_helo = "mx9.other.example",
                  .receiving_ip = "2001:db8:1::25",
                  .additional_information = "https://mail.example.net/tlsrpt/mx-not-in-policy",
                  .failure_reason_code = "mx-not-in-policy"}] = 3;
  tally.failures[{.result = ResultType::certificate_expired,
                  .sending_mta_ip = "192.0.2.10",
                  .receiving_mx_hostname = "mx1.example.com",
                  .receiving_mx_helo = "",
                  .receiving_ip = "198.51.100.25",
                  .additional_information = "",
                  .failure_reason_code = ""}] = 1;
  return tally;
}

PolicyTally tlsa_tally() {
  PolicyTally tally;
  // mx_hosts set on a tlsa policy: the report must leave mx-host out (it is sts-only).
  tally.policy = {
      .type = PolicyType::tlsa,
      .domain = "mx1.example.com",
      .policy_strings = {"3 1 1 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"},
      .mx_hosts = {"mx1.example.com"}};
  tally.successful = 7;
  return tally;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "cannot read " << path;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The expected JSON; tests/integration/test_tlsrpt_schema.py validates the same file against the
// RFC 8460 schema, so what this test pins is also what the schema accepts.
std::string expected_two_policy_json() {
  std::string text = read_file(MTASTS_SOURCE_DIR "/tests/data/tlsrpt/report-two-policies.json");
  if (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

TEST(TlsrptReport, TwoPolicyReportIsTheExpectedJson) {
  const std::vector<PolicyTally> tallies = {sts_tally(), tlsa_tally()};
  const Report report = build_report(meta(), kDay, "example.com", tallies);
  EXPECT_EQ(report.json, expected_two_policy_json());
  EXPECT_EQ(report.report_id, "2026-12-07T00:00:00Z_example.com@mail.example.net");
}

TEST(TlsrptReport, SameInputSameBytesWhateverTheOrderOrSplit) {
  const std::vector<PolicyTally> tallies = {sts_tally(), tlsa_tally()};
  const Report first = build_report(meta(), kDay, "example.com", tallies);
  const Report again = build_report(meta(), kDay, "example.com", tallies);
  EXPECT_EQ(first.json, again.json);
  EXPECT_EQ(first.filename, again.filename);
  EXPECT_EQ(first.subject, again.subject);

  const std::vector<PolicyTally> reversed = {tlsa_tally(), sts_tally()};
  EXPECT_EQ(build_report(meta(), kDay, "example.com", reversed).json, first.json);

  // The same policy in two tallies (say two store records) is one policies[] entry.
  PolicyTally part_one = sts_tally();
  PolicyTally part_two = sts_tally();
  part_one.successful = 2;
  part_two.successful = 3;
  part_one.failed = 1;
  part_two.failed = 3;
  part_one.failures.begin()->second = 1;  // certificate-expired: 1 + 0
  part_two.failures.erase(part_two.failures.begin());
  part_one.failures.rbegin()->second = 2;  // validation-failure: 2 + 1
  part_two.failures.begin()->second = 1;
  const std::vector<PolicyTally> split = {part_one, tlsa_tally(), part_two};
  EXPECT_EQ(build_report(meta(), kDay, "example.com", split).json, first.json);
}

TEST(TlsrptReport, DateRangeAndFilenameTimestampsAgree) {
  const std::vector<PolicyTally> tallies = {sts_tally()};
  const Report report = build_report(meta(), kDay, "example.com", tallies);
  EXPECT_EQ(report.begin, kDayStart);
  EXPECT_EQ(report.end, kDayStart + 86399);
  EXPECT_TRUE(std::regex_match(report.filename, kFilename)) << report.filename;

  // RPT-26: begin and end of the file name are the JSON date-range's instants.
  const std::regex parts(R"(^([^!]+)!([^!]+)!([0-9]+)!([0-9]+)!([a-z0-9]+)\.json\.gz$)");
  std::smatch match;
  ASSERT_TRUE(std::regex_match(report.filename, match, parts)) << report.filename;
  EXPECT_EQ(match[1], "mail.example.net");
  EXPECT_EQ(match[2], "example.com");
  EXPECT_EQ(std::stoll(match[3]), report.begin);
  EXPECT_EQ(std::stoll(match[4]), report.end);
  EXPECT_EQ(match[5], hash_hex16(report.report_id));

  const auto json = nlohmann::json::parse(report.json);
  // "YYYY-MM-DDTHH:MM:SSZ" to Unix seconds (libstdc++ 12 has no std::chrono::parse).
  const auto to_unix = [](const std::string& text) -> std::int64_t {
    EXPECT_EQ(text.size(), 20U) << text;
    EXPECT_EQ(text.substr(10, 1) + text.substr(13, 1) + text.substr(16, 1) + text.substr(19),
              "T::Z")
        << text;
    const std::optional<Day> day = parse_day(text.substr(0, 10));
    EXPECT_TRUE(day.has_value()) << text;
    if (!day) return -1;
    const std::int64_t midnight =
        std::chrono::duration_cast<std::chrono::seconds>(day->time_since_epoch()).count();
    return midnight + std::stoll(text.substr(11, 2)) * 3600 + std::stoll(text.substr(14, 2)) * 60 +
           std::stoll(text.substr(17, 2));
  };
  EXPECT_EQ(to_unix(json["date-range"]["start-datetime"]), report.begin);
  EXPECT_EQ(to_unix(json["date-range"]["end-datetime"]), report.end);
}

TEST(TlsrptReport, SubjectFollowsRpt30) {
  const std::vector<PolicyTally> tallies = {sts_tally()};
  const Report report = build_report(meta(), kDay, "example.com", tallies);
  EXPECT_EQ(report.subject,
            "Report Domain: example.com Submitter: mail.example.net Report-ID: "
            "<2026-12-07T00:00:00Z_example.com@mail.example.net>");
  EXPECT_TRUE(std::regex_match(report.subject, kSubject));
}

TEST(TlsrptReport, HostileDomainsCannotEscapeTheFilenameOrTheReportId) {
  ReportMeta hostile = meta();
  hostile.submitter = "Mail.Example.NET/../x";
  const std::vector<PolicyTally> tallies = {sts_tally()};
  const Report report = build_report(hostile, kDay, "a!b@c>d e/\xc3\xbc.example", tallies);
  EXPECT_TRUE(std::regex_match(report.filename, kFilename)) << report.filename;
  EXPECT_EQ(report.filename.find('/'), std::string::npos);
  EXPECT_TRUE(report.filename.starts_with("mail.example.net-..-x!a-b-c-d-e---.example!"))
      << report.filename;
  EXPECT_TRUE(std::regex_match(report.subject, kSubject)) << report.subject;
  EXPECT_EQ(report.report_id, "2026-12-07T00:00:00Z_a-b-c-d-e---.example@mail.example.net-..-x");

  const std::vector<PolicyTally> none;
  EXPECT_TRUE(std::regex_match(build_report(hostile, kDay, "", none).filename, kFilename));
}

TEST(TlsrptReport, NoPolicyFoundHasNoPolicyStringAndAnEmptyFailureList) {
  PolicyTally tally;
  tally.policy.type = PolicyType::no_policy_found;
  tally.policy.domain = "plain.example";
  tally.successful = 12;
  const std::vector<PolicyTally> tallies = {tally};
  const auto json =
      nlohmann::json::parse(build_report(meta(), kDay, "plain.example", tallies).json);
  ASSERT_EQ(json["policies"].size(), 1U);
  const auto& entry = json["policies"][0];
  EXPECT_EQ(entry["policy"], (nlohmann::json{{"policy-type", "no-policy-found"},
                                             {"policy-domain", "plain.example"}}));
  EXPECT_EQ(entry["summary"]["total-successful-session-count"], 12);
  EXPECT_EQ(entry["summary"]["total-failure-session-count"], 0);
  ASSERT_TRUE(entry.contains("failure-details"));
  EXPECT_EQ(entry["failure-details"], nlohmann::json::array());
}

TEST(TlsrptReport, NoTalliesGiveAnEmptyPoliciesArray) {
  const std::vector<PolicyTally> none;
  const auto json = nlohmann::json::parse(build_report(meta(), kDay, "example.com", none).json);
  EXPECT_EQ(json["policies"], nlohmann::json::array());
}

TEST(TlsrptReport, CountsStayWithinIJsonIntegers) {
  constexpr std::uint64_t kMax = (std::uint64_t{1} << 53) - 1;
  PolicyTally big = tlsa_tally();
  big.successful = kMax - 1;
  big.failed = UINT64_MAX;
  FailureKey bare;  // only the result type: every optional field left out
  bare.result = ResultType::tlsa_invalid;
  big.failures[bare] = UINT64_MAX;
  const std::vector<PolicyTally> tallies = {big, big};
  const auto json = nlohmann::json::parse(build_report(meta(), kDay, "example.com", tallies).json);
  const auto& entry = json["policies"][0];
  EXPECT_EQ(entry["summary"]["total-successful-session-count"].get<std::uint64_t>(), kMax);
  EXPECT_EQ(entry["summary"]["total-failure-session-count"].get<std::uint64_t>(), kMax);
  EXPECT_EQ(entry["failure-details"][0]["failed-session-count"].get<std::uint64_t>(), kMax);
  EXPECT_EQ(entry["failure-details"][0],
            (nlohmann::json{{"result-type", "tlsa-invalid"}, {"failed-session-count", kMax}}));
}

TEST(TlsrptReport, StringsAreEscapedAndBadUtf8Replaced) {
  ReportMeta odd = meta();
  odd.organization_name = "Quote \" backslash \\ newline \n M\xc3\xbcnchen bad \xff end";
  const std::vector<PolicyTally> tallies = {tlsa_tally()};
  const Report report = build_report(odd, kDay, "example.com", tallies);
  const auto json = nlohmann::json::parse(report.json);  // throws on invalid JSON or UTF-8
  EXPECT_EQ(json["organization-name"],
            "Quote \" backslash \\ newline \n M\xc3\xbcnchen bad \xef\xbf\xbd end");
  EXPECT_EQ(report.json.find('\xff'), std::string::npos);
}

TEST(TlsrptReport, HashIsFnv1a64) {
  EXPECT_EQ(hash_hex16(""), "cbf29ce484222325");  // FNV-1a's published test vectors
  EXPECT_EQ(hash_hex16("a"), "af63dc4c8601ec8c");
  EXPECT_EQ(hash_hex16("foobar"), "85944171f73967e8");
}

TEST(TlsrptReport, ReportIdDependsOnDayAndDomain) {
  const std::vector<PolicyTally> tallies = {sts_tally()};
  const Report base = build_report(meta(), kDay, "example.com", tallies);
  const Report next_day = build_report(meta(), kDay + std::chrono::days{1}, "example.com", tallies);
  const Report other = build_report(meta(), kDay, "example.org", tallies);
  EXPECT_NE(base.report_id, next_day.report_id);
  EXPECT_NE(base.report_id, other.report_id);
  EXPECT_NE(base.filename, next_day.filename);
  EXPECT_EQ(next_day.begin, kDayStart + 86400);
  EXPECT_EQ(next_day.report_id, "2026-12-08T00:00:00Z_example.com@mail.example.net");
}

}  // namespace
}  // namespace mtasts::tlsrpt
