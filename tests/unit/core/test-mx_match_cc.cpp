// mx_matches / mx_allowed / mx_host_name / mx_host_allowed: RFC 8461 §4.1 and Appendix B MX host
// validation (STS-33, STS-37, STS-51, §6.11), for every host an MX record can name (issue 10).
#include <gtest/gtest.h>

#include <algorithm>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "core/domain.hpp"
#include "core/mx_match.hpp"
#include "unit/row_name.hpp"

namespace mtasts {
namespace {

using test_support::row_name;

struct MatchRow {
  const char* name;
  std::string_view pattern;
  std::string_view host;
  bool expected;
};

void PrintTo(const MatchRow& row, std::ostream* os) {
  *os << row.name;
}

const MatchRow kMatchRows[] = {
    {"STS-33 §4.1 exact name", "mail.example.com", "mail.example.com", true},
    {"STS-33 §4.1 exact name is case-insensitive", "mail.example.com", "MAIL.Example.COM", true},
    {"STS-33 §4.1 pattern case-insensitive", "MAIL.EXAMPLE.COM", "mail.example.com", true},
    {"STS-33 §4.1 exact name does not match subdomain", "example.com", "mail.example.com", false},
    {"STS-33 §4.1 exact name does not match parent", "mail.example.com", "example.com", false},
    {"STS-33 §4.1 wildcard matches one label", "*.example.net", "mx.example.net", true},
    {"STS-33 §4.1 wildcard is one label", "*.example.net", "a.b.example.net", false},
    {"STS-33 §4.1 wildcard does not match the bare domain", "*.example.net", "example.net", false},
    {"STS-33 §4.1 wildcard label is never empty", "*.example.net", ".example.net", false},
    {"STS-33 §4.1 wildcard is case-insensitive", "*.example.net", "MX.EXAMPLE.NET", true},
    {"STS-33 §4.1 wildcard suffix must match on a label boundary", "*.example.net",
     "mx.badexample.net", false},
    {"STS-33 §4.1 wildcard suffix must match whole", "*.example.net", "mx.example.net.evil", false},
    {"STS-33 §4.1 unanchored match is not a match (design §6 Perl fault)", "mail.x", "xmail.x",
     false},
    {"STS-33 §4.1 dot is not a regex wildcard", "mail.example.com", "mailxexample.com", false},
    {"STS-33 §4.1 wildcard only in the left-most label", "mx.*.example.net", "mx.a.example.net",
     false},
    {"STS-33 §4.1 partial-label wildcard is not a wildcard", "mx*.example.net", "mx1.example.net",
     false},
    {"STS-33 §4.1 star alone matches nothing", "*", "example.net", false},
    {"STS-33 §4.1 star-dot alone matches nothing", "*.", "example.net", false},
    {"STS-33 App. B host equal to the pattern matches, even a star label", "*.example.net",
     "*.example.net", true},
    {"STS-33 §4.1 star host label is one label for a wildcard", "*.example.net", "*.a.example.net",
     false},
    {"STS-33 §4.1 star host does not match an exact pattern", "mx.example.net", "*.example.net",
     false},
    {"STS-33 §4.1 empty host", "*.example.net", "", false},
    {"STS-33 §4.1 empty pattern", "", "mx.example.net", false},
    {"§6.11 host root dot stripped, exact", "mail.example.com", "mail.example.com.", true},
    {"§6.11 host root dot stripped, wildcard", "*.example.net", "mx.example.net.", true},
    {"§6.11 host root dot alone", "*.example.net", ".", false},
    {"§6.11 only one host root dot stripped", "mail.example.com", "mail.example.com..", false},
    {"§6.11 pattern with trailing dot never matches", "mail.example.com.", "mail.example.com",
     false},
    {"STS-37 §4.2 other domain's MX does not match", "*.example.net", "mx1.example.com", false},
    {"STS-51 §3.2 A-label pattern, A-label host", "xn--mnchen-3ya.example",
     "xn--mnchen-3ya.example", true},
    {"STS-51 §3.2 A-label wildcard, upper-case A-label host", "*.xn--mnchen-3ya.example",
     "MX.XN--MNCHEN-3YA.EXAMPLE", true},
    {"STS-51 §3.2 U-label host is not compared as an A-label", "xn--mnchen-3ya.example",
     "münchen.example", false},
    {"STS-51 §3.2 U-label pattern never matches an A-label host", "münchen.example",
     "xn--mnchen-3ya.example", false},
    // Hosts that are not hostnames (issue 10): an MX record someone else published may name
    // anything, and RFC 8461 §4.1 / Appendix B define the match on any name. Never refused.
    {"STS-33 §4.1 wildcard matches an underscore label", "*.example.com", "mx_1.example.com", true},
    {"STS-33 §4.1 wildcard matches an upper-case underscore label with a root dot", "*.example.com",
     "MX_1.Example.COM.", true},
    {"STS-33 §4.1 exact pattern does not match an underscore label", "mx1.example.com",
     "mx_1.example.com", false},
    {"STS-33 App. B underscore host equal to the pattern matches", "mx_1.example.com",
     "MX_1.example.com", true},
    {"STS-33 §4.1 wildcard matches a leading-hyphen label", "*.example.com", "-mx.example.com",
     true},
    {"STS-33 §4.1 wildcard matches a trailing-hyphen label", "*.example.com", "mx-.example.com",
     true},
    {"STS-33 §4.1 exact pattern does not match a leading-hyphen label", "mx.example.com",
     "-mx.example.com", false},
    {"STS-33 §4.1 wildcard matches a 64-octet label", "*.example.com",
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example.com", true},
    {"STS-33 §4.1 64-octet label under a longer suffix is two labels", "*.com",
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example.com", false},
    {"STS-33 §4.1 wildcard label is never empty (leading dot)", "*.example.com", ".example.com",
     false},
    {"STS-33 §4.1 exact pattern does not match a leading dot", "example.com", ".example.com",
     false},
    {"STS-33 §4.1 empty inner label is not the suffix", "*.example.com", "mx..example.com", false},
    {"§6.11 only one root dot stripped, wildcard", "*.example.com", "mail.example.com..", false},
    {"§6.11 only one root dot stripped, one label", "com", "com..", false},
    {"STS-33 App. B one-label host equal to the pattern", "com", "COM.", true},
    {"STS-33 §4.1 one-label host never matches a wildcard", "*.com", "com", false},
    {"STS-33 §4.1 wildcard over a one-label suffix (no public-suffix rule)", "*.com", "example.com",
     true},
    {"STS-33 §4.1 wildcard over a one-label suffix is one label", "*.com", "mx.example.com", false},
    {"STS-33 §4.1 a space is just another octet of the label", "*.example.com", "mx 1.example.com",
     true},
    {"STS-33 §4.1 address literal matches no name pattern", "*.example.com", "[192.0.2.1]", false},
};

class MxMatchTest : public ::testing::TestWithParam<MatchRow> {};

TEST_P(MxMatchTest, Matches) {
  const MatchRow& row = GetParam();
  EXPECT_EQ(mx_matches(row.pattern, row.host), row.expected) << row.name;
  EXPECT_EQ(mx_allowed({std::string(row.pattern)}, row.host), row.expected) << row.name;
}

INSTANTIATE_TEST_SUITE_P(Rows, MxMatchTest, ::testing::ValuesIn(kMatchRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

// STS-51: hosts from an MTA are normalized first (U-label to A-label, root dot), then matched.
const MatchRow kNormalizedRows[] = {
    {"STS-51 §3.2 U-label host normalized then matched", "xn--mnchen-3ya.example",
     "münchen.example", true},
    {"STS-51 §3.2 upper-case U-label host normalized", "*.xn--mnchen-3ya.example",
     "MX.MÜNCHEN.EXAMPLE.", true},
    {"STS-51 §3.2 normalized U-label keeps the one-label rule", "*.xn--mnchen-3ya.example",
     "a.b.münchen.example", false},
};

class NormalizedMxMatchTest : public ::testing::TestWithParam<MatchRow> {};

TEST_P(NormalizedMxMatchTest, Matches) {
  const MatchRow& row = GetParam();
  const auto host = normalize_domain(row.host);
  ASSERT_TRUE(host.has_value()) << row.name << ": " << host.error().reason;
  EXPECT_EQ(mx_matches(row.pattern, *host), row.expected) << row.name;
}

INSTANTIATE_TEST_SUITE_P(Rows, NormalizedMxMatchTest, ::testing::ValuesIn(kNormalizedRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

// The getmta(D, H) path: mx_host_allowed normalizes H when it is a hostname (STS-51: U-labels
// become A-labels) and otherwise matches it lower-cased with one root dot stripped (issue 10).
const MatchRow kHostRows[] = {
    {"STS-51 §3.2 U-label host matches its A-label pattern", "xn--mnchen-3ya.example",
     "münchen.example", true},
    {"STS-51 §3.2 upper-case U-label host with a root dot", "*.xn--mnchen-3ya.example",
     "MX.MÜNCHEN.EXAMPLE.", true},
    {"STS-51 §3.2 normalized U-label host keeps the one-label rule", "*.xn--mnchen-3ya.example",
     "a.b.münchen.example", false},
    {"STS-51 §3.2 IDNA maps an ideographic full stop to a label dot", "*.example.net",
     "a\xe3\x80\x82"
     "b.example.net",
     false},
    {"STS-51 §3.2 a host that does not normalize keeps its U-labels (no A-label match)",
     "*.xn--mnchen-3ya.example", "mx_1.münchen.example", false},
    {"STS-33 §4.1 a host that does not normalize may be one label under a wildcard",
     "*.example.net", "ü_x.example.net", true},
    {"STS-33 §4.1 underscore label", "*.example.com", "mx_1.example.com", true},
    {"STS-33 §4.1 upper-case underscore label, root dot", "*.example.com", "MX_1.EXAMPLE.COM.",
     true},
    {"STS-33 §4.1 leading-hyphen label", "*.example.com", "-mx.example.com", true},
    {"STS-33 §4.1 trailing-hyphen label", "*.example.com", "mx-.example.com", true},
    {"STS-33 §4.1 64-octet label", "*.example.com",
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example.com", true},
    {"STS-33 §4.1 64-octet label is not the exact pattern", "mx.example.com",
     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example.com", false},
    {"STS-33 §4.1 leading dot", "*.example.com", ".example.com", false},
    {"§6.11 two root dots, exact", "mail.example.com", "mail.example.com..", false},
    {"§6.11 two root dots, wildcard", "*.example.com", "mail.example.com..", false},
    {"STS-33 App. B one-label host equal to the pattern", "com", "Com.", true},
    {"STS-33 §4.1 one-label host under a one-label wildcard", "*.com", "com", false},
    {"STS-33 App. B star host equal to the pattern", "*.example.com", "*.Example.COM", true},
    {"STS-33 §4.1 star host is not an exact host", "mx.example.com", "*.example.com", false},
    {"STS-33 §4.1 empty host", "*.example.com", "", false},
    {"STS-33 §4.1 root dot alone", "*.example.com", ".", false},
    {"STS-30 §3.4 address literal host", "*.example.com", "[192.0.2.1]", false},
};

class MxHostAllowedTest : public ::testing::TestWithParam<MatchRow> {};

TEST_P(MxHostAllowedTest, Matches) {
  const MatchRow& row = GetParam();
  EXPECT_EQ(mx_host_allowed({std::string(row.pattern)}, row.host), row.expected) << row.name;
}

INSTANTIATE_TEST_SUITE_P(Rows, MxHostAllowedTest, ::testing::ValuesIn(kHostRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

struct NameRow {
  const char* name;
  std::string_view host;
  std::string_view expected;
};

void PrintTo(const NameRow& row, std::ostream* os) {
  *os << row.name;
}

const NameRow kNameRows[] = {
    {"STS-51 §3.2 hostname normalized", "MX.Example.COM.", "mx.example.com"},
    {"STS-51 §3.2 U-label becomes an A-label", "MX.München.example", "mx.xn--mnchen-3ya.example"},
    {"§6.11 not a hostname: lower-cased, one root dot stripped", "MX_1.Example.COM.",
     "mx_1.example.com"},
    {"§6.11 not a hostname: only one root dot stripped", "Mail.Example.com..", "mail.example.com."},
    {"not a hostname: a star label kept", "*.Example.NET", "*.example.net"},
    {"not a hostname: one label", "COM", "com"},
    {"not a hostname: non-ASCII kept as sent, ASCII lower-cased", "ÄB_C.Example", "Äb_c.example"},
    {"not a hostname: empty", "", ""},
    {"not a hostname: the root dot alone", ".", ""},
    {"STS-30 §3.4 address literal kept", "[192.0.2.1]", "[192.0.2.1]"},
};

class MxHostNameTest : public ::testing::TestWithParam<NameRow> {};

TEST_P(MxHostNameTest, Name) {
  const NameRow& row = GetParam();
  EXPECT_EQ(mx_host_name(row.host), row.expected) << row.name;
}

INSTANTIATE_TEST_SUITE_P(Rows, MxHostNameTest, ::testing::ValuesIn(kNameRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

TEST(MxHostAllowed, MatchesLikeMxAllowedForAsciiRows) {
  // For ASCII hosts the getmta path and the literal matcher agree on every row above.
  for (const MatchRow& row : kMatchRows) {
    const bool ascii =
        std::ranges::all_of(row.host, [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (!ascii) continue;
    EXPECT_EQ(mx_host_allowed({std::string(row.pattern)}, row.host), row.expected) << row.name;
  }
}

TEST(MxAllowed, STS32AnyPatternSuffices) {
  const std::vector<std::string> patterns = {"mail.example.com", "*.example.net",
                                             "backupmx.example.com"};
  EXPECT_TRUE(mx_allowed(patterns, "mail.example.com"));
  EXPECT_TRUE(mx_allowed(patterns, "mx7.example.net"));
  EXPECT_TRUE(mx_allowed(patterns, "backupmx.example.com."));
  EXPECT_FALSE(mx_allowed(patterns, "example.net"));
  EXPECT_FALSE(mx_allowed(patterns, "mx.evil.example"));
}

TEST(MxAllowed, STS32NoPatternsAllowNothing) {
  EXPECT_FALSE(mx_allowed({}, "mail.example.com"));
}

}  // namespace
}  // namespace mtasts
