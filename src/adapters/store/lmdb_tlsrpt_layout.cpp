#include "adapters/store/lmdb_tlsrpt_layout.hpp"

#include <openssl/evp.h>

#include <array>
#include <chrono>
#include <limits>
#include <vector>

#include <fmt/format.h>

namespace mtasts::store::tlsrpt_layout {

using tlsrpt::Day;
using tlsrpt::FailureKey;
using tlsrpt::PolicyKey;

namespace {

constexpr std::uint64_t kMaxCount = std::numeric_limits<std::uint64_t>::max();

}  // namespace

std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) {
  return b > kMaxCount - a ? kMaxCount : a + b;
}

// A key or text for an error message: printable ASCII kept, other octets as \xHH, cut short.
std::string printable(std::string_view bytes) {
  std::string out;
  for (const char c : bytes) {
    if (out.size() >= 160) {
      out += "...";
      break;
    }
    const auto octet = static_cast<unsigned char>(c);
    if (octet >= 0x20 && octet < 0x7f && c != '\\') {
      out.push_back(c);
    } else {
      out += fmt::format("\\x{:02x}", octet);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Keys

// "YYYY-MM-DD": sorts like the days themselves, for the years it can hold.
std::expected<std::string, Error> day_key(Day day) {
  const int year = static_cast<int>(std::chrono::year_month_day{day}.year());
  if (year < 0 || year > 9999) {
    return std::unexpected(
        Error{ErrorCategory::store, fmt::format("day {} is outside the years 0000-9999 a TLSRPT "
                                                "store key holds",
                                                tlsrpt::format_day(day))});
  }
  return tlsrpt::format_day(day);
}

// Escapes NUL as 0x00 0xff and ends the string with 0x00 0x01: no encoded string is a prefix of
// another, and encoded strings sort like the strings.
void append_escaped(std::string& out, std::string_view text) {
  for (const char c : text) {
    out.push_back(c);
    if (c == '\0') out.push_back('\xff');
  }
  out.push_back('\0');
  out.push_back('\x01');
}

// The string escaped at `pos` of `key` and the position after it; nullopt when malformed.
std::optional<std::pair<std::string, std::size_t>> read_escaped(std::string_view key,
                                                                std::size_t pos) {
  std::string text;
  while (pos < key.size()) {
    const char c = key[pos++];
    if (c != '\0') {
      text.push_back(c);
      continue;
    }
    if (pos >= key.size()) return std::nullopt;
    const char marker = key[pos++];
    if (marker == '\x01') return std::pair{std::move(text), pos};
    if (marker != '\xff') return std::nullopt;
    text.push_back('\0');
  }
  return std::nullopt;
}

// The smallest key above every key that starts with `prefix`; nullopt when there is none.
std::optional<std::string> successor(std::string_view prefix) {
  std::string next(prefix);
  while (!next.empty() && static_cast<unsigned char>(next.back()) == 0xff) next.pop_back();
  if (next.empty()) return std::nullopt;
  next.back() = static_cast<char>(static_cast<unsigned char>(next.back()) + 1);
  return next;
}

std::expected<std::string, Error> sha256(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  if (::EVP_Digest(bytes.data(), bytes.size(), digest.data(), &size, ::EVP_sha256(), nullptr) !=
          1 ||
      size != kDigestLength) {
    return std::unexpected(Error{ErrorCategory::internal,
                                 "SHA-256 is not available from OpenSSL (TLSRPT store keys)"});
  }
  return std::string(reinterpret_cast<const char*>(digest.data()), size);
}

// ---------------------------------------------------------------------------------------------
// Values: little-endian integers, strings as a uint32 length and their octets.

namespace {

void put_le(std::string& out, std::uint64_t value, std::size_t width) {
  for (std::size_t i = 0; i < width; ++i)
    out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

void put_string(std::string& out, std::string_view text) {
  put_le(out, text.size(), 4);
  out.append(text);
}

void put_strings(std::string& out, const std::vector<std::string>& texts) {
  put_le(out, texts.size(), 4);
  for (const std::string& text : texts) put_string(out, text);
}

class ByteReader {
 public:
  explicit ByteReader(std::string_view bytes) : rest_(bytes) {}

  std::optional<std::uint64_t> le(std::size_t width) {
    if (rest_.size() < width) return std::nullopt;
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < width; ++i) {
      value |= std::uint64_t{static_cast<unsigned char>(rest_[i])} << (8 * i);
    }
    rest_.remove_prefix(width);
    return value;
  }

  std::optional<std::string> string() {
    const auto size = le(4);
    if (!size || rest_.size() < *size) return std::nullopt;
    std::string text(rest_.substr(0, *size));
    rest_.remove_prefix(*size);
    return text;
  }

  std::optional<std::vector<std::string>> strings() {
    const auto count = le(4);
    if (!count || *count > rest_.size() / 4) return std::nullopt;  // each needs 4 octets at least
    std::vector<std::string> texts;
    for (std::uint64_t i = 0; i < *count; ++i) {
      auto text = string();
      if (!text) return std::nullopt;
      texts.push_back(std::move(*text));
    }
    return texts;
  }

  [[nodiscard]] bool done() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

}  // namespace

std::string encode_policy(const PolicyKey& policy) {
  std::string out;
  put_le(out, static_cast<std::uint64_t>(policy.type), 2);
  put_string(out, policy.domain);
  put_strings(out, policy.policy_strings);
  put_strings(out, policy.mx_hosts);
  return out;
}

std::optional<PolicyKey> decode_policy(std::string_view bytes) {
  ByteReader reader(bytes);
  PolicyKey policy;
  const auto code = reader.le(2);
  const auto type =
      code ? tlsrpt::policy_type_from_code(static_cast<std::int64_t>(*code)) : std::nullopt;
  auto domain = reader.string();
  auto policy_strings = reader.strings();
  auto mx_hosts = reader.strings();
  if (!type || !domain || !policy_strings || !mx_hosts || !reader.done()) return std::nullopt;
  return PolicyKey{*type, std::move(*domain), std::move(*policy_strings), std::move(*mx_hosts)};
}

std::string encode_failure(const FailureKey& failure) {
  std::string out;
  put_le(out, static_cast<std::uint64_t>(failure.result), 2);
  for (const std::string* field :
       {&failure.sending_mta_ip, &failure.receiving_mx_hostname, &failure.receiving_mx_helo,
        &failure.receiving_ip, &failure.additional_information, &failure.failure_reason_code}) {
    put_string(out, *field);
  }
  return out;
}

std::optional<FailureKey> decode_failure(std::string_view bytes) {
  ByteReader reader(bytes);
  FailureKey failure;
  const auto code = reader.le(2);
  const auto result =
      code ? tlsrpt::result_type_from_code(static_cast<std::int64_t>(*code)) : std::nullopt;
  if (!result) return std::nullopt;
  failure.result = *result;
  for (std::string* field :
       {&failure.sending_mta_ip, &failure.receiving_mx_hostname, &failure.receiving_mx_helo,
        &failure.receiving_ip, &failure.additional_information, &failure.failure_reason_code}) {
    auto text = reader.string();
    if (!text) return std::nullopt;
    *field = std::move(*text);
  }
  if (!reader.done()) return std::nullopt;
  return failure;
}

std::string encode_counts(bool failure_row, std::uint64_t first, std::uint64_t second,
                          std::string_view encoded) {
  std::string out;
  put_le(out, first, 8);
  if (!failure_row) put_le(out, second, 8);
  out.append(encoded);
  return out;
}

std::optional<Counts> decode_counts(std::string_view value, bool failure_row) {
  const std::size_t fixed = failure_row ? 8 : 16;
  if (value.size() <= fixed) return std::nullopt;
  ByteReader reader(value.substr(0, fixed));
  Counts counts;
  counts.first = *reader.le(8);
  if (!failure_row) counts.second = *reader.le(8);
  counts.encoded = value.substr(fixed);
  return counts;
}

// version, status, attempts, first_attempt, next_attempt, rua, last_error.
std::string encode_delivery(const ReportDelivery& state, std::string_view rua) {
  std::string out;
  put_le(out, kDeliveryVersion, 1);
  put_le(out, static_cast<std::uint64_t>(state.status), 1);
  put_le(out, state.attempts, 4);
  put_le(out, static_cast<std::uint64_t>(state.first_attempt), 8);
  put_le(out, static_cast<std::uint64_t>(state.next_attempt), 8);
  put_string(out, rua);
  put_string(out, state.last_error);
  return out;
}

std::optional<StoredDelivery> decode_delivery(std::string_view value) {
  ByteReader reader(value);
  const auto version = reader.le(1);
  const auto status = reader.le(1);
  const auto attempts = reader.le(4);
  const auto first_attempt = reader.le(8);
  const auto next_attempt = reader.le(8);
  auto rua = reader.string();
  auto last_error = reader.string();
  if (!version || *version != kDeliveryVersion || !status ||
      *status > static_cast<std::uint64_t>(ReportDelivery::Status::given_up) || !attempts ||
      !first_attempt || !next_attempt || !rua || !last_error || !reader.done()) {
    return std::nullopt;
  }
  ReportDelivery state;
  state.status = static_cast<ReportDelivery::Status>(*status);
  state.attempts = static_cast<std::uint32_t>(*attempts);
  state.first_attempt = static_cast<std::int64_t>(*first_attempt);
  state.next_attempt = static_cast<std::int64_t>(*next_attempt);
  state.last_error = std::move(*last_error);
  return StoredDelivery{std::move(state), std::move(*rua)};
}
}  // namespace mtasts::store::tlsrpt_layout
