// The usage file mtastsd keeps beside the cache (core/usage_file.hpp): round trip, and every
// malformed line skipped with a reason.
#include "core/usage_file.hpp"

#include <gtest/gtest.h>

namespace mtasts {
namespace {

TEST(UsageFile, RoundTrip) {
  std::map<std::string, UsageRecord> records{
      {"enforce.example", {1'700'000'000, 1'699'999'000}},
      {"xn--mnchen-3ya.example", {1, 0}},
  };
  const std::string text = format_usage_file(records);
  EXPECT_EQ(text,
            "mtasts-usage 1\n"
            "enforce.example 1700000000 1699999000\n"
            "xn--mnchen-3ya.example 1 0\n");
  const ParsedUsage parsed = parse_usage_file(text);
  EXPECT_EQ(parsed.records, records);
  EXPECT_TRUE(parsed.problems.empty());
  EXPECT_EQ(parse_usage_file(format_usage_file({})).records.size(), 0u);
}

TEST(UsageFile, MalformedLinesAreSkipped) {
  const struct {
    const char* name;
    const char* line;
  } bad[] = {
      {"upper case", "Enforce.example 1 2"},
      {"not a hostname", "a..b 1 2"},
      {"one label", "localhost 1 2"},
      {"missing field", "enforce.example 1"},
      {"extra field", "enforce.example 1 2 3"},
      {"two spaces", "enforce.example  1 2"},
      {"negative time", "enforce.example -1 2"},
      {"not a number", "enforce.example 1x 2"},
      {"beyond 9999", "enforce.example 253402300800 2"},
      {"trailing blank", "enforce.example 1 2 "},
  };
  for (const auto& row : bad) {
    SCOPED_TRACE(row.name);
    const ParsedUsage parsed =
        parse_usage_file(std::string("mtasts-usage 1\n") + row.line + "\ngood.example 5 6\n");
    ASSERT_EQ(parsed.records.size(), 1u);
    EXPECT_EQ(parsed.records.at("good.example"), (UsageRecord{5, 6}));
    ASSERT_EQ(parsed.problems.size(), 1u);
    EXPECT_TRUE(parsed.problems[0].starts_with("line 2: ")) << parsed.problems[0];
  }
}

TEST(UsageFile, WrongHeaderOrEmptyYieldsNothing) {
  for (const char* text : {"", "mtasts-usage 2\ngood.example 1 2\n", "good.example 1 2\n"}) {
    const ParsedUsage parsed = parse_usage_file(text);
    EXPECT_TRUE(parsed.records.empty()) << text;
    EXPECT_EQ(parsed.problems.size(), 1u) << text;
  }
}

TEST(UsageFile, ProblemsAreBoundedAndQuoted) {
  std::string text = "mtasts-usage 1\n";
  for (int i = 0; i < 100; ++i) text += "junk\x01line\n";
  const ParsedUsage parsed = parse_usage_file(text);
  EXPECT_EQ(parsed.problems.size(), 5u);
  EXPECT_NE(parsed.problems[0].find("\\x01"), std::string::npos) << parsed.problems[0];
}

}  // namespace
}  // namespace mtasts
