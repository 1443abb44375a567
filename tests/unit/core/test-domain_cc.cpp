// normalize_domain, check_ldh_hostname and is_same_or_subdomain (STS-30, STS-31, STS-51).
#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "core/domain.hpp"
#include "unit/row_name.hpp"

namespace mtasts {
namespace {

using test_support::row_name;

// An error row expects `category` and a reason containing `reason_part`.
struct DomainRow {
  const char* name;
  std::string_view input;
  std::optional<std::string_view> expected;  // nullopt: an error
  ErrorCategory category = ErrorCategory::invalid_domain;
  std::string_view reason_part = "";
};

void PrintTo(const DomainRow& row, std::ostream* os) {
  *os << row.name;
}

constexpr auto kInvalid = ErrorCategory::invalid_domain;
constexpr auto kLiteral = ErrorCategory::address_literal;

const std::string kLabel63(63, 'a');
const std::string kLabel64(64, 'a');
// 4 labels of 63 + 3 dots = 255 octets; 3 x 63 + 61 + 3 dots = 253.
const std::string kName253 =
    kLabel63 + "." + kLabel63 + "." + kLabel63 + "." + std::string(61, 'b');
const std::string kName254 =
    kLabel63 + "." + kLabel63 + "." + kLabel63 + "." + std::string(62, 'b');
const std::string kName63Label = kLabel63 + ".example";
const std::string kName64Label = kLabel64 + ".example";
const std::string kName253Dot = kName253 + ".";

const DomainRow kNormalizeRows[] = {
    {"STS-01 §3.1 plain domain unchanged", "example.com", "example.com"},
    {"STS-33 §4.1 ASCII upper-case folded", "MX1.Example.NET", "mx1.example.net"},
    {"§6.11 one trailing root dot stripped", "example.com.", "example.com"},
    {"§6.11 two trailing dots rejected", "example.com..", std::nullopt, kInvalid, "trailing dot"},
    {"STS-51 §3.2 U-label to A-label", "münchen.example", "xn--mnchen-3ya.example"},
    {"STS-51 §3.2 upper-case U-label mapped", "MÜNCHEN.EXAMPLE", "xn--mnchen-3ya.example"},
    {"STS-51 §3.2 U-label with trailing dot", "münchen.example.", "xn--mnchen-3ya.example"},
    {"STS-51 §3.2 A-label kept", "xn--mnchen-3ya.example", "xn--mnchen-3ya.example"},
    {"STS-51 §3.2 upper-case A-label folded", "XN--MNCHEN-3YA.EXAMPLE", "xn--mnchen-3ya.example"},
    {"STS-51 §3.2 nontransitional sharp s", "faß.de", "xn--fa-hia.de"},
    {"STS-51 §3.2 mixed U-label and R-LDH label", "r1---sn-abc.münchen.example",
     "r1---sn-abc.xn--mnchen-3ya.example"},
    {"STS-51 §3.2 invalid A-label rejected", "xn--abc.example", std::nullopt, kInvalid,
     "not a valid A-label"},
    {"STS-51 §3.2 A-label with trailing hyphen rejected", "xn--abc-.example", std::nullopt,
     kInvalid, "hyphen"},
    {"STS-51 §3.2 A-label of disallowed code point", "xn--ls8h.la", std::nullopt, kInvalid,
     "A-label"},
    {"STS-51 §3.2 disallowed U-label", "\xf0\x9f\x92\xa9.la", std::nullopt, kInvalid, "IDNA2008"},
    {"STS-51 §3.2 malformed UTF-8", "m\xfcnchen.example", std::nullopt, kInvalid, "IDNA2008"},
    {"STS-51 RFC 5321 hyphens inside a label are legal", "r1---sn-abc.example.com",
     "r1---sn-abc.example.com"},
    {"STS-51 RFC 5321 digits in labels", "123.example", "123.example"},
    {"STS-51 label of 63 octets", kName63Label, kName63Label},
    {"STS-51 label of 64 octets rejected", kName64Label, std::nullopt, kInvalid, "63 octets"},
    {"STS-51 name of 253 octets", kName253, kName253},
    {"STS-51 name of 253 octets plus root dot", kName253Dot, kName253},
    {"STS-51 name of 254 octets rejected", kName254, std::nullopt, kInvalid, "253 octets"},
    {"STS-51 empty rejected", "", std::nullopt, kInvalid, "empty"},
    {"STS-51 root dot alone rejected", ".", std::nullopt, kInvalid, "expected a domain"},
    {"STS-51 leading dot rejected", ".example.com", std::nullopt, kInvalid, "empty label"},
    {"STS-51 empty inner label rejected", "a..example", std::nullopt, kInvalid, "empty label"},
    {"STS-51 underscore rejected", "_mta-sts.example.com", std::nullopt, kInvalid,
     "letters, digits and hyphens"},
    {"STS-51 underscore inside label rejected", "mx_1.example.com", std::nullopt, kInvalid,
     "letters, digits and hyphens"},
    {"STS-51 leading hyphen rejected", "-mx.example.com", std::nullopt, kInvalid, "hyphen"},
    {"STS-51 trailing hyphen rejected", "mx-.example.com", std::nullopt, kInvalid, "hyphen"},
    {"STS-51 single label rejected", "localhost", std::nullopt, kInvalid, "two labels"},
    {"STS-51 all-numeric top label rejected", "example.123", std::nullopt, kInvalid, "all-numeric"},
    {"STS-51 space rejected", "exa mple.com", std::nullopt, kInvalid, "spaces"},
    {"STS-51 NUL rejected", std::string_view("a\0b.example", 11), std::nullopt, kInvalid,
     "control"},
    {"STS-51 wildcard is not a domain", "*.example.com", std::nullopt, kInvalid,
     "letters, digits and hyphens"},
    {"STS-30 §3.4 IPv4 address literal", "[192.0.2.1]", std::nullopt, kLiteral, "[192.0.2.1]"},
    {"STS-30 §3.4 IPv6 address literal", "[IPv6:2001:db8::1]", std::nullopt, kLiteral, "§3.4"},
    {"STS-30 §3.4 bare IPv4 text", "192.0.2.1", std::nullopt, kLiteral, "IP address"},
    {"STS-30 §3.4 bare IPv4 text with root dot", "192.0.2.1.", std::nullopt, kLiteral,
     "IP address"},
    {"STS-30 §3.4 bare IPv6 text", "2001:db8::1", std::nullopt, kLiteral, "IP address"},
    {"STS-30 §3.4 full-width digits map to IPv4", "\xef\xbc\x91\xef\xbc\x99\xef\xbc\x92.0.2.1",
     std::nullopt, kLiteral, "IP address"},
    {"STS-30 §3.4 unterminated literal", "[192.0.2.1", std::nullopt, kInvalid, "unterminated"},
    {"STS-30 colon in a name", "example.com:25", std::nullopt, kInvalid, "':'"},
};

class NormalizeDomainTest : public ::testing::TestWithParam<DomainRow> {};

TEST_P(NormalizeDomainTest, Normalizes) {
  const DomainRow& row = GetParam();
  const auto result = normalize_domain(row.input);
  if (row.expected) {
    ASSERT_TRUE(result.has_value()) << row.name << ": " << result.error().reason;
    EXPECT_EQ(*result, *row.expected) << row.name;
    // Normalization is idempotent.
    const auto again = normalize_domain(*result);
    ASSERT_TRUE(again.has_value()) << row.name;
    EXPECT_EQ(*again, *result) << row.name;
  } else {
    ASSERT_FALSE(result.has_value()) << row.name << ": got " << *result;
    EXPECT_EQ(result.error().category, row.category)
        << row.name << ": " << to_string(result.error().category) << ": " << result.error().reason;
    EXPECT_NE(result.error().reason.find(row.reason_part), std::string::npos)
        << row.name << ": " << result.error().reason;
    EXPECT_EQ(result.error().reason.find('\n'), std::string::npos) << row.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, NormalizeDomainTest, ::testing::ValuesIn(kNormalizeRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

const DomainRow kLdhRows[] = {
    {"STS-14 §3.2 LDH hostname lower-cased", "Mail.Example.COM", "mail.example.com"},
    {"STS-14 §3.2 A-label accepted", "mx.xn--mnchen-3ya.example", "mx.xn--mnchen-3ya.example"},
    {"STS-14 §3.2 U-label rejected", "mx.münchen.example", std::nullopt, kInvalid, "non-ASCII"},
    {"STS-14 §3.2 fake A-label rejected", "mx.xn--zz.example", std::nullopt, kInvalid, "A-label"},
    {"STS-14 §6.11 trailing dot rejected", "mail.example.com.", std::nullopt, kInvalid,
     "trailing dot"},
    {"STS-14 §3.2 single label rejected", "mail", std::nullopt, kInvalid, "two labels"},
    {"STS-14 §3.2 IPv4 text rejected", "192.0.2.1", std::nullopt, kInvalid, "all-numeric"},
    {"STS-14 §3.2 wildcard label rejected", "*.example.com", std::nullopt, kInvalid,
     "letters, digits and hyphens"},
    {"STS-14 §3.2 empty rejected", "", std::nullopt, kInvalid, "empty"},
};

// One row's verdict: the value it expects, or an error of its category naming its reason.
template <class Result>
void expect_row(const DomainRow& row, const Result& result) {
  if (row.expected) {
    ASSERT_TRUE(result.has_value()) << row.name << ": " << result.error().reason;
    EXPECT_EQ(*result, *row.expected) << row.name;
  } else {
    ASSERT_FALSE(result.has_value()) << row.name << ": got " << *result;
    EXPECT_EQ(result.error().category, row.category) << row.name;
    EXPECT_NE(result.error().reason.find(row.reason_part), std::string::npos)
        << row.name << ": " << result.error().reason;
  }
}

class LdhHostnameTest : public ::testing::TestWithParam<DomainRow> {};

TEST_P(LdhHostnameTest, Checks) {
  expect_row(GetParam(), check_ldh_hostname(GetParam().input));
}

INSTANTIATE_TEST_SUITE_P(Rows, LdhHostnameTest, ::testing::ValuesIn(kLdhRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

// The Domain of a policy mx value (RFC 8461 §3.2, RFC 5321 §4.1.2): one label is grammatical.
const DomainRow kMxDomainRows[] = {
    {"STS-14 §3.2 one label accepted (no public-suffix rule)", "COM", "com"},
    {"STS-14 §3.2 one-label A-label accepted", "xn--mnchen-3ya", "xn--mnchen-3ya"},
    {"STS-14 §3.2 hostname lower-cased", "Mail.Example.COM", "mail.example.com"},
    {"STS-14 §3.2 one all-numeric label rejected", "123", std::nullopt, kInvalid, "all-numeric"},
    {"STS-14 §3.2 IPv4 text rejected", "192.0.2.1", std::nullopt, kInvalid, "all-numeric"},
    {"STS-14 §6.11 trailing dot rejected", "com.", std::nullopt, kInvalid, "trailing dot"},
    {"STS-14 §3.2 leading hyphen rejected", "-com", std::nullopt, kInvalid, "hyphen"},
    {"STS-14 §3.2 underscore rejected", "c_m", std::nullopt, kInvalid,
     "letters, digits and hyphens"},
    {"STS-14 §3.2 64-octet label rejected",
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", std::nullopt, kInvalid,
     "longer than 63"},
    {"STS-14 §3.2 U-label rejected", "münchen", std::nullopt, kInvalid, "non-ASCII"},
    {"STS-14 §3.2 wildcard label rejected", "*.com", std::nullopt, kInvalid,
     "letters, digits and hyphens"},
    {"STS-14 §3.2 empty rejected", "", std::nullopt, kInvalid, "empty"},
};

class MxDomainTest : public ::testing::TestWithParam<DomainRow> {};

TEST_P(MxDomainTest, Checks) {
  expect_row(GetParam(), check_mx_domain(GetParam().input));
}

INSTANTIATE_TEST_SUITE_P(Rows, MxDomainTest, ::testing::ValuesIn(kMxDomainRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

TEST(MxDomain, AgreesWithTheHostnameCheckFromTwoLabelsOn) {
  for (const DomainRow& row : kLdhRows) {
    const auto ldh = check_ldh_hostname(row.input);
    const auto mx = check_mx_domain(row.input);
    if (ldh) {
      ASSERT_TRUE(mx.has_value()) << row.name;
      EXPECT_EQ(*mx, *ldh) << row.name;
    } else if (row.input.find('.') != std::string_view::npos) {
      EXPECT_FALSE(mx.has_value()) << row.name;
    }
  }
}

struct SubdomainRow {
  const char* name;
  std::string_view child;
  std::string_view parent;
  bool expected;
};

const SubdomainRow kSubdomainRows[] = {
    {"STS-31 §3.4 same domain", "example.com", "example.com", true},
    {"STS-31 §3.4 subdomain", "mail.example.com", "example.com", true},
    {"STS-31 §3.4 deep subdomain", "a.b.example.com", "example.com", true},
    {"STS-31 §3.4 parent is not a subdomain", "example.com", "mail.example.com", false},
    {"STS-31 §3.4 suffix without dot boundary", "badexample.com", "example.com", false},
    {"STS-31 §3.4 empty parent", "example.com", "", false},
    {"STS-31 §3.4 empty name", "", "example.com", false},
};

void PrintTo(const SubdomainRow& row, std::ostream* os) {
  *os << row.name;
}

class SubdomainTest : public ::testing::TestWithParam<SubdomainRow> {};

TEST_P(SubdomainTest, Compares) {
  const SubdomainRow& row = GetParam();
  EXPECT_EQ(is_same_or_subdomain(row.child, row.parent), row.expected) << row.name;
}

INSTANTIATE_TEST_SUITE_P(Rows, SubdomainTest, ::testing::ValuesIn(kSubdomainRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

}  // namespace
}  // namespace mtasts
