#include "core/netstring.hpp"

#include <fmt/format.h>

#include "core/text_quote.hpp"

namespace mtasts {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

NetstringStep invalid(std::string reason) {
  NetstringStep step;
  step.status = NetstringStatus::invalid;
  step.reason = std::move(reason);
  return step;
}

}  // namespace

NetstringStep read_netstring(std::string_view input, std::size_t max_payload) {
  std::size_t digits = 0;
  std::size_t length = 0;
  while (digits < input.size() && is_digit(input[digits])) {
    if (digits == 1 && input[0] == '0') {
      return invalid("netstring length has a leading zero");
    }
    const auto digit = static_cast<std::size_t>(input[digits] - '0');
    // Checked before the multiplication can overflow and before any payload is awaited.
    if (digit > max_payload || length > (max_payload - digit) / 10) {
      return invalid(fmt::format("netstring length {}... exceeds the limit of {} octets",
                                 input.substr(0, digits + 1), max_payload));
    }
    length = length * 10 + digit;
    ++digits;
  }
  if (digits == input.size()) return {};  // empty, or only digits so far
  if (digits == 0) {
    return invalid(
        fmt::format("expected a netstring length (digits), found {}", quote_input(input, 20)));
  }
  if (input[digits] != ':') {
    return invalid(fmt::format("expected ':' after the netstring length {}, found {}",
                               input.substr(0, digits), quote_input(input.substr(digits), 20)));
  }
  const std::size_t total = digits + 1 + length + 1;
  if (input.size() < total) return {};
  if (input[total - 1] != ',') {
    return invalid(fmt::format("expected ',' after the {}-octet netstring payload, found {}",
                               length, quote_input(input.substr(total - 1), 20)));
  }
  NetstringStep step;
  step.status = NetstringStatus::done;
  step.consumed = total;
  step.payload = input.substr(digits + 1, length);
  return step;
}

std::string format_netstring(std::string_view payload) {
  return fmt::format("{}:{},", payload.size(), payload);
}

}  // namespace mtasts
