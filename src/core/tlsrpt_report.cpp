// RFC 8460 §4.4 report JSON, §5.1 file name and §5.3 Subject.
#include "core/tlsrpt_report.hpp"

#include <algorithm>
#include <chrono>
#include <map>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace mtasts::tlsrpt {

namespace {

using Json = nlohmann::ordered_json;  // keeps keys in insertion order: the RFC's order

constexpr std::int64_t kSecondsPerDay = 24 * 60 * 60;
// I-JSON (RFC 7493 §2.2): integers beyond 2^53 - 1 lose precision in common parsers.
constexpr std::uint64_t kMaxJsonInteger = (std::uint64_t{1} << 53) - 1;

std::uint64_t add_capped(std::uint64_t a, std::uint64_t b) {
  if (a > kMaxJsonInteger || b > kMaxJsonInteger - a) return kMaxJsonInteger;
  return a + b;
}

// A domain as it may appear in a file name and in the report-id: ASCII lower case, anything
// outside [a-z0-9.-] (a path separator, "!", "@", ">", a U-label's bytes) replaced by "-".
std::string file_label(std::string_view domain) {
  std::string out;
  out.reserve(domain.size());
  for (char c : domain) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    const bool allowed = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-';
    out += allowed ? c : '-';
  }
  return out.empty() ? "-" : out;
}

// One policy's counts after merging the tallies that name it.
struct Counts {
  std::uint64_t successful = 0;
  std::uint64_t failed = 0;
  std::map<FailureKey, std::uint64_t> failures;
};

Json strings(const std::vector<std::string>& values) {
  Json array = Json::array();
  for (const auto& value : values) array.push_back(value);
  return array;
}

Json policy_json(const PolicyKey& key) {
  Json policy = Json::object();
  policy["policy-type"] = std::string(to_string(key.type));
  if (!key.policy_strings.empty()) policy["policy-string"] = strings(key.policy_strings);
  policy["policy-domain"] = key.domain;
  if (key.type == PolicyType::sts && !key.mx_hosts.empty()) {
    policy["mx-host"] = strings(key.mx_hosts);
  }
  return policy;
}

Json failure_json(const FailureKey& key, std::uint64_t count) {
  Json detail = Json::object();
  detail["result-type"] = std::string(to_string(key.result));
  const auto optional = [&detail](const char* name, const std::string& value) {
    if (!value.empty()) detail[name] = value;
  };
  optional("sending-mta-ip", key.sending_mta_ip);
  optional("receiving-mx-hostname", key.receiving_mx_hostname);
  optional("receiving-mx-helo", key.receiving_mx_helo);
  optional("receiving-ip", key.receiving_ip);
  detail["failed-session-count"] = count;
  optional("additional-information", key.additional_information);
  optional("failure-reason-code", key.failure_reason_code);
  return detail;
}

}  // namespace

std::string hash_hex16(std::string_view text) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;  // FNV-1a 64-bit offset basis and prime
  for (const char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return fmt::format("{:016x}", hash);
}

Report build_report(const ReportMeta& meta, Day day, std::string_view policy_domain,
                    std::span<const PolicyTally> tallies) {
  Report report;
  const std::string date = format_day(day);
  report.begin = std::chrono::duration_cast<std::chrono::seconds>(day.time_since_epoch()).count();
  report.end = report.begin + kSecondsPerDay - 1;
  const std::string domain_label = file_label(policy_domain);
  const std::string submitter_label = file_label(meta.submitter);
  report.report_id = fmt::format("{}T00:00:00Z_{}@{}", date, domain_label, submitter_label);
  report.filename = fmt::format("{}!{}!{}!{}!{}.json.gz", submitter_label, domain_label,
                                report.begin, report.end, hash_hex16(report.report_id));
  report.subject = fmt::format("Report Domain: {} Submitter: {} Report-ID: <{}>", domain_label,
                               submitter_label, report.report_id);

  std::map<PolicyKey, Counts> merged;
  for (const PolicyTally& tally : tallies) {
    Counts& counts = merged[tally.policy];
    counts.successful = add_capped(counts.successful, tally.successful);
    counts.failed = add_capped(counts.failed, tally.failed);
    for (const auto& [failure, count] : tally.failures) {
      std::uint64_t& total = counts.failures[failure];
      total = add_capped(total, count);
    }
  }

  Json root = Json::object();
  root["organization-name"] = meta.organization_name;
  Json range = Json::object();
  range["start-datetime"] = date + "T00:00:00Z";
  range["end-datetime"] = date + "T23:59:59Z";
  root["date-range"] = std::move(range);
  root["contact-info"] = meta.contact_info;
  root["report-id"] = report.report_id;
  Json policies = Json::array();
  for (const auto& [key, counts] : merged) {
    Json entry = Json::object();
    entry["policy"] = policy_json(key);
    Json summary = Json::object();
    summary["total-successful-session-count"] = counts.successful;
    summary["total-failure-session-count"] = counts.failed;
    entry["summary"] = std::move(summary);
    Json details = Json::array();
    for (const auto& [failure, count] : counts.failures) {
      details.push_back(failure_json(failure, count));
    }
    entry["failure-details"] = std::move(details);
    policies.push_back(std::move(entry));
  }
  root["policies"] = std::move(policies);
  // Indented for the admin who reads `mtasts tlsrpt report` output; gzip takes the spaces away.
  report.json = root.dump(2, ' ', false, Json::error_handler_t::replace);
  return report;
}

}  // namespace mtasts::tlsrpt
