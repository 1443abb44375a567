#include "core/tlsrpt_session.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <utility>

#include <fmt/format.h>

namespace mtasts::tlsrpt {
namespace {

struct ResultName {
  ResultType type;
  std::string_view name;
};

// RFC 8460 §6.6, in libtlsrpt's numeric order.
constexpr std::array<ResultName, 11> kResultNames = {{
    {ResultType::starttls_not_supported, "starttls-not-supported"},
    {ResultType::certificate_host_mismatch, "certificate-host-mismatch"},
    {ResultType::certificate_not_trusted, "certificate-not-trusted"},
    {ResultType::certificate_expired, "certificate-expired"},
    {ResultType::validation_failure, "validation-failure"},
    {ResultType::sts_policy_fetch_error, "sts-policy-fetch-error"},
    {ResultType::sts_policy_invalid, "sts-policy-invalid"},
    {ResultType::sts_webpki_invalid, "sts-webpki-invalid"},
    {ResultType::tlsa_invalid, "tlsa-invalid"},
    {ResultType::dnssec_invalid, "dnssec-invalid"},
    {ResultType::dane_required, "dane-required"},
}};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// The length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, at
// most U+10FFFF) at the start of `text`, or 0 when there is none.
std::size_t utf8_sequence_length(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const auto continuation = [&](std::size_t i, unsigned char low = 0x80,
                                unsigned char high = 0xbf) {
    return i < text.size() && byte(i) >= low && byte(i) <= high;
  };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) return continuation(1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    const unsigned char low = lead == 0xe0 ? 0xa0 : 0x80;
    const unsigned char high = lead == 0xed ? 0x9f : 0xbf;
    return continuation(1, low, high) && continuation(2) ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    const unsigned char low = lead == 0xf0 ? 0x90 : 0x80;
    const unsigned char high = lead == 0xf4 ? 0x8f : 0xbf;
    return continuation(1, low, high) && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}

}  // namespace

std::string_view to_string(PolicyType type) {
  switch (type) {
    case PolicyType::tlsa:
      return "tlsa";
    case PolicyType::sts:
      return "sts";
    case PolicyType::no_policy_found:
      return "no-policy-found";
  }
  return "no-policy-found";
}

std::string_view to_string(ResultType type) {
  for (const ResultName& entry : kResultNames) {
    if (entry.type == type) return entry.name;
  }
  return "validation-failure";
}

std::optional<PolicyType> policy_type_from_code(std::int64_t code) {
  switch (code) {
    case static_cast<int>(PolicyType::tlsa):
      return PolicyType::tlsa;
    case static_cast<int>(PolicyType::sts):
      return PolicyType::sts;
    case static_cast<int>(PolicyType::no_policy_found):
      return PolicyType::no_policy_found;
    default:
      return std::nullopt;
  }
}

std::optional<ResultType> result_type_from_code(std::int64_t code) {
  for (const ResultName& entry : kResultNames) {
    if (static_cast<std::int64_t>(entry.type) == code) return entry.type;
  }
  return std::nullopt;
}

std::optional<ResultType> result_type_from_name(std::string_view name) {
  for (const ResultName& entry : kResultNames) {
    if (entry.name == name) return entry.type;
  }
  return std::nullopt;
}

std::optional<ResultType> result_type_of(ErrorCategory category) {
  switch (category) {
    case ErrorCategory::fetch_failed:
      return ResultType::sts_policy_fetch_error;
    case ErrorCategory::webpki_invalid:
      return ResultType::sts_webpki_invalid;
    case ErrorCategory::policy_syntax:
      return ResultType::sts_policy_invalid;
    default:
      return std::nullopt;
  }
}

std::optional<std::string> normalize_ip_text(std::string_view text) {
  // inet_pton wants a NUL-terminated string; the longest address text (IPv4-mapped IPv6 in full)
  // is 45 octets.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN ||
      text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  const std::string terminated(text);
  std::array<char, INET6_ADDRSTRLEN> out{};
  in_addr v4{};
  if (inet_pton(AF_INET, terminated.c_str(), &v4) == 1) {
    if (inet_ntop(AF_INET, &v4, out.data(), out.size()) == nullptr) return std::nullopt;
    return std::string(out.data());
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, terminated.c_str(), &v6) == 1) {
    if (inet_ntop(AF_INET6, &v6, out.data(), out.size()) == nullptr) return std::nullopt;
    return std::string(out.data());
  }
  return std::nullopt;
}

std::string clean_report_text(std::string_view text, std::size_t max_octets) {
  std::string out;
  out.reserve(std::min(text.size(), max_octets));
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t length = utf8_sequence_length(text.substr(i));
    // A byte that starts no character is replaced by one "?"; a character is kept whole or not
    // at all.
    if (out.size() + std::max<std::size_t>(length, 1) > max_octets) break;
    if (length == 0) {
      out += '?';
      ++i;
      continue;
    }
    if (length == 1) {
      const auto byte = static_cast<unsigned char>(text[i]);
      out += (byte < 0x20 || byte == 0x7f) ? ' ' : text[i];
    } else {
      out.append(text.substr(i, length));
    }
    i += length;
  }
  return out;
}

std::string format_day(Day day) {
  const std::chrono::year_month_day date{day};
  return fmt::format("{:04d}-{:02d}-{:02d}", static_cast<int>(date.year()),
                     static_cast<unsigned>(date.month()), static_cast<unsigned>(date.day()));
}

std::optional<Day> parse_day(std::string_view text) {
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return std::nullopt;
  for (std::size_t i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (!is_digit(text[i])) return std::nullopt;
  }
  const auto number = [&](std::size_t from, std::size_t count) {
    int value = 0;
    for (std::size_t i = from; i < from + count; ++i) value = value * 10 + (text[i] - '0');
    return value;
  };
  const std::chrono::year_month_day date{std::chrono::year{number(0, 4)},
                                         std::chrono::month{static_cast<unsigned>(number(5, 2))},
                                         std::chrono::day{static_cast<unsigned>(number(8, 2))}};
  if (!date.ok()) return std::nullopt;
  return Day{date};
}

Day day_of(std::int64_t unix_seconds) {
  return std::chrono::floor<std::chrono::days>(
      std::chrono::sys_seconds{std::chrono::seconds{unix_seconds}});
}

}  // namespace mtasts::tlsrpt
