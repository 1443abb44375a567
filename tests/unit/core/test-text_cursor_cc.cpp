// text::Cursor, the RFC 5234 character classes and the TXT record productions that the
// `_mta-sts` (RFC 8461 §3.1) and `_smtp._tls` (RFC 8460 §3) parsers share.
#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include "core/text_cursor.hpp"
#include "unit/row_name.hpp"

namespace mtasts::text {
namespace {

using namespace std::string_view_literals;

using test_support::row_name;

TEST(TextClasses, rfc5234_core_rules_are_ascii_only) {
  EXPECT_TRUE(is_wsp(' '));
  EXPECT_TRUE(is_wsp('\t'));
  EXPECT_FALSE(is_wsp('\n'));
  EXPECT_FALSE(is_wsp('\r'));
  EXPECT_TRUE(is_alnum('a') && is_alnum('Z') && is_alnum('0') && is_alnum('9'));
  EXPECT_FALSE(is_alnum('_') || is_alnum('-') || is_alnum('\xc3') || is_alnum('\0'));
  EXPECT_TRUE(is_hexdig('f') && is_hexdig('F') && is_hexdig('0'));
  EXPECT_FALSE(is_hexdig('g') || is_hexdig('G'));
  EXPECT_TRUE(is_name_char('_') && is_name_char('-') && is_name_char('.'));
  EXPECT_FALSE(is_name_char('=') || is_name_char(' ') || is_name_char(';'));
  // %x21-3A / %x3C / %x3E-7E: visible ASCII without "=" and ";".
  EXPECT_TRUE(is_ext_value_char('!') && is_ext_value_char(':') && is_ext_value_char('<') &&
              is_ext_value_char('>') && is_ext_value_char('~'));
  EXPECT_FALSE(is_ext_value_char('=') || is_ext_value_char(';') || is_ext_value_char(' ') ||
               is_ext_value_char('\x7f') || is_ext_value_char('\x80'));
  EXPECT_EQ(ascii_lower('Q'), 'q');
  EXPECT_EQ(ascii_lower('\xc4'), '\xc4');
  EXPECT_TRUE(is_ascii("v=STSv1; id=1"));
  EXPECT_FALSE(is_ascii("m\xc3\xbcnchen"));
  EXPECT_EQ(trim_wsp(" \t a b \t "), "a b");
  EXPECT_EQ(trim_wsp(" \t "), "");
}

TEST(TextCursor, steps_stop_at_the_end) {
  Cursor cursor("ab  ;c");
  EXPECT_EQ(cursor.pos(), 0U);
  EXPECT_TRUE(cursor.next_is('a'));
  EXPECT_FALSE(cursor.consume('b'));
  EXPECT_EQ(cursor.take_while(is_alpha), "ab");
  EXPECT_EQ(cursor.take_while(is_alpha), "");  // an empty run does not move
  cursor.skip_wsp();
  EXPECT_EQ(cursor.pos(), 4U);
  EXPECT_EQ(cursor.rest(), ";c");
  EXPECT_TRUE(cursor.consume(';'));
  EXPECT_TRUE(cursor.next_is(is_alpha));
  EXPECT_EQ(cursor.take_until(';'), "c");
  EXPECT_TRUE(cursor.at_end());
  EXPECT_FALSE(cursor.next_is('\0'));
  EXPECT_FALSE(cursor.next_is([](char) { return true; }));
  EXPECT_FALSE(cursor.consume('c'));
  EXPECT_EQ(cursor.rest(), "");

  Cursor past("abc", 10);  // a start past the end is the end
  EXPECT_TRUE(past.at_end());
  Cursor nul("a\0b"sv);  // NUL is a character like any other
  EXPECT_EQ(nul.take_until('\0'), "a");
  EXPECT_TRUE(nul.consume('\0'));
  EXPECT_EQ(nul.rest(), "b");
}

TEST(TextCursor, begins_with_version) {
  EXPECT_TRUE(begins_with_version("v=STSv1", "v=STSv1"));
  EXPECT_TRUE(begins_with_version("v=STSv1;id=1", "v=STSv1"));
  EXPECT_TRUE(begins_with_version("v=STSv1 ; id=1", "v=STSv1"));
  EXPECT_TRUE(begins_with_version("v=STSv1\tid", "v=STSv1"));
  EXPECT_FALSE(begins_with_version("v=STSv10; id=1", "v=STSv1"));
  EXPECT_FALSE(begins_with_version(" v=STSv1; id=1", "v=STSv1"));
  EXPECT_FALSE(begins_with_version("v=stsv1; id=1", "v=STSv1"));
  EXPECT_FALSE(begins_with_version("", "v=STSv1"));
}

TEST(TextCursor, version_problem) {
  EXPECT_EQ(version_problem("v=TLSRPTv1; rua=x", "v=TLSRPTv1"), std::nullopt);
  EXPECT_EQ(version_problem("v=TLSRPTv1", "v=TLSRPTv1"), std::nullopt);
  EXPECT_EQ(version_problem("v=STSv10", "v=STSv1"), std::nullopt);  // the field-delim's concern
  EXPECT_EQ(version_problem("v=STSv1; id=\xff", "v=STSv1"),
            R"(expected US-ASCII only, found a non-ASCII byte in "v=STSv1; id=\xff")");
  EXPECT_EQ(version_problem(" v=STSv1", "v=STSv1"),
            R"(expected the record to begin with "v=STSv1", found " v=STSv1")");
}

// One field-delim and ext-name "=" read from `rest`, then what follows.
struct FieldRow {
  const char* name;
  std::string rest;
  std::string field;  // "" at the end of the record
  std::string after;  // what is left after a name, or the error reason
  bool ok = true;
};

void PrintTo(const FieldRow& row, std::ostream* os) {
  *os << row.name;
}

const FieldRow kFieldRows[] = {
    {"STS-04 §3.1 end of record", "", "", ""},
    {"STS-04 §3.1 trailing delimiter", ";", "", ""},
    {"STS-04 §3.1 trailing WSP and delimiter", " \t; \t", "", ""},
    {"STS-04 txt-trailing-whitespace", "  ", "", ""},
    {"§3.1 sts-field-delim", "; id=abc", "id", "abc"},
    {"§6.1 WSP before the delimiter", " ;id=abc;", "id", "abc;"},
    {"§3.1 ext-name characters", ";a_b-c.9=1", "a_b-c.9", "1"},
    {"§3.1 ext-name of 32", ";" + std::string(32, 'n') + "=1", std::string(32, 'n'), "1"},
    {"§3.1 missing delimiter", " id=abc", "", R"(expected ";" between fields, found "id=abc")",
     false},
    {"§3.1 name starts with a letter or digit", "; _x=1", "",
     R"(expected a field name starting with a letter or digit, found "_x=1")", false},
    {"§3.1 ext-name of 33", ";" + std::string(33, 'n') + "=1", "",
     "expected a field name of at most 32 characters, found \"" + std::string(33, 'n') + "\"",
     false},
    {"§3.1 no \"=\" after the name", "; id =abc", "",
     R"(expected "=" after field name "id", found " =abc")", false},
    {"§3.1 name at the end", "; id", "", R"(expected "=" after field name "id", found "")", false},
};

class TxtReadFieldName : public testing::TestWithParam<FieldRow> {};

TEST_P(TxtReadFieldName, reads_one_delimiter_and_name) {
  const FieldRow& row = GetParam();
  Cursor cursor(row.rest);
  std::string_view name = "unset";
  const auto problem = read_field_name(cursor, name);
  if (!row.ok) {
    EXPECT_EQ(problem, row.after);
    EXPECT_EQ(name, "");
    return;
  }
  ASSERT_FALSE(problem) << *problem;
  EXPECT_EQ(name, row.field);
  EXPECT_EQ(cursor.rest(), row.after);
}

INSTANTIATE_TEST_SUITE_P(Rows, TxtReadFieldName, testing::ValuesIn(kFieldRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

TEST(TxtReadExtValue, visible_ascii_without_equals_and_semicolon) {
  Cursor cursor("a:b<c>~!; next");
  std::string_view value;
  EXPECT_EQ(read_ext_value(cursor, "x", value), std::nullopt);
  EXPECT_EQ(value, "a:b<c>~!");
  EXPECT_EQ(cursor.rest(), "; next");

  Cursor empty("; next");
  EXPECT_EQ(read_ext_value(empty, "id", value), R"(expected a value after "id=", found "; next")");
  Cursor at_end("");
  EXPECT_EQ(read_ext_value(at_end, "id", value), R"(expected a value after "id=", found "")");
}

}  // namespace
}  // namespace mtasts::text
