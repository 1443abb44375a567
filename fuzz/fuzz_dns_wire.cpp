// Fuzzes the DNS wire parsers (src/adapters/dns/dns_wire.hpp): the RDATA libunbound hands back,
// and the forwarder address syntax.
// Input: the first byte picks the parser (byte % 8: 0 forwarder_spec, 1 name, 2 txt, 3 mx, 4 a,
// 5 aaaa, 6 tlsa, 7 all of them); the rest is the RDATA (for forwarder_spec, the address text).
#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <span>

#include "adapters/dns/dns_wire.hpp"
#include "fuzz_check.hpp"

using namespace mtasts;
using Rdata = std::span<const std::uint8_t>;

namespace {

// RFC 1035 §2.3.4: 255 octets of wire name; each octet is at most 4 characters as text (\DDD).
constexpr std::size_t kMaxNameText = 4 * 255;

// A name as dns_wire.hpp promises it: printable ASCII without upper case, NUL, space or control
// octets (everything else is \DDD), non-empty labels joined by single dots, bounded length.
bool is_name_text(std::string_view text) {
  if (text.size() > kMaxNameText) return false;
  if (text.empty()) return true;  // the root
  if (text.front() == '.' || text.back() == '.' || text.find("..") != std::string_view::npos) {
    return false;
  }
  return std::ranges::all_of(text, [](char c) {
    const auto octet = static_cast<unsigned char>(c);
    return octet > 0x20 && octet < 0x7F && !(c >= 'A' && c <= 'Z');
  });
}

void check_forwarder_spec(std::string_view input) {
  const auto spec = dns::wire::forwarder_spec(input);
  if (!spec) {
    FUZZ_CHECK(fuzz::one_line(spec.error()));
    return;
  }
  // "ADDR@PORT": libunbound reads it as a C string, so no NUL; ADDR is an address, PORT 1-65535.
  FUZZ_CHECK(spec->find('\0') == std::string::npos);
  FUZZ_CHECK(input.find('\0') == std::string_view::npos);
  const auto at = spec->rfind('@');
  FUZZ_CHECK(at != std::string::npos);
  const std::string host = spec->substr(0, at);
  const std::string_view port = std::string_view(*spec).substr(at + 1);
  std::array<unsigned char, sizeof(in6_addr)> buffer{};
  FUZZ_CHECK(inet_pton(AF_INET, host.c_str(), buffer.data()) == 1 ||
             inet_pton(AF_INET6, host.c_str(), buffer.data()) == 1);
  FUZZ_CHECK(input.find(host) != std::string_view::npos);
  unsigned number = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
  FUZZ_CHECK(ec == std::errc{} && end == port.data() + port.size());
  FUZZ_CHECK(number >= 1 && number <= 65535);
}

void check_name(Rdata rdata) {
  const auto name = dns::wire::name(rdata);
  if (!name) {
    FUZZ_CHECK(fuzz::one_line(name.error()));
    return;
  }
  // The name fills the RDATA exactly and ends with the root label.
  FUZZ_CHECK(!rdata.empty() && rdata.size() <= 255 && rdata.back() == 0);
  FUZZ_CHECK(is_name_text(*name));
}

void check_txt(Rdata rdata) {
  const auto txt = dns::wire::txt(rdata);
  if (!txt) {
    FUZZ_CHECK(fuzz::one_line(txt.error()));
    return;
  }
  // STS-08: the strings concatenated. At least one length byte is not text, and each length
  // byte carries at most 255 octets.
  FUZZ_CHECK(txt->size() < rdata.size());
  const std::size_t length_bytes = rdata.size() - txt->size();
  FUZZ_CHECK(length_bytes * 255 >= txt->size());
}

void check_mx(Rdata rdata) {
  const auto mx = dns::wire::mx(rdata);
  if (!mx) {
    FUZZ_CHECK(fuzz::one_line(mx.error()));
    FUZZ_CHECK(mx.error().starts_with("MX record of") || mx.error().starts_with("exchange: "));
    return;
  }
  FUZZ_CHECK(rdata.size() >= 3);
  FUZZ_CHECK(mx->preference == ((rdata[0] << 8) | rdata[1]));
  FUZZ_CHECK(is_name_text(mx->host));
  FUZZ_CHECK(mx->host.find('\0') == std::string::npos);
  const auto host = dns::wire::name(rdata.subspan(2));
  FUZZ_CHECK(host && *host == mx->host);
}

void check_address(Rdata rdata, bool v6) {
  const auto address = v6 ? dns::wire::aaaa(rdata) : dns::wire::a(rdata);
  const std::size_t size = v6 ? 16 : 4;
  FUZZ_CHECK(address.has_value() == (rdata.size() == size));
  if (!address) {
    FUZZ_CHECK(fuzz::one_line(address.error()));
    return;
  }
  // The text reads back as the same octets.
  std::array<unsigned char, sizeof(in6_addr)> buffer{};
  FUZZ_CHECK(inet_pton(v6 ? AF_INET6 : AF_INET, address->c_str(), buffer.data()) == 1);
  FUZZ_CHECK(std::memcmp(buffer.data(), rdata.data(), size) == 0);
}

void check_tlsa(Rdata rdata) {
  const auto tlsa = dns::wire::tlsa(rdata);
  FUZZ_CHECK(tlsa.has_value() == (rdata.size() >= 4));
  if (!tlsa) {
    FUZZ_CHECK(fuzz::one_line(tlsa.error()));
    return;
  }
  FUZZ_CHECK(tlsa->usage == rdata[0] && tlsa->selector == rdata[1] &&
             tlsa->matching_type == rdata[2]);
  FUZZ_CHECK(std::ranges::equal(tlsa->data, rdata.subspan(3)));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const Rdata rdata(data + 1, size - 1);
  switch (data[0] % 8) {
    case 0:
      check_forwarder_spec(fuzz::as_text(rdata.data(), rdata.size()));
      break;
    case 1:
      check_name(rdata);
      break;
    case 2:
      check_txt(rdata);
      break;
    case 3:
      check_mx(rdata);
      break;
    case 4:
      check_address(rdata, false);
      break;
    case 5:
      check_address(rdata, true);
      break;
    case 6:
      check_tlsa(rdata);
      break;
    default:
      check_forwarder_spec(fuzz::as_text(rdata.data(), rdata.size()));
      check_name(rdata);
      check_txt(rdata);
      check_mx(rdata);
      check_address(rdata, false);
      check_address(rdata, true);
      check_tlsa(rdata);
      break;
  }
  return 0;
}
