#include "core/check_steps.hpp"

#include <algorithm>
#include <ctime>
#include <map>
#include <utility>

#include <fmt/format.h>

#include "core/mx_match.hpp"
#include "core/text_quote.hpp"
#include "core/tlsrpt_record.hpp"

namespace mtasts {
namespace {

constexpr std::int64_t kDay = 86400;
// A certificate this close to its end is a warning: renewal has probably failed.
constexpr std::int64_t kCertificateWarnDays = 14;
// More policy lines than this are counted, not listed (a padded body can hold thousands).
constexpr std::size_t kMaxListedLines = 40;

// STS-06 / RPT-04: a record takes part when it begins with the version tag followed by ";",
// WSP or its end.
bool has_version_tag(std::string_view record, std::string_view tag) {
  if (!record.starts_with(tag)) return false;
  if (record.size() == tag.size()) return true;
  const char next = record[tag.size()];
  return next == ';' || next == ' ' || next == '\t';
}

// Looks like an attempt at the version tag that the exact, case-sensitive filter drops.
bool resembles_version_tag(std::string_view record, std::string_view tag) {
  std::string lower;
  for (char c : record.substr(0, 64)) {
    lower += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  std::string lower_tag;
  for (char c : tag) lower_tag += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return lower.find(lower_tag.substr(2)) != std::string::npos;
}

// "1 day", "2 days".
std::string days(std::int64_t count) {
  return fmt::format("{} day{}", count, count == 1 ? "" : "s");
}

std::string join(const std::vector<std::string>& items, std::string_view separator) {
  std::string out;
  for (const std::string& item : items) {
    if (!out.empty()) out += separator;
    out += item;
  }
  return out;
}

std::string san_text(const CertFacts& cert) {
  return cert.sans.empty() ? "none" : join(cert.sans, ", ");
}

// The leaf's validity period as a finding; the other certificates of the chain are listed.
void add_tls_facts(CheckStep& step, std::string_view prefix, std::string_view host,
                   const TlsFacts& tls, std::int64_t now) {
  if (!tls.version.empty()) step.ok(fmt::format("{}TLS version {}", prefix, tls.version));
  for (std::size_t i = 0; i < tls.chain.size(); ++i) {
    const CertFacts& cert = tls.chain[i];
    const std::string what =
        i == 0 ? std::string("certificate") : fmt::format("chain certificate {}", i);
    const std::string identity = fmt::format("{}{}: subject {}; SAN {}; issuer {}", prefix, what,
                                             cert.subject, san_text(cert), cert.issuer);
    const std::int64_t days_left = (cert.not_after - now) / kDay;
    if (cert.not_after < now) {
      step.fail(fmt::format("{}; expired on {} ({} ago)", identity, check_date(cert.not_after),
                            days((now - cert.not_after) / kDay)));
    } else if (cert.not_before > now) {
      step.fail(fmt::format("{}; not valid before {}", identity, check_date(cert.not_before)));
    } else if (i == 0 && days_left < kCertificateWarnDays) {
      step.warn(fmt::format("{}; expires on {} ({} left): renew it now", identity,
                            check_date(cert.not_after), days(days_left)));
    } else {
      step.ok(fmt::format("{}; expires on {} ({} left)", identity, check_date(cert.not_after),
                          days(days_left)));
    }
  }
  if (tls.name_matches) {
    if (*tls.name_matches) {
      step.ok(fmt::format("{}certificate names {}", prefix, host));
    } else {
      const std::string sans = tls.chain.empty() ? "none" : san_text(tls.chain.front());
      step.fail(
          fmt::format("{}certificate does not name {} (its SAN: {}; the subject CN never "
                      "counts)",
                      prefix, host, sans));
    }
  }
  if (!tls.verify_error.empty()) {
    step.fail(fmt::format("{}certificate not valid: {}", prefix, tls.verify_error));
  }
}

std::string_view trim_wsp(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

bool all_digits(std::string_view text) {
  return !text.empty() &&
         std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// The remarks on one policy line that the strict parser does not make: it accepts these lines.
std::optional<CheckFinding> policy_line_remark(
    std::size_t number, std::string_view line,
    std::map<std::string, std::size_t, std::less<>>& seen) {
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string_view key = line.substr(0, colon);
  const std::string_view value = trim_wsp(line.substr(colon + 1));
  const bool known = key == "version" || key == "mode" || key == "max_age" || key == "mx";
  if (!known) {
    // A key repeated many times (padding) is worth one warning, not one per line.
    auto [where, inserted] = seen.emplace(std::string(key), number);
    if (!inserted) {
      return CheckFinding{CheckStatus::ok,
                          fmt::format("line {}: {} (unknown key again, as on line {}; ignored)",
                                      number, quote_input(line, 60), where->second)};
    }
    return CheckFinding{CheckStatus::warning, fmt::format("line {}: unknown key {} is ignored",
                                                          number, quote_input(key, 40))};
  }
  if (key != "mx") {
    auto [where, inserted] = seen.emplace(std::string(key), number);
    if (!inserted) {
      return CheckFinding{CheckStatus::warning,
                          fmt::format("line {}: {} again; only the first, on line {}, counts",
                                      number, key, where->second)};
    }
  }
  if (key == "max_age" && all_digits(value) && value.size() <= 10) {
    const std::int64_t max_age = std::stoll(std::string(value));
    if (max_age > kMaxAgeCap) {
      return CheckFinding{CheckStatus::warning,
                          fmt::format("line {}: max_age {} is over the limit {} (about a year); "
                                      "senders cap it",
                                      number, max_age, kMaxAgeCap)};
    }
    if (max_age < kDay) {
      return CheckFinding{CheckStatus::warning,
                          fmt::format("line {}: max_age {} is very short (under a day): an "
                                      "attacker who blocks a refresh needs to wait only that "
                                      "long; weeks or more are expected",
                                      number, max_age)};
    }
  }
  if (key == "mode" && value == "testing") {
    return CheckFinding{CheckStatus::warning,
                        fmt::format("line {}: mode testing: senders report failures but deliver "
                                    "anyway; switch to enforce once the TLSRPT reports are clean",
                                    number)};
  }
  if (key == "mode" && value == "none") {
    return CheckFinding{CheckStatus::warning,
                        fmt::format("line {}: mode none: the policy is being withdrawn and "
                                    "protects nothing",
                                    number)};
  }
  return std::nullopt;
}

std::string dns_failure(std::string_view name, const DnsResult& lookup) {
  return fmt::format("no answer for {}{}{}", name, lookup.detail.empty() ? "" : ": ",
                     lookup.detail);
}

}  // namespace

std::string check_date(std::int64_t unix_time) {
  std::time_t time = unix_time;
  std::tm tm{};
  gmtime_r(&time, &tm);
  return fmt::format("{:04}-{:02}-{:02}", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

TxtCheck check_sts_txt(std::string_view domain, const DnsResult& lookup,
                       const std::vector<std::string>& records, bool dane_governs) {
  const std::string name = fmt::format("_mta-sts.{}", domain);
  TxtCheck result{CheckStep{"txt", fmt::format("{} TXT record", name), "RFC 8461 §3.1", {}}, {}};
  CheckStep& step = result.step;
  if (lookup.outcome == DnsOutcome::failed) {
    step.fail(dns_failure(name, lookup) +
              "; senders cannot tell whether the domain publishes MTA-STS");
    return result;
  }
  if (lookup.outcome == DnsOutcome::none || records.empty()) {
    if (dane_governs) {
      step.ok(
          fmt::format("no TXT record at {}: the domain does not publish MTA-STS, and needs "
                      "not: DANE governs delivery (see the dane step)",
                      name));
    } else {
      step.fail(fmt::format("no TXT record at {}: the domain does not publish MTA-STS", name));
    }
    return result;
  }
  std::vector<std::string> candidates;
  for (const std::string& record : records) {
    if (has_version_tag(record, "v=STSv1")) {
      candidates.push_back(record);
    } else if (resembles_version_tag(record, "v=STSv1")) {
      step.fail(
          fmt::format("record {} is filtered out: it must begin with exactly \"v=STSv1\" "
                      "(case-sensitive, nothing before it)",
                      quote_input(record)));
    } else {
      step.ok(fmt::format("record {} is not an MTA-STS record; ignored", quote_input(record)));
    }
  }
  if (candidates.empty()) {
    step.fail("no record begins with \"v=STSv1\": senders see no MTA-STS policy");
    return result;
  }
  if (candidates.size() > 1) {
    for (const std::string& record : candidates) {
      step.fail(fmt::format("record {} begins with v=STSv1", quote_input(record)));
    }
    step.fail(
        fmt::format("{} records begin with v=STSv1; exactly one is allowed, so senders "
                    "ignore them all",
                    candidates.size()));
    return result;
  }
  auto parsed = parse_sts_record(candidates.front());
  if (!parsed) {
    step.fail(fmt::format("record {} is invalid: {}", quote_input(candidates.front()),
                          parsed.error().reason));
    return result;
  }
  step.ok(fmt::format("record {}: policy id {}", quote_input(candidates.front()), parsed->id));
  result.record = std::move(*parsed);
  return result;
}

CheckStep check_policy_fetch(const PolicyFetchFacts& facts,
                             const std::optional<std::string>& failure, std::int64_t now) {
  CheckStep step{"policy-fetch", fmt::format("policy fetch {}", facts.url), "RFC 8461 §3.3", {}};
  if (!facts.address.empty()) {
    step.ok(fmt::format("connected to {} at {}", facts.host, facts.address));
  }
  add_tls_facts(step, "", facts.host, facts.tls, now);
  if (facts.http_status) {
    const unsigned status = *facts.http_status;
    if (status >= 300 && status <= 399) {
      step.fail(fmt::format(
          "HTTP status {}: redirect{} refused; senders never follow redirects", status,
          facts.location ? fmt::format(" to {}", quote_input(*facts.location)) : std::string()));
    } else if (status != 200) {
      step.fail(fmt::format("HTTP status {}: only 200 gives a policy", status));
    } else {
      step.ok("HTTP status 200");
      if (!facts.content_type) {
        step.fail("no Content-Type header: it must be text/plain (RFC 8461 §3.2)");
      } else if (!is_text_plain(*facts.content_type)) {
        step.fail(fmt::format("Content-Type {} is not text/plain (RFC 8461 §3.2)",
                              quote_input(*facts.content_type)));
      } else {
        step.ok(fmt::format("Content-Type {}", quote_input(*facts.content_type)));
      }
    }
  }
  if (facts.body_size) step.ok(fmt::format("size {} bytes", *facts.body_size));
  // The fetcher's own reason is shown when nothing above already names the fault.
  if (failure && step.status() != CheckStatus::error) step.fail(*failure);
  return step;
}

PolicyCheck check_policy_body(std::string_view body) {
  PolicyCheck result{CheckStep{"policy", "the policy", "RFC 8461 §3.2", {}}, {}};
  CheckStep& step = result.step;
  std::map<std::string, std::size_t, std::less<>> seen;
  std::size_t number = 0;
  std::size_t unlisted = 0;
  std::string_view rest = body;
  while (!rest.empty()) {
    const std::size_t end = rest.find('\n');
    std::string_view line = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    ++number;
    auto remark = policy_line_remark(number, line, seen);
    // Past the listed lines only what needs attention is shown.
    if (number > kMaxListedLines) {
      if (remark && remark->status != CheckStatus::ok) {
        step.findings.push_back(std::move(*remark));
      } else {
        ++unlisted;
      }
      continue;
    }
    if (remark) {
      step.findings.push_back(std::move(*remark));
    } else {
      step.ok(fmt::format("line {}: {}", number, quote_input(line)));
    }
  }
  if (unlisted > 0) step.ok(fmt::format("{} more lines not listed", unlisted));
  auto parsed = parse_policy(body);
  if (!parsed) {
    step.fail(fmt::format("invalid policy: {}", parsed.error().reason));
    return result;
  }
  step.ok(fmt::format("valid policy: mode {}, max_age {}, {} mx pattern{}", to_string(parsed->mode),
                      parsed->max_age, parsed->mx.size(), parsed->mx.size() == 1 ? "" : "s"));
  result.policy = std::move(*parsed);
  return result;
}

CheckStep check_mx_coverage(std::string_view domain, const Policy& policy, const DnsResult& lookup,
                            const std::vector<MxHostName>& hosts) {
  CheckStep step{"mx", "MX hosts against the policy's mx patterns", "RFC 8461 §4.1", {}};
  if (lookup.outcome == DnsOutcome::failed) {
    step.fail(dns_failure(fmt::format("the MX records of {}", domain), lookup));
    return step;
  }
  std::vector<MxHostName> targets = hosts;
  if (lookup.outcome == DnsOutcome::none || targets.empty()) {
    step.warn(fmt::format("{} has no MX records: senders deliver to {} itself", domain, domain));
    targets = {MxHostName{0, std::string(domain)}};
  }
  std::vector<bool> pattern_used(policy.mx.size(), false);
  for (const MxHostName& host : targets) {
    if (host.name.empty()) {
      step.ok(fmt::format("null MX: {} accepts no mail (RFC 7505)", domain));
      continue;
    }
    const std::string name = mx_host_name(host.name);
    std::optional<std::string> covering;
    for (std::size_t i = 0; i < policy.mx.size(); ++i) {
      if (mx_matches(policy.mx[i], name)) {
        pattern_used[i] = true;
        if (!covering) covering = policy.mx[i];
      }
    }
    const std::string label = fmt::format("mx {} {}", host.preference, host.name);
    if (covering) {
      step.ok(fmt::format("{}: covered by pattern {}", label, *covering));
    } else if (policy.mode == Mode::enforce) {
      step.fail(
          fmt::format("{}: not covered by any mx pattern; senders will not deliver to it "
                      "(mode enforce)",
                      label));
    } else if (policy.mode == Mode::testing) {
      step.warn(
          fmt::format("{}: not covered by any mx pattern; senders report each delivery "
                      "to it as a failure (mode testing)",
                      label));
    } else {
      step.ok(fmt::format("{}: not covered by any mx pattern (mode none: no effect)", label));
    }
  }
  for (std::size_t i = 0; i < policy.mx.size(); ++i) {
    if (!pattern_used[i])
      step.ok(fmt::format("pattern {} matches no current MX host", policy.mx[i]));
  }
  return step;
}

CheckStep check_tlsrpt_txt(std::string_view domain, const DnsResult& lookup,
                           const std::vector<std::string>& records) {
  const std::string name = fmt::format("_smtp._tls.{}", domain);
  CheckStep step{"tlsrpt", fmt::format("{} TLSRPT record", name), "RFC 8460 §3", {}};
  if (lookup.outcome == DnsOutcome::failed) {
    step.warn(dns_failure(name, lookup));
    return step;
  }
  if (lookup.outcome == DnsOutcome::none || records.empty()) {
    step.warn(
        fmt::format("no TXT record at {}: nobody reports failed TLS deliveries to you", name));
    return step;
  }
  std::vector<std::string> candidates;
  for (const std::string& record : records) {
    if (has_version_tag(record, "v=TLSRPTv1")) {
      candidates.push_back(record);
    } else if (resembles_version_tag(record, "v=TLSRPTv1")) {
      step.fail(
          fmt::format("record {} is filtered out: it must begin with exactly "
                      "\"v=TLSRPTv1\"",
                      quote_input(record)));
    } else {
      step.ok(fmt::format("record {} is not a TLSRPT record; ignored", quote_input(record)));
    }
  }
  if (candidates.empty()) {
    step.warn("no record begins with \"v=TLSRPTv1\": nobody reports failed TLS deliveries to you");
    return step;
  }
  if (candidates.size() > 1) {
    step.fail(
        fmt::format("{} records begin with v=TLSRPTv1; exactly one is allowed, so senders "
                    "send no reports",
                    candidates.size()));
    return step;
  }
  auto parsed = parse_tlsrpt_record(candidates.front());
  if (!parsed) {
    step.fail(fmt::format("record {} is invalid: {}", quote_input(candidates.front()),
                          parsed.error().reason));
    return step;
  }
  step.ok(fmt::format("record {}", quote_input(candidates.front())));
  for (const std::string& uri : parsed->rua) step.ok(fmt::format("reports go to {}", uri));
  return step;
}

CheckStep check_dane_state(const std::optional<DaneState>& state, bool sts_published) {
  CheckStep step{"dane", "DANE: DNSSEC of the MX hosts and their TLSA records", "RFC 7672 §2", {}};
  const std::string_view sts_word =
      sts_published ? "MTA-STS governs delivery" : "no MTA-STS policy either: TLS is opportunistic";
  if (!state) {
    step.ok(fmt::format("not checked: no DNSSEC trust anchor configured (trust_anchor); {}",
                        sts_published ? "MTA-STS governs for senders without DANE" : sts_word));
    return step;
  }
  for (const DaneHost& host : state->hosts) {
    const std::string line = fmt::format("mx {} {}: {} ({})", host.preference, host.name,
                                         to_string(host.state), host.why);
    if (host.state == DaneHostState::failed) {
      step.fail(line);
    } else if (host.state == DaneHostState::unusable) {
      step.warn(line);
    } else {
      step.ok(line);
    }
  }
  switch (state->verdict) {
    case DaneVerdict::not_applicable:
      step.ok(fmt::format("DANE: {}; {}", state->reason, sts_word));
      break;
    case DaneVerdict::partial:
      step.ok(
          fmt::format("DANE covers some MX hosts ({}); {} for the rest", state->reason, sts_word));
      break;
    case DaneVerdict::all_usable:
      step.ok(fmt::format("DANE governs delivery ({}); MTA-STS is not consulted (RFC 8461 §2)",
                          state->reason));
      break;
    case DaneVerdict::failed:
      step.fail(fmt::format("DANE lookup failed: {}; senders that validate DNSSEC hold the mail",
                            state->reason));
      break;
  }
  return step;
}

CheckStep check_smtp_probes(const std::vector<SmtpProbeFacts>& probes, std::int64_t now) {
  CheckStep step{"smtp", "STARTTLS on each MX host, port 25", "RFC 3207, RFC 8461 §4.2", {}};
  if (probes.empty()) step.warn("no MX host to connect to");
  for (const SmtpProbeFacts& probe : probes) {
    const std::string prefix = fmt::format("{}: ", probe.host);
    if (!probe.address.empty()) step.ok(fmt::format("{}connected to {}", prefix, probe.address));
    if (!probe.greeting.empty()) {
      step.ok(fmt::format("{}greeting {}", prefix, quote_input(probe.greeting)));
    }
    if (!probe.address.empty() && !probe.greeting.empty()) {
      if (probe.starttls_offered) {
        step.ok(fmt::format("{}offers STARTTLS", prefix));
      } else if (!probe.failure) {
        step.fail(
            fmt::format("{}does not offer STARTTLS: senders with a policy in enforce mode "
                        "will not deliver",
                        prefix));
      }
    }
    add_tls_facts(step, prefix, probe.host, probe.tls, now);
    if (probe.failure) step.fail(prefix + *probe.failure);
  }
  return step;
}

}  // namespace mtasts
