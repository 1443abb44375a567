// mx_matches / mx_allowed: RFC 8461 §4.1 MX host validation (STS-33, STS-37, STS-51, §6.11).
#include <gtest/gtest.h>

#include <cctype>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "core/domain.hpp"
#include "core/mx_match.hpp"

namespace mtasts {
namespace {

std::string row_name(const char* name, std::size_t index) {
  std::string out = "r" + std::to_string(index) + "_";
  for (const unsigned char c : std::string_view(name)) {
    if (std::isalnum(c) != 0) {
      out.push_back(static_cast<char>(c));
    } else if (out.back() != '_') {
      out.push_back('_');
    }
  }
  while (out.back() == '_') out.pop_back();
  return out;
}

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
    {"STS-33 §4.1 host with a star label does not match a wildcard", "*.example.net",
     "*.example.net", false},
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
