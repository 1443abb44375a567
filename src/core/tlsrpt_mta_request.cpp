#include "core/tlsrpt_mta_request.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include <fmt/format.h>

#include "core/dane.hpp"
#include "core/domain.hpp"
#include "core/mx_match.hpp"
#include "core/text_quote.hpp"

namespace mtasts {
namespace {

using tlsrpt::clean_report_text;
using tlsrpt::FailureKey;
using tlsrpt::PolicyOutcome;
using tlsrpt::PolicyType;
using tlsrpt::ResultType;

// The result types an MTA sees on its own; the sts-policy-* ones are mtasts's (session_from).
constexpr std::array<ResultType, 8> kMtaResults = {
    ResultType::starttls_not_supported, ResultType::certificate_host_mismatch,
    ResultType::certificate_expired,    ResultType::certificate_not_trusted,
    ResultType::validation_failure,     ResultType::tlsa_invalid,
    ResultType::dnssec_invalid,         ResultType::dane_required,
};

constexpr std::size_t kWords = 6;  // tlsrpt domain mx-host mx-ip sending-ip outcome

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

bool has_control_character(std::string_view text) {
  return std::ranges::any_of(text, [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7f;
  });
}

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::expected<std::string, std::string> ip_word(std::string_view word, std::string_view what) {
  if (word == "-") return std::string();
  std::optional<std::string> ip = tlsrpt::normalize_ip_text(word);
  if (!ip) {
    return std::unexpected(fmt::format("{} {} is not an IPv4 or IPv6 address (or \"-\")", what,
                                       quote_input(word, 60)));
  }
  return std::move(*ip);
}

std::expected<std::optional<ResultType>, std::string> outcome_word(std::string_view word) {
  const std::string outcome = ascii_lower(word);
  if (outcome == "ok") return std::optional<ResultType>();
  const auto result = tlsrpt::result_type_from_name(outcome);
  if (result && std::ranges::find(kMtaResults, *result) != kMtaResults.end()) {
    return std::optional<ResultType>(*result);
  }
  std::string expected = "ok";
  for (ResultType type : kMtaResults) expected += fmt::format(", {}", tlsrpt::to_string(type));
  return std::unexpected(
      fmt::format("unknown outcome {}; expected {}", quote_input(word, 40), expected));
}

// The served policy text as RFC 8460 §4.5 wants it: one string per line (LF or CRLF), without
// the empty string a final line end would leave.
std::vector<std::string> policy_lines(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    if (line.ends_with('\r')) line.remove_suffix(1);
    lines.push_back(clean_report_text(line, line.size()));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return lines;
}

// A DANE state host whose secure TLSA RRset governs delivery to it (RFC 7672 §2.2: usable
// records authenticate, unusable ones still make TLS mandatory).
bool dane_applies(const CacheEntry& entry, std::string_view mx_name) {
  if (!entry.dane) return false;
  return std::ranges::any_of(entry.dane->hosts, [&](const DaneHost& host) {
    return host.name == mx_name &&
           (host.state == DaneHostState::usable || host.state == DaneHostState::unusable);
  });
}

bool sts_applies(const CacheEntry& entry, UnixTime now) {
  return entry.policy && entry.policy->expires_at > now &&
         (entry.policy->policy.mode == Mode::enforce || entry.policy->policy.mode == Mode::testing);
}

// The TLSRPT result type and reason of the policy failure mtasts recorded ("<category>: <reason>"
// in last_error), when that failure is one a report names.
std::optional<std::pair<ResultType, std::string>> recorded_policy_failure(const CacheEntry& entry) {
  if (!entry.unavailable) return std::nullopt;
  const std::string_view error = entry.last_error;
  const std::size_t colon = error.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string_view category = error.substr(0, colon);
  std::string_view reason = error.substr(colon + 1);
  while (!reason.empty() && is_blank(reason.front())) reason.remove_prefix(1);
  for (ErrorCategory candidate :
       {ErrorCategory::fetch_failed, ErrorCategory::webpki_invalid, ErrorCategory::policy_syntax}) {
    if (to_string(candidate) != category) continue;
    if (const auto result = tlsrpt::result_type_of(candidate)) {
      return std::pair{*result, clean_report_text(reason, kMaxFailureReason)};
    }
  }
  return std::nullopt;
}

}  // namespace

std::expected<MtaSessionReport, std::string> parse_tlsrpt_request(std::string_view line) {
  // The first six words, then whatever follows the sixth is the reason.
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (words.size() < kWords) {
    while (i < line.size() && is_blank(line[i])) ++i;
    if (i == line.size()) break;
    const std::size_t start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    words.push_back(line.substr(start, i - start));
  }
  for (std::string_view word : words) {
    if (has_control_character(word)) {
      return std::unexpected(fmt::format("control character in request {}", quote_input(line)));
    }
  }
  if (words.empty()) return std::unexpected(std::string("empty request"));
  if (ascii_lower(words[0]) != "tlsrpt") {
    return std::unexpected(
        fmt::format("unknown command {}; expected tlsrpt", quote_input(words[0], 40)));
  }
  if (words.size() < kWords) {
    return std::unexpected(fmt::format(
        "tlsrpt takes at least 5 arguments (domain mx-host mx-ip sending-ip outcome [reason]), "
        "got {} in {}",
        words.size() - 1, quote_input(line)));
  }
  MtaSessionReport report;
  auto domain = normalize_domain(words[1]);
  if (!domain) return std::unexpected(fmt::format("domain: {}", domain.error().reason));
  report.domain = std::move(*domain);
  report.mx_host = std::string(words[2]);
  auto mx_ip = ip_word(words[3], "mx-ip");
  if (!mx_ip) return std::unexpected(std::move(mx_ip.error()));
  report.mx_ip = std::move(*mx_ip);
  auto sending_ip = ip_word(words[4], "sending-ip");
  if (!sending_ip) return std::unexpected(std::move(sending_ip.error()));
  report.sending_ip = std::move(*sending_ip);
  auto outcome = outcome_word(words[5]);
  if (!outcome) return std::unexpected(std::move(outcome.error()));
  report.failure = *outcome;
  if (report.failure) {
    std::string_view reason = line.substr(i);
    while (!reason.empty() && is_blank(reason.front())) reason.remove_prefix(1);
    while (!reason.empty() && is_blank(reason.back())) reason.remove_suffix(1);
    report.reason = clean_report_text(reason, kMaxFailureReason);
  }
  return report;
}

std::string tlsa_policy_string(std::uint8_t usage, std::uint8_t selector,
                               std::uint8_t matching_type, const std::vector<std::uint8_t>& data) {
  std::string out = fmt::format("{} {} {} ", usage, selector, matching_type);
  for (std::uint8_t byte : data) out += fmt::format("{:02x}", byte);
  return out;
}

tlsrpt::Session session_from_mta_report(const MtaSessionReport& report,
                                        const std::optional<CacheEntry>& entry, UnixTime now,
                                        const std::vector<std::string>& tlsa_records) {
  const std::string mx_name = mx_host_name(report.mx_host);
  const auto failure = [&](ResultType result, std::string reason) {
    FailureKey key;
    key.result = result;
    key.sending_mta_ip = report.sending_ip;
    key.receiving_mx_hostname = mx_name;
    key.receiving_ip = report.mx_ip;
    key.failure_reason_code = std::move(reason);
    return key;
  };

  PolicyOutcome outcome;
  outcome.policy.domain = report.domain;
  if (entry && dane_applies(*entry, mx_name)) {
    // DANE comes first and MTA-STS never overrides it (RFC 8461 §2); its policy domain is the
    // TLSA base domain, the MX host (RFC 8460 §3).
    outcome.policy.type = PolicyType::tlsa;
    outcome.policy.domain = mx_name;
    outcome.policy.policy_strings = tlsa_records;
  } else if (entry && sts_applies(*entry, now)) {
    outcome.policy.type = PolicyType::sts;
    outcome.policy.policy_strings = policy_lines(entry->policy->text);
    outcome.policy.mx_hosts = entry->policy->policy.mx;
    if (!mx_host_allowed(entry->policy->policy.mx, report.mx_host)) {
      outcome.failures.push_back(
          failure(ResultType::validation_failure, std::string(kMxNotInPolicyReason)));
    }
  } else if (const auto recorded = entry ? recorded_policy_failure(*entry) : std::nullopt) {
    outcome.policy.type = PolicyType::sts;
    outcome.failures.push_back(failure(recorded->first, recorded->second));
  } else {
    outcome.policy.type = PolicyType::no_policy_found;
  }
  if (report.failure) outcome.failures.push_back(failure(*report.failure, report.reason));
  outcome.failed = !outcome.failures.empty();

  tlsrpt::Session session;
  session.report_domain = report.domain;
  session.policies.push_back(std::move(outcome));
  return session;
}

}  // namespace mtasts
