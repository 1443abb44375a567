// The address grammars of the config file: parse_listen_address, parse_resolver_address.
#include "service/config.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <string>

#include <fmt/format.h>

#include "core/text_quote.hpp"

namespace mtasts {

std::expected<ListenAddress, Error> parse_listen_address(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return std::unexpected(
        Error{ErrorCategory::config, fmt::format("listen address {}: {}", quote_input(text), why)});
  };
  // inet_pton reads up to a NUL: "127.0.0.1\0junk" must not pass as 127.0.0.1.
  if (text.find('\0') != std::string_view::npos) return bad("contains a NUL character");
  std::string host;
  std::string_view port;
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (!rest.starts_with(':')) return bad("expected ':PORT' after ']'");
    port = rest.substr(1);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("expected ADDR:PORT or [V6]:PORT");
    host = std::string(text.substr(0, colon));
    if (host.find(':') != std::string::npos) return bad("write IPv6 addresses as [V6]:PORT");
    port = text.substr(colon + 1);
  }
  unsigned char buffer[sizeof(in6_addr)];
  const bool v6 = text.starts_with('[');
  if (inet_pton(v6 ? AF_INET6 : AF_INET, host.c_str(), buffer) != 1) {
    return bad(v6 ? "expected an IPv6 address inside [...]" : "expected an IPv4 address");
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos) {
    return bad("port must be 1-65535");
  }
  const int number = std::stoi(std::string(port));
  if (number < 1 || number > 65535) return bad("port must be 1-65535");
  return ListenAddress{host, static_cast<std::uint16_t>(number)};
}

std::expected<std::string, Error> parse_resolver_address(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return std::unexpected(
        Error{ErrorCategory::config, fmt::format("resolver {}: {}", quote_input(text), why)});
  };
  if (text.find('\0') != std::string_view::npos) return bad("contains a NUL character");
  std::string host;
  std::string port = "53";
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (!rest.starts_with(':')) return bad("expected ':PORT' after ']'");
      port = std::string(rest.substr(1));
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    auto colon = text.find(':');
    host = std::string(text.substr(0, colon));
    port = std::string(text.substr(colon + 1));
  } else {
    host = std::string(text);
  }
  unsigned char buffer[sizeof(in6_addr)];
  if (inet_pton(AF_INET, host.c_str(), buffer) != 1 &&
      inet_pton(AF_INET6, host.c_str(), buffer) != 1) {
    return bad("expected an IPv4 or IPv6 address, optionally with :PORT ([v6]:PORT)");
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 ||
      std::stoi(port) > 65535) {
    return bad("port must be 1-65535");
  }
  return host + "@" + port;
}

}  // namespace mtasts
