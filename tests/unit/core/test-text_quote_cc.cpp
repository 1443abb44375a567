// quote_input: bounded, escaped quoting of untrusted input for error reasons (style.md §2.2).
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <string_view>

#include "core/text_quote.hpp"
#include "unit/row_name.hpp"

namespace mtasts {
namespace {

using namespace std::string_view_literals;

struct QuoteRow {
  const char* name;
  std::string_view input;
  std::size_t max_bytes;
  std::string_view expected;
};

const QuoteRow kQuoteRows[] = {
    {"style §2.2 plain text is quoted", "v=STSv1; id=abc", 100, R"("v=STSv1; id=abc")"},
    {"style §2.2 empty input", "", 100, R"("")"},
    {"style §2.2 LF CR TAB escaped", "a\nb\rc\td", 100, R"("a\nb\rc\td")"},
    {"style §2.2 NUL and DEL escaped", "a\0b\x7f"sv, 100, R"("a\x00b\x7f")"},
    {"style §2.2 non-ASCII bytes escaped", "m\xc3\xbcnchen", 100, R"("m\xc3\xbcnchen")"},
    {"style §2.2 quote and backslash escaped", R"(a"b\c)", 100, R"("a\"b\\c")"},
    {"style §2.2 cut at max bytes", "abcdefgh", 4, R"("abcd"...)"},
    {"style §2.2 exactly max bytes is not cut", "abcd", 4, R"("abcd")"},
    {"style §2.2 cut counts input bytes not escapes", "\n\n\n\n\n", 2, R"("\n\n"...)"},
};

void PrintTo(const QuoteRow& row, std::ostream* os) {
  *os << row.name;
}

using test_support::row_name;

class QuoteInputTest : public ::testing::TestWithParam<QuoteRow> {};

TEST_P(QuoteInputTest, Quotes) {
  const QuoteRow& row = GetParam();
  EXPECT_EQ(quote_input(row.input, row.max_bytes), row.expected) << row.name;
}

INSTANTIATE_TEST_SUITE_P(Rows, QuoteInputTest, ::testing::ValuesIn(kQuoteRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

TEST(QuoteInput, DefaultBoundIsAbout100Bytes) {
  const std::string long_input(500, 'x');
  const std::string quoted = quote_input(long_input);
  EXPECT_EQ(quoted, "\"" + std::string(100, 'x') + "\"...");
}

TEST(QuoteInput, OutputIsOneLineOfPrintableAscii) {
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte.push_back(static_cast<char>(b));
  const std::string quoted = quote_input(every_byte, 1000);
  for (const unsigned char c : quoted) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "byte " << static_cast<int>(c);
  }
}

}  // namespace
}  // namespace mtasts
