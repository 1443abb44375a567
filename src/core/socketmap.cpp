#include "core/socketmap.hpp"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "core/domain.hpp"
#include "core/mx_match.hpp"
#include "core/text_quote.hpp"

namespace mtasts {
namespace {

// One printable line, bounded: a reason never breaks the reply or Postfix's log line.
std::string printable_reason(std::string_view reason) {
  constexpr std::size_t kMax = 400;
  std::string out;
  for (char c : reason) {
    if (out.size() >= kMax) {
      out += "...";
      break;
    }
    const auto byte = static_cast<unsigned char>(c);
    out += (byte < 0x20 || byte >= 0x7f) ? '?' : c;
  }
  return out;
}

// A policy line Postfix can carry as "{ policy_string = <line> }": printable ASCII without
// braces (extpar() would end the value at a "}"), not empty once trimmed.
bool carriable(std::string_view line) {
  if (line.find_first_not_of(" \t") == std::string_view::npos) return false;
  return std::all_of(line.begin(), line.end(), [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte >= 0x20 && byte < 0x7f && c != '{' && c != '}';
  });
}

std::vector<std::string_view> policy_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const std::size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (carriable(line)) lines.push_back(line);
    if (newline == std::string_view::npos) break;
    text.remove_prefix(newline + 1);
  }
  return lines;
}

// The attributes Postfix >= 3.10 hands to its TLSRPT library (TLSRPT_README, "MTA-STS Support
// via smtp_tls_policy_maps"). Bounded by `room`: policy strings, then mx patterns, are left out
// when they would not fit.
std::string tlsrpt_attributes(std::string_view domain, const std::vector<std::string>& patterns,
                              std::string_view policy_text, std::size_t room) {
  std::string head = fmt::format(" policy_type=sts policy_domain={}", domain);
  std::string mx;
  for (const std::string& pattern : patterns) mx += fmt::format(" mx_host_pattern={}", pattern);
  std::string strings;
  for (std::string_view line : policy_lines(policy_text)) {
    strings += fmt::format(" {{ policy_string = {} }}", line);
  }
  if (head.size() + mx.size() + strings.size() <= room) return head + mx + strings;
  if (head.size() + mx.size() <= room) return head + mx;
  return head;
}

// An MX host that may stand in match=: a normalized hostname. RFC 8461 §4.1 lets "*.example.net"
// match "mx_1.example.net" too, but a name that is not a hostname could carry ':' or blanks into
// the reply, and Postfix itself skips such MX names ("malformed domain name"); the daemon's MX
// lookup drops them already. Leaving one out never weakens the reply: an unmatched wildcard stays
// as written and matches no certificate.
bool is_match_list_name(const std::string& host) {
  const auto checked = check_ldh_hostname(host);
  return checked && *checked == host;
}

std::vector<std::string> sorted_unique(std::vector<std::string> patterns) {
  std::sort(patterns.begin(), patterns.end());
  patterns.erase(std::unique(patterns.begin(), patterns.end()), patterns.end());
  return patterns;
}

std::vector<std::string> unique_in_order(const std::vector<std::string>& patterns) {
  std::vector<std::string> out;
  for (const std::string& pattern : patterns) {
    if (std::find(out.begin(), out.end(), pattern) == out.end()) out.push_back(pattern);
  }
  return out;
}

}  // namespace

std::expected<SocketmapRequest, std::string> parse_socketmap_request(std::string_view payload) {
  for (char c : payload) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) {
      return std::unexpected(fmt::format("control character in request {}", quote_input(payload)));
    }
  }
  const std::size_t space = payload.find(' ');
  if (space == std::string_view::npos || space == 0 || space + 1 == payload.size()) {
    return std::unexpected(
        fmt::format("expected \"<map-name> <key>\", got {}", quote_input(payload)));
  }
  return SocketmapRequest{std::string(payload.substr(0, space)),
                          std::string(payload.substr(space + 1))};
}

SocketmapKey classify_socketmap_key(std::string_view key) {
  if (key.starts_with('.')) return SocketmapKey::parent_probe;
  if (key.starts_with('[') || key.find(':') != std::string_view::npos ||
      key.find('/') != std::string_view::npos) {
    return SocketmapKey::explicit_nexthop;
  }
  return SocketmapKey::domain;
}

std::string_view sts_policy_failure(std::string_view last_error) {
  const std::string_view category = last_error.substr(0, last_error.find(':'));
  if (category == to_string(ErrorCategory::webpki_invalid)) return "sts-webpki-invalid";
  if (category == to_string(ErrorCategory::policy_syntax)) return "sts-policy-invalid";
  return "sts-policy-fetch-error";
}

std::string socketmap_temp(std::string_view reason) {
  return "TEMP " + printable_reason(reason);
}

std::string socketmap_perm(std::string_view reason) {
  return "PERM " + printable_reason(reason);
}

std::vector<std::string> postfix_match_names(const std::vector<std::string>& patterns,
                                             const std::vector<std::string>& mx_hosts) {
  std::vector<std::string> names;
  for (const std::string& pattern : patterns) {
    if (!pattern.starts_with("*.")) {
      names.push_back(pattern);
      continue;
    }
    bool matched = false;
    for (const std::string& host : mx_hosts) {
      if (mx_matches(pattern, host) && is_match_list_name(host)) {
        names.push_back(host);
        matched = true;
      }
    }
    if (!matched) names.push_back(pattern);
  }
  return sorted_unique(std::move(names));
}

bool has_wildcard_pattern(const std::vector<std::string>& patterns) {
  return std::any_of(patterns.begin(), patterns.end(),
                     [](const std::string& pattern) { return pattern.starts_with("*."); });
}

std::string socketmap_reply(std::string_view domain, const Answer& answer,
                            std::string_view policy_text, std::string_view last_error,
                            const SocketmapMapOptions& options,
                            const std::vector<std::string>& mx_hosts) {
  const std::string servername = options.servername ? " servername=hostname" : "";
  // DANE first (RFC 8461 §2): MTA-STS never rescues a failed DANE lookup, and where TLSA records
  // exist Postfix's own DANE verifies the hosts ("dane": per host, RFC 7672; "dane-only": every
  // host must pass DANE).
  if (answer.dane == DaneVerdict::failed) {
    return socketmap_temp(fmt::format("DANE lookup for {} failed: {}", domain, answer.dane_reason));
  }
  // Enforced on this map: an enforce policy, or a testing one with enforce_testing.
  const bool enforce_policy =
      answer.kind == AnswerKind::policy &&
      (answer.mode == Mode::enforce || (answer.mode == Mode::testing && options.enforce_testing));
  if (answer.dane == DaneVerdict::all_usable || answer.dane_required ||
      (answer.dane == DaneVerdict::partial && enforce_policy)) {
    // With an enforced policy a host without TLSA must not fall back to "may": dane-only.
    return "OK dane-only";
  }
  // Partial DANE never weakens strict mode's hold (a fail answer keeps its reply below, as
  // getmta keeps "fail"): "dane" would let a host without TLSA fall back to "may".
  if (answer.dane == DaneVerdict::partial && answer.kind != AnswerKind::fail) return "OK dane";
  if (answer.kind == AnswerKind::fail) {
    if (!options.tlsrpt) {
      return socketmap_temp(fmt::format("MTA-STS policy of {} is published but unavailable{}{}",
                                        domain, last_error.empty() ? "" : ": ", last_error));
    }
    // Postfix fails the TLS policy with this result type (deferring the mail) and reports it.
    return fmt::format("OK secure{} policy_type=sts policy_domain={} policy_failure={}", servername,
                       domain, sts_policy_failure(last_error));
  }
  if (answer.kind != AnswerKind::policy || answer.mx.empty()) return "NOTFOUND ";
  const bool enforce =
      answer.mode == Mode::enforce || (answer.mode == Mode::testing && options.enforce_testing);
  const bool report = answer.mode == Mode::testing && options.tlsrpt && options.report_testing;
  if (!enforce && !report) return "NOTFOUND ";

  std::string reply;
  if (enforce) {
    reply = "OK secure match=";
    const std::vector<std::string> names = postfix_match_names(answer.mx, mx_hosts);
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (i > 0) reply += ':';
      reply += names[i];
    }
  } else {
    reply = "OK may";
  }
  reply += servername;
  if (reply.size() > kSocketmapMaxReply) {
    // Only with max_policy_bytes far above 64 KiB. Never a shortened match list.
    return socketmap_temp(fmt::format(
        "the MTA-STS policy of {} lists more mx patterns than a socketmap reply can carry",
        domain));
  }
  if (options.tlsrpt) {
    const std::size_t room =
        reply.size() < kSocketmapMaxReply ? kSocketmapMaxReply - reply.size() : 0;
    reply += tlsrpt_attributes(domain, unique_in_order(answer.mx), policy_text, room);
  }
  return reply;
}

}  // namespace mtasts
