// DNS wire parsers (dns_wire.hpp). Every length byte is checked against what is left before
// anything is read.
#include "adapters/dns/dns_wire.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <utility>

namespace mtasts::dns::wire {

std::expected<std::string, std::string> forwarder_spec(std::string_view server) {
  std::string_view host = server;
  std::string_view port;
  if (server.empty()) return std::unexpected("empty server address");
  // libunbound reads the result as a C string: "127.0.0.1\0:5353" would reach it as 127.0.0.1
  // on port 53, and inet_pton below stops at the NUL as well.
  if (server.find('\0') != std::string_view::npos) {
    return std::unexpected("NUL byte in the server address");
  }
  if (server.front() == '[') {
    const auto close = server.find(']');
    if (close == std::string_view::npos) return std::unexpected("missing ']'");
    host = server.substr(1, close - 1);
    std::string_view rest = server.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::unexpected("expected ':PORT' after ']'");
      port = rest.substr(1);
      if (port.empty()) return std::unexpected("empty port after ':'");
    }
  } else if (std::ranges::count(server, ':') == 1) {
    const auto colon = server.find(':');
    host = server.substr(0, colon);
    port = server.substr(colon + 1);
    if (port.empty()) return std::unexpected("empty port after ':'");
  }
  const std::string host_text(host);
  std::array<unsigned char, sizeof(in6_addr)> buffer{};
  const bool v4 = inet_pton(AF_INET, host_text.c_str(), buffer.data()) == 1;
  const bool v6 = !v4 && inet_pton(AF_INET6, host_text.c_str(), buffer.data()) == 1;
  if (!v4 && !v6) {
    return std::unexpected(fmt::format("{:?} is not an IPv4 or IPv6 address", host_text));
  }
  if (v4 && server.front() == '[') {
    return std::unexpected("brackets are for IPv6 addresses only");
  }
  unsigned port_number = 53;
  if (!port.empty()) {
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), port_number);
    if (ec != std::errc{} || end != port.data() + port.size() || port_number == 0 ||
        port_number > 65535) {
      return std::unexpected(fmt::format("port {:?} is not a number from 1 to 65535", port));
    }
  }
  return fmt::format("{}@{}", host_text, port_number);
}

std::expected<std::string, std::string> name(std::span<const std::uint8_t> rdata) {
  std::string out;
  std::size_t pos = 0;
  std::size_t wire_length = 0;
  while (true) {
    if (pos >= rdata.size()) return std::unexpected("name runs past the end of the record");
    const std::uint8_t length = rdata[pos];
    if ((length & 0xC0) == 0xC0) return std::unexpected("compression pointer in RDATA name");
    if (length > 63) return std::unexpected(fmt::format("label length byte {:#04x}", length));
    wire_length += 1 + length;
    if (wire_length > 255) return std::unexpected("name longer than 255 octets");
    ++pos;
    if (length == 0) break;
    if (rdata.size() - pos < length) {
      return std::unexpected(fmt::format("label of {} octets runs past the end of the record",
                                         static_cast<unsigned>(length)));
    }
    if (!out.empty()) out += '.';
    for (std::size_t i = 0; i < length; ++i) {
      const std::uint8_t c = rdata[pos + i];
      if (c >= 'A' && c <= 'Z') {
        out += static_cast<char>(c - 'A' + 'a');
      } else if (c > 0x20 && c < 0x7F && c != '.' && c != '\\') {
        out += static_cast<char>(c);
      } else {
        out += fmt::format("\\{:03}", static_cast<unsigned>(c));
      }
    }
    pos += length;
  }
  if (pos != rdata.size()) {
    return std::unexpected(fmt::format("{} stray octets after the name", rdata.size() - pos));
  }
  return out;
}

std::expected<std::string, std::string> txt(std::span<const std::uint8_t> rdata) {
  if (rdata.empty()) return std::unexpected("TXT record without a character-string");
  std::string out;
  std::size_t pos = 0;
  while (pos < rdata.size()) {
    const std::size_t length = rdata[pos++];
    if (rdata.size() - pos < length) {
      return std::unexpected(
          fmt::format("character-string of {} octets at offset {} runs past the end of the record",
                      length, pos - 1));
    }
    out.append(reinterpret_cast<const char*>(rdata.data() + pos), length);
    pos += length;
  }
  return out;
}

std::expected<Mx, std::string> mx(std::span<const std::uint8_t> rdata) {
  if (rdata.size() < 3) {
    return std::unexpected(fmt::format("MX record of {} octets is too short", rdata.size()));
  }
  Mx record;
  record.preference = static_cast<std::uint16_t>((rdata[0] << 8) | rdata[1]);
  auto host = name(rdata.subspan(2));
  if (!host) return std::unexpected("exchange: " + host.error());
  record.host = std::move(*host);
  return record;
}

namespace {
std::expected<std::string, std::string> address(int family, std::span<const std::uint8_t> rdata,
                                                std::size_t expected_size) {
  if (rdata.size() != expected_size) {
    return std::unexpected(
        fmt::format("address of {} octets, expected {}", rdata.size(), expected_size));
  }
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (inet_ntop(family, rdata.data(), text.data(), text.size()) == nullptr) {
    return std::unexpected(fmt::format("inet_ntop: {}", std::strerror(errno)));
  }
  return std::string(text.data());
}
}  // namespace

std::expected<std::string, std::string> a(std::span<const std::uint8_t> rdata) {
  return address(AF_INET, rdata, 4);
}

std::expected<std::string, std::string> aaaa(std::span<const std::uint8_t> rdata) {
  return address(AF_INET6, rdata, 16);
}

std::expected<Tlsa, std::string> tlsa(std::span<const std::uint8_t> rdata) {
  if (rdata.size() < 4) {
    return std::unexpected(fmt::format("TLSA record of {} octets is too short", rdata.size()));
  }
  Tlsa record;
  record.usage = rdata[0];
  record.selector = rdata[1];
  record.matching_type = rdata[2];
  record.data.assign(rdata.begin() + 3, rdata.end());
  return record;
}

}  // namespace mtasts::dns::wire
