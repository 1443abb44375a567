#include "core/dane.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>

#include <fmt/format.h>

namespace mtasts {
namespace {

constexpr std::array<std::string_view, 6> kHostStates = {"usable",   "unusable",   "no-tlsa",
                                                         "insecure", "no-address", "failed"};
constexpr std::array<std::string_view, 4> kVerdicts = {"not-applicable", "partial", "all-usable",
                                                       "failed"};

std::string with_detail(std::string what, const std::string& detail) {
  if (!detail.empty()) {
    what += ": ";
    what += detail;
  }
  return what;
}

// Why a lookup cannot be relied on, or "" when it can.
std::string failure(const DnsResult& result, std::string_view what) {
  if (result.trust == DnsTrust::bogus) {
    return with_detail(fmt::format("DNSSEC validation of {} failed (bogus)", what), result.detail);
  }
  if (result.outcome == DnsOutcome::failed) {
    return with_detail(fmt::format("{} lookup failed", what), result.detail);
  }
  if (result.trust == DnsTrust::indeterminate) {
    return with_detail(fmt::format("DNSSEC status of {} could not be determined", what),
                       result.detail);
  }
  return "";
}

std::int64_t keep_until(std::uint32_t ttl, std::int64_t now, const DaneTiming& timing) {
  const std::int64_t lifetime =
      std::clamp<std::int64_t>(ttl, timing.min_ttl, std::max(timing.min_ttl, timing.max_ttl));
  return now + lifetime;
}

DaneState final_state(DaneVerdict verdict, std::string reason, std::int64_t now,
                      std::int64_t expires_at) {
  DaneState state;
  state.verdict = verdict;
  state.reason = std::move(reason);
  state.checked_at = now;
  state.expires_at = expires_at;
  return state;
}

DaneHost host_state(const MxHostName& host, DaneHostState state, std::string why) {
  return DaneHost{host.preference, host.name, state, std::move(why)};
}

// One printable line: stored as text where a newline separates hosts.
std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(std::min<std::size_t>(text.size(), 300));
  for (char c : text.substr(0, 300)) {
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  }
  return out;
}

}  // namespace

bool is_usable_tlsa(const TlsaParams& record) {
  if (record.usage != 2 && record.usage != 3) return false;
  if (record.selector > 1) return false;
  switch (record.matching_type) {
    case 0:
      return record.data_size > 0;
    case 1:
      return record.data_size == 32;
    case 2:
      return record.data_size == 64;
    default:
      return false;
  }
}

std::string_view to_string(DaneHostState state) {
  return kHostStates[static_cast<std::size_t>(state)];
}

std::optional<DaneHostState> dane_host_state_from(std::string_view text) {
  for (std::size_t i = 0; i < kHostStates.size(); ++i) {
    if (kHostStates[i] == text) return static_cast<DaneHostState>(i);
  }
  return std::nullopt;
}

std::string_view to_string(DaneVerdict verdict) {
  return kVerdicts[static_cast<std::size_t>(verdict)];
}

std::optional<DaneVerdict> dane_verdict_from(std::string_view text) {
  for (std::size_t i = 0; i < kVerdicts.size(); ++i) {
    if (kVerdicts[i] == text) return static_cast<DaneVerdict>(i);
  }
  return std::nullopt;
}

DaneMxStep dane_mx_step(std::string_view domain, const DnsResult& mx, std::vector<MxHostName> hosts,
                        std::int64_t now, const DaneTiming& timing) {
  DaneMxStep step;
  if (std::string why = failure(mx, fmt::format("the MX RRset of {}", domain)); !why.empty()) {
    step.final_state =
        final_state(DaneVerdict::failed, std::move(why), now, now + timing.failure_retry);
    return step;
  }
  if (mx.trust == DnsTrust::insecure) {
    // RFC 7672 §2.2.1: DANE need not apply through an insecure MX RRset (DANE-06).
    step.final_state = final_state(
        DaneVerdict::not_applicable,
        fmt::format("the MX RRset of {} is not DNSSEC-signed: DANE does not apply", domain), now,
        keep_until(mx.ttl, now, timing));
    return step;
  }
  if (mx.outcome == DnsOutcome::none) {
    step.hosts.push_back(MxHostName{0, std::string(domain)});  // the implicit MX
    return step;
  }
  if (hosts.size() == 1 && hosts.front().name.empty()) {
    step.final_state =
        final_state(DaneVerdict::not_applicable,
                    fmt::format("{} publishes a null MX: it accepts no mail", domain), now,
                    keep_until(mx.ttl, now, timing));
    return step;
  }
  std::stable_sort(hosts.begin(), hosts.end(), [](const MxHostName& a, const MxHostName& b) {
    return a.preference < b.preference;
  });
  for (MxHostName& host : hosts) {
    if (host.name.empty()) continue;
    const bool seen = std::any_of(step.hosts.begin(), step.hosts.end(),
                                  [&](const MxHostName& h) { return h.name == host.name; });
    if (seen) continue;
    if (step.hosts.size() == kMaxDaneHosts) {
      step.truncated = true;
      break;
    }
    step.hosts.push_back(std::move(host));
  }
  if (step.hosts.empty()) {
    step.final_state = final_state(DaneVerdict::not_applicable,
                                   fmt::format("the MX RRset of {} names no host", domain), now,
                                   keep_until(mx.ttl, now, timing));
  }
  return step;
}

std::optional<DaneHost> dane_address_step(const MxHostName& host, const DnsResult& addresses) {
  if (std::string why = failure(addresses, fmt::format("A/AAAA of {}", host.name)); !why.empty()) {
    return host_state(host, DaneHostState::failed, std::move(why));
  }
  if (addresses.outcome == DnsOutcome::none) {
    return host_state(host, DaneHostState::no_address, "no A or AAAA records");
  }
  if (addresses.trust == DnsTrust::insecure) {
    // RFC 7672 §2.2.2: TLSA records are not looked up for a host whose addresses are insecure.
    return host_state(host, DaneHostState::insecure,
                      "address records are not DNSSEC-signed: no TLSA lookup");
  }
  return std::nullopt;
}

DaneHost dane_tlsa_step(const MxHostName& host, const DnsResult& tlsa,
                        const std::vector<TlsaParams>& records) {
  const std::string name = fmt::format("TLSA at _25._tcp.{}", host.name);
  if (std::string why = failure(tlsa, name); !why.empty()) {
    return host_state(host, DaneHostState::failed, std::move(why));
  }
  if (tlsa.trust == DnsTrust::insecure) {
    return host_state(host, DaneHostState::insecure, fmt::format("{} is not DNSSEC-signed", name));
  }
  if (tlsa.outcome == DnsOutcome::none || records.empty()) {
    return host_state(host, DaneHostState::no_tlsa,
                      "no TLSA records (secure denial): opportunistic TLS");
  }
  const auto usable = std::count_if(records.begin(), records.end(), is_usable_tlsa);
  if (usable > 0) {
    return host_state(host, DaneHostState::usable,
                      fmt::format("{} of {} TLSA records usable", usable, records.size()));
  }
  return host_state(
      host, DaneHostState::unusable,
      fmt::format("none of {} TLSA records usable (only DANE-TA(2) and DANE-EE(3) are): "
                  "TLS required, not authenticated",
                  records.size()));
}

DaneState dane_verdict(std::vector<DaneHost> hosts, bool hosts_truncated, std::uint32_t ttl,
                       std::int64_t now, const DaneTiming& timing) {
  DaneState state;
  state.checked_at = now;
  for (DaneHost& host : hosts) host.why = one_line(host.why);
  auto failed = std::find_if(hosts.begin(), hosts.end(), [](const DaneHost& host) {
    return host.state == DaneHostState::failed;
  });
  if (failed != hosts.end()) {
    state.verdict = DaneVerdict::failed;
    state.reason = fmt::format("MX host {}: {}", failed->name, failed->why);
    state.expires_at = now + timing.failure_retry;
    state.hosts = std::move(hosts);
    return state;
  }
  std::size_t reachable = 0;
  std::size_t usable = 0;
  std::size_t with_tlsa = 0;
  for (const DaneHost& host : hosts) {
    if (host.state == DaneHostState::no_address) continue;
    ++reachable;
    if (host.state == DaneHostState::usable) ++usable;
    if (host.state == DaneHostState::usable || host.state == DaneHostState::unusable) ++with_tlsa;
  }
  if (with_tlsa == 0) {
    state.verdict = DaneVerdict::not_applicable;
    state.reason = "no MX host has DNSSEC-signed TLSA records";
  } else if (usable == reachable && !hosts_truncated) {
    state.verdict = DaneVerdict::all_usable;
    state.reason = fmt::format("every MX host ({}) has usable DNSSEC-signed TLSA records", usable);
  } else {
    state.verdict = DaneVerdict::partial;
    state.reason = fmt::format("{} of {} MX hosts have DNSSEC-signed TLSA records ({} usable)",
                               with_tlsa, reachable, usable);
  }
  state.expires_at = keep_until(ttl, now, timing);
  state.hosts = std::move(hosts);
  return state;
}

std::string format_dane_hosts(const std::vector<DaneHost>& hosts) {
  std::string text;
  for (const DaneHost& host : hosts) {
    if (!text.empty()) text += '\n';
    text += fmt::format("{} {} {} {}", host.preference, host.name, to_string(host.state),
                        one_line(host.why));
  }
  return text;
}

std::optional<std::vector<DaneHost>> parse_dane_hosts(std::string_view text) {
  std::vector<DaneHost> hosts;
  while (!text.empty()) {
    const auto end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{} : text.substr(end + 1);
    auto field = [&line]() {
      const auto space = line.find(' ');
      std::string_view out = line.substr(0, space);
      line = space == std::string_view::npos ? std::string_view{} : line.substr(space + 1);
      return out;
    };
    const std::string_view preference = field();
    const std::string_view name = field();
    const std::string_view state_text = field();
    DaneHost host;
    auto [ptr, ec] =
        std::from_chars(preference.data(), preference.data() + preference.size(), host.preference);
    const auto state = dane_host_state_from(state_text);
    if (ec != std::errc() || ptr != preference.data() + preference.size() || name.empty() ||
        !state || hosts.size() == kMaxDaneHosts) {
      return std::nullopt;
    }
    host.name = std::string(name);
    host.state = *state;
    host.why = std::string(line);
    hosts.push_back(std::move(host));
  }
  return hosts;
}

}  // namespace mtasts
