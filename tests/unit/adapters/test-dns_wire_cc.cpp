// The DNS wire parsers (dns_wire.hpp): well-formed RDATA, then truncated, oversized and malformed
// RDATA, each an error value with its reason, never a crash. The bad rows also seed
// fuzz/corpus/fuzz_dns_wire/.
#include "adapters/dns/dns_wire.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace std::string_view_literals;
using namespace mtasts::dns;
using Bytes = std::vector<std::uint8_t>;

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

Bytes text(std::string_view value) {
  return Bytes(value.begin(), value.end());
}

Bytes repeat(std::size_t count, std::uint8_t octet) {
  return Bytes(count, octet);
}

// A wire-format name: each label with its length byte, then the root label.
Bytes wire_name(std::initializer_list<std::string_view> labels) {
  Bytes out;
  for (std::string_view label : labels) {
    out.push_back(static_cast<std::uint8_t>(label.size()));
    out.insert(out.end(), label.begin(), label.end());
  }
  out.push_back(0);
  return out;
}

// Labels of 63, 63, 63 and `last` octets: 1 + 63 + 1 + 63 + 1 + 63 + 1 + last + 1 octets in all.
Bytes long_name(std::size_t last) {
  const std::string big(63, 'a');
  const std::string tail(last, 'b');
  return wire_name({big, big, big, tail});
}

std::string long_name_text(std::size_t last) {
  const std::string big(63, 'a');
  return big + "." + big + "." + big + "." + std::string(last, 'b');
}

// For rows that expect an error: the reason must contain `error`.
template <class T>
void expect_error(const std::expected<T, std::string>& got, const std::string& error) {
  ASSERT_FALSE(got.has_value());
  EXPECT_NE(got.error().find(error), std::string::npos) << "reason: " << got.error();
  EXPECT_EQ(got.error().find('\n'), std::string::npos) << "reasons are one line";
}

// ---------------------------------------------------------------------------------------------

struct SpecRow {
  const char* name;
  std::string_view input;
  std::optional<std::string> spec;  // std::nullopt: an error containing `error`
  std::string error;
};

TEST(DnsWire, ForwarderSpec) {
  const std::vector<SpecRow> rows = {
      {"IPv4 alone gets port 53", "127.0.0.1", "127.0.0.1@53", ""},
      {"IPv4 with a port", "127.0.0.1:5353", "127.0.0.1@5353", ""},
      {"bracketed IPv6 with a port", "[::1]:5353", "::1@5353", ""},
      {"bracketed IPv6 alone gets port 53", "[2001:db8::1]", "2001:db8::1@53", ""},
      {"bare IPv6 gets port 53", "2001:db8::1", "2001:db8::1@53", ""},
      {"without brackets a trailing :N belongs to the IPv6 address", "2001:db8::1:53",
       "2001:db8::1:53@53", ""},
      {"port 65535 is the highest", "127.0.0.1:65535", "127.0.0.1@65535", ""},
      {"leading zeros in a port are its value", "127.0.0.1:0053", "127.0.0.1@53", ""},
      {"empty address", "", std::nullopt, "empty server address"},
      {"a host name is not an address", "example.net", std::nullopt,
       "\"example.net\" is not an IPv4 or IPv6 address"},
      {"empty port after ':'", "127.0.0.1:", std::nullopt, "empty port after ':'"},
      {"port 0", "127.0.0.1:0", std::nullopt, "port \"0\" is not a number from 1 to 65535"},
      {"port 65536", "127.0.0.1:65536", std::nullopt, "is not a number from 1 to 65535"},
      {"oversized port does not wrap", "127.0.0.1:4294967349", std::nullopt,
       "is not a number from 1 to 65535"},
      {"oversized port overflows unsigned", "127.0.0.1:99999999999999999999", std::nullopt,
       "is not a number from 1 to 65535"},
      {"trailing garbage after the port", "127.0.0.1:53x", std::nullopt,
       "is not a number from 1 to 65535"},
      {"a sign is not a port", "127.0.0.1:+53", std::nullopt, "is not a number from 1 to 65535"},
      {"'[' without ']'", "[::1", std::nullopt, "missing ']'"},
      {"']' not followed by ':'", "[::1]5353", std::nullopt, "expected ':PORT' after ']'"},
      {"empty port after ']:'", "[::1]:", std::nullopt, "empty port after ':'"},
      {"empty brackets", "[]", std::nullopt, "\"\" is not an IPv4 or IPv6 address"},
      {"brackets around IPv4", "[127.0.0.1]:53", std::nullopt,
       "brackets are for IPv6 addresses only"},
      // Bug fixed with the move to dns_wire.cpp: inet_pton stopped at the NUL and accepted the
      // address, and libunbound, reading "127.0.0.1\0@5353" as a C string, asked port 53.
      {"a NUL byte is refused, not cut short by inet_pton", "127.0.0.1\0:5353"sv, std::nullopt,
       "NUL byte in the server address"},
      {"a NUL byte inside brackets is refused", "[::1\0]:53"sv, std::nullopt,
       "NUL byte in the server address"},
  };
  for (const SpecRow& row : rows) {
    SCOPED_TRACE(row.name);
    const auto spec = wire::forwarder_spec(row.input);
    if (row.spec) {
      ASSERT_TRUE(spec.has_value()) << spec.error();
      EXPECT_EQ(*spec, *row.spec);
    } else {
      expect_error(spec, row.error);
    }
  }
}

// ---------------------------------------------------------------------------------------------

struct TextRow {
  const char* name;
  Bytes rdata;
  std::optional<std::string> value;  // std::nullopt: an error containing `error`
  std::string error;
};

TEST(DnsWire, Name) {
  const std::vector<TextRow> rows = {
      {"RFC 1035 §3.1 the root is the empty name", {0}, "", ""},
      {"labels are lower-cased and joined by dots", wire_name({"MX1", "Example", "NET"}),
       "mx1.example.net", ""},
      {"RFC 1035 §2.3.4 a 63-octet label is accepted", wire_name({std::string(63, 'x')}),
       std::string(63, 'x'), ""},
      {"RFC 1035 §2.3.4 a name of exactly 255 octets is accepted", long_name(61),
       long_name_text(61), ""},
      {"'.' and '\\' inside a label are escaped, so they cannot fake a label boundary",
       {3, 'a', '.', '\\', 0},
       "a\\046\\092",
       ""},
      {"NUL, space, DEL, high and control octets are escaped",
       {5, 0x00, ' ', 0x7F, 0xFF, 0x01, 0},
       "\\000\\032\\127\\255\\001",
       ""},
      {"truncated: empty RDATA", {}, std::nullopt, "name runs past the end of the record"},
      {"truncated: no root label", {1, 'a'}, std::nullopt, "name runs past the end of the record"},
      {"truncated: a label one octet short",
       {3, 'a', 'b'},
       std::nullopt,
       "label of 3 octets runs past the end of the record"},
      {"truncated: a 63-octet label with 62 octets left", cat({{63}, repeat(62, 'a')}),
       std::nullopt, "label of 63 octets runs past the end of the record"},
      {"oversized: RFC 1035 §2.3.4 a name of 256 octets is refused", long_name(62), std::nullopt,
       "name longer than 255 octets"},
      {"oversized: RFC 1035 §4.1.4 a compression pointer is refused in RDATA",
       {0xC0, 0x0C},
       std::nullopt,
       "compression pointer in RDATA name"},
      {"malformed: label type 0x40 (RFC 6891 extended label) is refused",
       {0x40},
       std::nullopt,
       "label length byte 0x40"},
      {"malformed: label type 0x80 (reserved) is refused", cat({{0x80}, repeat(0x80, 'a'), {0}}),
       std::nullopt, "label length byte 0x80"},
      {"malformed: stray octets after the root label",
       {0, 'x'},
       std::nullopt,
       "1 stray octets after the name"},
  };
  for (const TextRow& row : rows) {
    SCOPED_TRACE(row.name);
    const auto name = wire::name(row.rdata);
    if (row.value) {
      ASSERT_TRUE(name.has_value()) << name.error();
      EXPECT_EQ(*name, *row.value);
    } else {
      expect_error(name, row.error);
    }
  }
}

TEST(DnsWire, Txt) {
  const std::vector<TextRow> rows = {
      {"STS-08 character-strings are concatenated with nothing between them",
       cat({{9}, text("v=STSv1; "), {4}, text("id=1")}), "v=STSv1; id=1", ""},
      {"an empty character-string is an empty text", {0}, "", ""},
      {"several empty character-strings are an empty text", {0, 0, 0}, "", ""},
      {"an empty character-string at the end adds nothing", {1, 'a', 0}, "a", ""},
      {"a full 255-octet character-string", cat({{255}, repeat(255, 'x')}), std::string(255, 'x'),
       ""},
      {"oversized: four 255-octet strings give one 1020-octet text",
       cat({{255},
            repeat(255, 'a'),
            {255},
            repeat(255, 'b'),
            {255},
            repeat(255, 'c'),
            {255},
            repeat(255, 'd')}),
       std::string(255, 'a') + std::string(255, 'b') + std::string(255, 'c') +
           std::string(255, 'd'),
       ""},
      {"octets are kept as they are, NUL included (the STS parser judges them)",
       {3, 'a', 0, 0xFF},
       std::string("a\0\xFF", 3),
       ""},
      {"RFC 1035 §3.3.14 a TXT record without a character-string is refused",
       {},
       std::nullopt,
       "TXT record without a character-string"},
      {"truncated: length 5 with 2 octets left",
       {5, 'a', 'b'},
       std::nullopt,
       "character-string of 5 octets at offset 0 runs past the end of the record"},
      {"truncated: the second character-string",
       {1, 'a', 3, 'b'},
       std::nullopt,
       "character-string of 3 octets at offset 2 runs past the end of the record"},
      {"truncated: length 255 and nothing after it",
       {255},
       std::nullopt,
       "character-string of 255 octets at offset 0 runs past the end of the record"},
      {"truncated: a 255-octet string one octet short", cat({{255}, repeat(254, 'x')}),
       std::nullopt, "character-string of 255 octets at offset 0"},
  };
  for (const TextRow& row : rows) {
    SCOPED_TRACE(row.name);
    const auto txt = wire::txt(row.rdata);
    if (row.value) {
      ASSERT_TRUE(txt.has_value()) << txt.error();
      EXPECT_EQ(*txt, *row.value);
      EXPECT_LT(txt->size(), row.rdata.size()) << "at least one length byte is not text";
    } else {
      expect_error(txt, row.error);
    }
  }
}

// ---------------------------------------------------------------------------------------------

struct MxRow {
  const char* name;
  Bytes rdata;
  std::optional<wire::Mx> value;  // std::nullopt: an error containing `error`
  std::string error;
};

TEST(DnsWire, Mx) {
  const std::vector<MxRow> rows = {
      {"RFC 1035 §3.3.9 preference, then the exchange lower-cased",
       cat({{0, 10}, wire_name({"MX1", "Example", "Net"})}), wire::Mx{10, "mx1.example.net"}, ""},
      {"RFC 7505 null MX: the root name", {0, 0, 0}, wire::Mx{0, ""}, ""},
      {"the preference is big-endian", {1, 2, 1, 'a', 0}, wire::Mx{258, "a"}, ""},
      {"the highest preference", {0xFF, 0xFF, 0}, wire::Mx{65535, ""}, ""},
      {"an exchange of exactly 255 octets", cat({{0, 1}, long_name(61)}),
       wire::Mx{1, long_name_text(61)}, ""},
      {"truncated: empty", {}, std::nullopt, "MX record of 0 octets is too short"},
      {"truncated: half a preference", {0}, std::nullopt, "MX record of 1 octets is too short"},
      {"truncated: a preference and no exchange",
       {0, 10},
       std::nullopt,
       "MX record of 2 octets is too short"},
      {"truncated: a label past the end",
       {0, 10, 3, 'm', 'x'},
       std::nullopt,
       "exchange: label of 3 octets runs past the end of the record"},
      {"truncated: no root label",
       {0, 10, 2, 'm', 'x'},
       std::nullopt,
       "exchange: name runs past the end of the record"},
      {"oversized: an exchange of 256 octets", cat({{0, 10}, long_name(62)}), std::nullopt,
       "exchange: name longer than 255 octets"},
      {"oversized: five 63-octet labels",
       cat({{0, 10},
            wire_name({std::string(63, 'a'), std::string(63, 'a'), std::string(63, 'a'),
                       std::string(63, 'a'), std::string(63, 'a')})}),
       std::nullopt, "exchange: name longer than 255 octets"},
      {"malformed: RFC 1035 §4.1.4 a compression pointer",
       {0, 10, 0xC0, 0x0C},
       std::nullopt,
       "exchange: compression pointer in RDATA name"},
      {"malformed: a label length byte over 63",
       {0, 10, 64},
       std::nullopt,
       "exchange: label length byte 0x40"},
      {"malformed: stray octets after the exchange",
       {0, 10, 1, 'a', 0, 'x'},
       std::nullopt,
       "exchange: 1 stray octets after the name"},
  };
  for (const MxRow& row : rows) {
    SCOPED_TRACE(row.name);
    const auto mx = wire::mx(row.rdata);
    if (row.value) {
      ASSERT_TRUE(mx.has_value()) << mx.error();
      EXPECT_EQ(mx->preference, row.value->preference);
      EXPECT_EQ(mx->host, row.value->host);
    } else {
      expect_error(mx, row.error);
    }
  }
}

// ---------------------------------------------------------------------------------------------

struct AddressRow {
  const char* name;
  bool v6;
  Bytes rdata;
  std::optional<std::string> value;  // std::nullopt: an error containing `error`
  std::string error;
};

TEST(DnsWire, Addresses) {
  const Bytes v6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  const std::vector<AddressRow> rows = {
      {"RFC 1035 §3.4.1 A is four octets", false, {192, 0, 2, 1}, "192.0.2.1", ""},
      {"RFC 3596 §2.2 AAAA is sixteen octets", true, v6, "2001:db8::1", ""},
      {"an IPv4-mapped AAAA keeps its form",
       true,
       {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 1},
       "::ffff:192.0.2.1",
       ""},
      {"truncated: empty A", false, {}, std::nullopt, "address of 0 octets, expected 4"},
      {"truncated: A of three octets",
       false,
       {1, 2, 3},
       std::nullopt,
       "address of 3 octets, expected 4"},
      {"oversized: A of five octets",
       false,
       {1, 2, 3, 4, 5},
       std::nullopt,
       "address of 5 octets, expected 4"},
      {"oversized: an AAAA's sixteen octets as an A", false, v6, std::nullopt,
       "address of 16 octets, expected 4"},
      {"truncated: an A's four octets as an AAAA",
       true,
       {1, 2, 3, 4},
       std::nullopt,
       "address of 4 octets, expected 16"},
      {"truncated: AAAA of fifteen octets", true, repeat(15, 1), std::nullopt,
       "address of 15 octets, expected 16"},
      {"oversized: AAAA of seventeen octets", true, repeat(17, 1), std::nullopt,
       "address of 17 octets, expected 16"},
  };
  for (const AddressRow& row : rows) {
    SCOPED_TRACE(row.name);
    const auto address = row.v6 ? wire::aaaa(row.rdata) : wire::a(row.rdata);
    if (row.value) {
      ASSERT_TRUE(address.has_value()) << address.error();
      EXPECT_EQ(*address, *row.value);
    } else {
      expect_error(address, row.error);
    }
  }
}

// ---------------------------------------------------------------------------------------------

struct TlsaRow {
  const char* name;
  Bytes rdata;
  std::optional<wire::Tlsa> value;  // std::nullopt: an error containing `error`
  std::string error;
};

TEST(DnsWire, Tlsa) {
  const std::vector<TlsaRow> rows = {
      {"RFC 6698 §2.1 usage, selector, matching type, then the data",
       {3, 1, 1, 0xAB, 0xCD},
       wire::Tlsa{3, 1, 1, {0xAB, 0xCD}},
       ""},
      {"one octet of data is enough", {2, 0, 0, 0}, wire::Tlsa{2, 0, 0, {0}}, ""},
      {"unknown field values are kept for DANE to judge",
       {255, 255, 255, 1},
       wire::Tlsa{255, 255, 255, {1}},
       ""},
      {"oversized: 4096 octets of data are kept whole", cat({{3, 0, 0}, repeat(4096, 0x5A)}),
       wire::Tlsa{3, 0, 0, repeat(4096, 0x5A)}, ""},
      {"truncated: empty", {}, std::nullopt, "TLSA record of 0 octets is too short"},
      {"truncated: usage only", {3}, std::nullopt, "TLSA record of 1 octets is too short"},
      {"truncated: the three fields without data",
       {3, 1, 1},
       std::nullopt,
       "TLSA record of 3 octets is too short"},
  };
  for (const TlsaRow& row : rows) {
    SCOPED_TRACE(row.name);
    const auto tlsa = wire::tlsa(row.rdata);
    if (row.value) {
      ASSERT_TRUE(tlsa.has_value()) << tlsa.error();
      EXPECT_EQ(tlsa->usage, row.value->usage);
      EXPECT_EQ(tlsa->selector, row.value->selector);
      EXPECT_EQ(tlsa->matching_type, row.value->matching_type);
      EXPECT_EQ(tlsa->data, row.value->data);
    } else {
      expect_error(tlsa, row.error);
    }
  }
}

}  // namespace
