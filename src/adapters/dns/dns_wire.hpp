// DNS wire parsers: the RDATA libunbound hands back (TXT, MX, A, AAAA, TLSA), the names inside it,
// and the forwarder address syntax handed to libunbound. Pure functions from bytes to a value or a
// one-line reason: no libunbound, no Asio, no I/O.
//
// Every input is untrusted. Each length byte is checked against what is left before anything is
// read, a name may not exceed 255 octets, and a record must be used up exactly (stray octets are
// an error). Fuzzed by fuzz/fuzz_dns_wire.cpp.
#pragma once

#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mtasts::dns::wire {

// MX RDATA (RFC 1035 §3.3.9). The resolver turns it into dns::MxRecord.
struct Mx {
  std::uint16_t preference = 0;
  std::string host;  // as name() returns it: lower-case, no trailing dot, "" for the null MX
};

// TLSA RDATA (RFC 6698 §2.1). The resolver turns it into dns::TlsaRecord.
struct Tlsa {
  std::uint8_t usage = 0;
  std::uint8_t selector = 0;
  std::uint8_t matching_type = 0;
  std::vector<std::uint8_t> data;  // the certificate association data, at least one octet
};

// "ADDR[:PORT]", "[V6]:PORT", "[V6]" or bare IPv6 -> libunbound's "ADDR@PORT" (port 53 when none
// is given). A NUL byte anywhere is an error: libunbound reads the result as a C string.
[[nodiscard]] std::expected<std::string, std::string> forwarder_spec(std::string_view server);

// An uncompressed wire-format domain name filling `rdata` exactly (trailing bytes are an error),
// as lower-case text without the root dot ("" for the root). Bytes outside LDH-ish printable
// ASCII, '.' and '\' inside labels are escaped as \DDD so they can never match a pattern.
[[nodiscard]] std::expected<std::string, std::string> name(std::span<const std::uint8_t> rdata);

// TXT: the character-strings concatenated with nothing between them (STS-08).
[[nodiscard]] std::expected<std::string, std::string> txt(std::span<const std::uint8_t> rdata);
// MX: a 16-bit preference, then name().
[[nodiscard]] std::expected<Mx, std::string> mx(std::span<const std::uint8_t> rdata);
// A and AAAA: exactly 4 and 16 octets, as address text ("192.0.2.1", "2001:db8::1").
[[nodiscard]] std::expected<std::string, std::string> a(std::span<const std::uint8_t> rdata);
[[nodiscard]] std::expected<std::string, std::string> aaaa(std::span<const std::uint8_t> rdata);
// TLSA: usage, selector, matching type, then at least one octet of association data.
[[nodiscard]] std::expected<Tlsa, std::string> tlsa(std::span<const std::uint8_t> rdata);

}  // namespace mtasts::dns::wire
