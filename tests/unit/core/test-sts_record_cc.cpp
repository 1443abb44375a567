// parse_sts_record / select_sts_record: the `_mta-sts` TXT record (RFC 8461 §3.1).
#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "core/sts_record.hpp"
#include "unit/row_name.hpp"

namespace mtasts {
namespace {

using namespace std::string_view_literals;

using test_support::row_name;

struct RecordRow {
  const char* name;
  std::string_view record;
  std::optional<std::string_view> id;  // nullopt: record_syntax
  std::string_view reason_part = "";   // for errors: part of the expected reason
};

void PrintTo(const RecordRow& row, std::ostream* os) {
  *os << row.name;
}

const std::string kId32(32, 'a');
const std::string kRecordId32 = "v=STSv1; id=" + kId32;
const std::string kRecordId33 = "v=STSv1; id=" + std::string(33, 'a');
const std::string kRecordName32 = "v=STSv1; " + std::string(32, 'x') + "=1; id=abc";
const std::string kRecordName33 = "v=STSv1; " + std::string(33, 'x') + "=1; id=abc";

const RecordRow kRecordRows[] = {
    {"STS-02 §3.1 RFC example", "v=STSv1; id=20160831085700Z;", "20160831085700Z"},
    {"STS-02 §3.1 txt-id-before-version", "id=abc; v=STSv1", std::nullopt, "begin with"},
    {"STS-02 §3.1 txt-leading-space", " v=STSv1; id=abc", std::nullopt, "begin with"},
    {"STS-02 §3.1 txt-version-lowercase", "v=stsv1; id=abc", std::nullopt, "begin with"},
    {"STS-02 §3.1 txt-version-key-uppercase", "V=STSv1; id=abc", std::nullopt, "begin with"},
    {"STS-02 §3.1 version with a suffix", "v=STSv10; id=abc", std::nullopt, "\";\""},
    {"STS-02 §3.1 version alone", "v=STSv1", std::nullopt, "\"id=\""},
    {"STS-02 §3.1 version and delimiter alone", "v=STSv1;", std::nullopt, "\"id=\""},
    {"STS-02 §3.1 empty record", "", std::nullopt, "begin with"},
    {"STS-03 §3.1 txt-id-32-chars", kRecordId32, kId32},
    {"STS-03 §3.1 txt-id-33-chars", kRecordId33, std::nullopt, "1 to 32"},
    {"STS-03 §3.1 txt-id-with-hyphen", "v=STSv1; id=abc-def", std::nullopt, "1 to 32"},
    {"STS-03 §3.1 txt-id-with-underscore", "v=STSv1; id=abc_def", std::nullopt, "1 to 32"},
    {"STS-03 §3.1 txt-id-with-dot", "v=STSv1; id=abc.def", std::nullopt, "1 to 32"},
    {"STS-03 §3.1 txt-empty-id", "v=STSv1; id=", std::nullopt, "value after \"id=\""},
    {"STS-03 §3.1 txt-empty-id before another field", "v=STSv1; id=; x=1", std::nullopt,
     "value after"},
    {"STS-03 §3.1 txt-missing-id", "v=STSv1; foo=bar", std::nullopt, "\"id=\""},
    {"STS-03 §3.1 txt-id-key-uppercase", "v=STSv1; ID=abc", std::nullopt, "\"id=\""},
    {"STS-03 §3.1 id is a string, leading zeros kept", "v=STSv1; id=007", "007"},
    {"STS-03 §3.1 id case kept", "v=STSv1; id=AbC", "AbC"},
    {"STS-04 §3.1 txt-extension-field", "v=STSv1; id=abc; foo=bar", "abc"},
    {"STS-04 §3.1 extension before id", "v=STSv1; foo=bar; id=abc", "abc"},
    {"STS-04 §3.1 txt-fields-reordered", "v=STSv1; x.y-z_1=a:b/c; id=abc", "abc"},
    {"STS-04 §3.1 txt-no-spaces", "v=STSv1;id=abc", "abc"},
    {"STS-04 §3.1 txt-no-trailing-semicolon", "v=STSv1; id=abc", "abc"},
    {"STS-04 §3.1 trailing semicolon", "v=STSv1; id=abc;", "abc"},
    {"STS-04 §3.1 txt-trailing-whitespace after semicolon", "v=STSv1; id=abc; \t", "abc"},
    {"STS-04 §3.1 txt-trailing-whitespace without semicolon", "v=STSv1; id=abc  ", "abc"},
    {"STS-04 §3.1 tabs around delimiter", "v=STSv1\t;\tid=abc", "abc"},
    {"STS-04 §3.1 txt-extension-value-with-space", "v=STSv1; id=abc; foo=bar baz", std::nullopt,
     "\";\" between fields"},
    {"STS-04 §3.1 txt-double-semicolon", "v=STSv1;; id=abc", std::nullopt, "field name"},
    {"STS-04 §3.1 double semicolon at the end", "v=STSv1; id=abc;;", std::nullopt, "field name"},
    {"STS-04 §3.1 extension value with equals", "v=STSv1; id=abc; foo=a=b", std::nullopt,
     "\";\" between fields"},
    {"STS-04 §3.1 extension with empty value", "v=STSv1; foo=; id=abc", std::nullopt,
     "value after \"foo=\""},
    {"STS-04 §3.1 extension name of 32 characters", kRecordName32, "abc"},
    {"STS-04 §3.1 extension name of 33 characters", kRecordName33, std::nullopt, "32 characters"},
    {"STS-04 §3.1 extension name starting with underscore", "v=STSv1; _x=1; id=abc", std::nullopt,
     "field name"},
    {"STS-04 §3.1 extension name starting with hyphen", "v=STSv1; -x=1; id=abc", std::nullopt,
     "field name"},
    {"STS-04 §3.1 field without equals", "v=STSv1; id", std::nullopt, "\"=\" after field name"},
    {"STS-04 §3.1 space before equals", "v=STSv1; id =abc", std::nullopt, "\"=\" after"},
    {"STS-04 §3.1 space after equals", "v=STSv1; id= abc", std::nullopt, "value after"},
    {"STS-04 §3.1 control character in a value",
     "v=STSv1; id=abc; foo=a\x01"
     "b",
     std::nullopt, "\";\" between fields"},
    {"STS-05 §3.1 txt-non-ascii", "v=STSv1; id=abc; foo=caf\xc3\xa9", std::nullopt, "US-ASCII"},
    {"STS-05 §3.1 NUL byte", "v=STSv1; id=abc\0"sv, std::nullopt, "\";\" between fields"},
    {"STS-08 §3.1 txt-multi-string-concatenated",
     "v=STSv1; id="
     "abc",
     "abc"},
    {"STS-08 §3.1 txt-multi-string split inside a key",
     "v=STSv1; i"
     "d=abc",
     "abc"},
    {"STS-10 §3.2 txt-duplicate-id-first-wins", "v=STSv1; id=abc; id=def", "abc"},
    {"STS-10 §3.2 duplicate id, malformed later one ignored", "v=STSv1; id=abc; id=d-f", "abc"},
    {"STS-10 §3.2 duplicate v ignored", "v=STSv1; id=abc; v=STSv2", "abc"},
    {"§6.1 txt-space-before-semicolon-single", "v=STSv1 ; id=abc", "abc"},
    {"§6.1 txt-space-before-semicolon-tab", "v=STSv1\t; id=abc", "abc"},
    {"§6.1 whitespace before later semicolons", "v=STSv1; id=abc ; foo=bar ;", "abc"},
};

class ParseStsRecordTest : public ::testing::TestWithParam<RecordRow> {};

TEST_P(ParseStsRecordTest, Parses) {
  const RecordRow& row = GetParam();
  const auto result = parse_sts_record(row.record);
  if (row.id) {
    ASSERT_TRUE(result.has_value()) << row.name << ": " << result.error().reason;
    EXPECT_EQ(result->id, *row.id) << row.name;
  } else {
    ASSERT_FALSE(result.has_value()) << row.name << ": got id " << result->id;
    EXPECT_EQ(result.error().category, ErrorCategory::record_syntax) << row.name;
    const std::string& reason = result.error().reason;
    EXPECT_NE(reason.find(row.reason_part), std::string::npos) << row.name << ": " << reason;
    EXPECT_NE(reason.find("expected"), std::string::npos) << row.name << ": " << reason;
    EXPECT_EQ(reason.find('\n'), std::string::npos) << row.name << ": " << reason;
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, ParseStsRecordTest, ::testing::ValuesIn(kRecordRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

struct SelectRow {
  const char* name;
  std::vector<std::string> records;
  std::optional<std::string_view> id;
  ErrorCategory category = ErrorCategory::record_syntax;  // when id is nullopt
};

void PrintTo(const SelectRow& row, std::ostream* os) {
  *os << row.name;
}

const std::string kSpf = "v=spf1 -all";

const SelectRow kSelectRows[] = {
    {"STS-06 §3.1 one valid record", {"v=STSv1; id=abc"}, "abc"},
    {"STS-06 §3.1 no records", {}, std::nullopt, ErrorCategory::no_record},
    {"STS-06 §3.1 only unrelated records", {kSpf}, std::nullopt, ErrorCategory::no_record},
    {"STS-06 §3.1 txt-two-valid-records",
     {"v=STSv1; id=abc", "v=STSv1; id=def"},
     std::nullopt,
     ErrorCategory::multiple_records},
    {"STS-06 §3.1 two records, one invalid, still ambiguous",
     {"v=STSv1; id=abc", "v=STSv1; id=a-b"},
     std::nullopt,
     ErrorCategory::multiple_records},
    {"STS-06 §3.1 txt-valid-plus-unrelated-spf", {kSpf, "v=STSv1; id=abc"}, "abc"},
    {"STS-06 §3.1 txt-valid-plus-stsv2", {"v=STSv2; id=def", "v=STSv1; id=abc"}, "abc"},
    {"STS-06 §3.1 txt-valid-plus-stsv10", {"v=STSv10; id=def", "v=STSv1; id=abc"}, "abc"},
    {"STS-06 §3.1 the one left is invalid", {kSpf, "v=STSv1; id=a_b"}, std::nullopt},
    {"STS-06 §3.1 version-only record is discarded by the literal filter",
     {"v=STSv1", "v=STSv1; id=abc"},
     "abc"},
    {"STS-06 §3.1 version-only record alone is invalid", {"v=STSv1"}, std::nullopt},
    {"STS-06 §3.1 lower-case version is discarded", {"v=stsv1; id=def", "v=STSv1; id=abc"}, "abc"},
    {"§6.1 txt-space-before-semicolon-only-record", {"v=STSv1 ; id=abc"}, "abc"},
    {"§6.1 txt-space-before-semicolon-plus-valid: the literal filter drops it",
     {"v=STSv1 ; id=abc", "v=STSv1; id=def"},
     "def"},
    {"§6.1 space before semicolon next to an unrelated record is dropped",
     {kSpf, "v=STSv1 ; id=abc"},
     std::nullopt,
     ErrorCategory::no_record},
    {"§6.1 tab before semicolon alone", {"v=STSv1\t; id=abc"}, "abc"},
};

class SelectStsRecordTest : public ::testing::TestWithParam<SelectRow> {};

TEST_P(SelectStsRecordTest, Selects) {
  const SelectRow& row = GetParam();
  const auto result = select_sts_record(row.records);
  if (row.id) {
    ASSERT_TRUE(result.has_value()) << row.name << ": " << result.error().reason;
    EXPECT_EQ(result->id, *row.id) << row.name;
  } else {
    ASSERT_FALSE(result.has_value()) << row.name << ": got id " << result->id;
    EXPECT_EQ(result.error().category, row.category)
        << row.name << ": " << to_string(result.error().category) << ": " << result.error().reason;
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, SelectStsRecordTest, ::testing::ValuesIn(kSelectRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

TEST(StsRecordReason, QuotesTheOffendingInputBounded) {
  const std::string record = "v=STSv1; id=abc; foo=bar baz" + std::string(300, 'z');
  const auto result = parse_sts_record(record);
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().reason.find("\"baz"), std::string::npos) << result.error().reason;
  EXPECT_LT(result.error().reason.size(), 200u) << result.error().reason;
}

}  // namespace
}  // namespace mtasts
