// parse_tlsrpt_record / select_tlsrpt_record: the `_smtp._tls` TXT record (RFC 8460 §3).
#include <gtest/gtest.h>

#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "core/tlsrpt_record.hpp"
#include "unit/row_name.hpp"

namespace mtasts {
namespace {

using test_support::row_name;

using Uris = std::vector<std::string>;

struct RecordRow {
  const char* name;
  std::string_view record;
  std::optional<Uris> rua;  // nullopt: record_syntax
  std::string_view reason_part = "";
};

void PrintTo(const RecordRow& row, std::ostream* os) {
  *os << row.name;
}

const RecordRow kRecordRows[] = {
    {"RPT-02 §3.1.1 mailto example", "v=TLSRPTv1;rua=mailto:reports@example.com",
     Uris{"mailto:reports@example.com"}},
    {"RPT-02 §3.1.2 https example", "v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt",
     Uris{"https://reporting.example.com/v1/tlsrpt"}},
    {"RPT-02 §3 version lower-case", "v=tlsrptv1; rua=mailto:r@example.com", std::nullopt,
     "begin with"},
    {"RPT-02 §3 version key upper-case", "V=TLSRPTv1; rua=mailto:r@example.com", std::nullopt,
     "begin with"},
    {"RPT-02 §3 leading space", " v=TLSRPTv1; rua=mailto:r@example.com", std::nullopt,
     "begin with"},
    {"RPT-02 §3 rua before version", "rua=mailto:r@example.com; v=TLSRPTv1", std::nullopt,
     "begin with"},
    {"RPT-02 §3 version with a suffix", "v=TLSRPTv10; rua=mailto:r@example.com", std::nullopt,
     "\";\" between fields"},
    {"RPT-02 §3 empty record", "", std::nullopt, "begin with"},
    {"RPT-03 §3 two endpoints", "v=TLSRPTv1; rua=mailto:a@x.example, https://r.x.example/v1",
     Uris{"mailto:a@x.example", "https://r.x.example/v1"}},
    {"RPT-03 §3 comma without spaces", "v=TLSRPTv1; rua=mailto:a@x.example,mailto:b@x.example",
     Uris{"mailto:a@x.example", "mailto:b@x.example"}},
    {"RPT-03 §3 tabs and spaces around comma",
     "v=TLSRPTv1; rua=mailto:a@x.example \t,\t mailto:b@x.example;",
     Uris{"mailto:a@x.example", "mailto:b@x.example"}},
    {"RPT-03 §3 percent-encoded comma is one address", "v=TLSRPTv1; rua=mailto:a%2Cb@x.example",
     Uris{"mailto:a,b@x.example"}},
    {"RPT-03 §3 percent-encoded semicolon and bang", "v=TLSRPTv1; rua=mailto:a%3bb%21c@x.example",
     Uris{"mailto:a;b!c@x.example"}},
    {"RPT-03 §3 https kept verbatim", "v=TLSRPTv1; rua=https://r.example/a%2Cb?x=1&y=%2F#f",
     Uris{"https://r.example/a%2Cb?x=1&y=%2F#f"}},
    {"RPT-03 §3 scheme case folded", "v=TLSRPTv1; rua=MAILTO:r@example.com,HTTPS://r.example/",
     Uris{"mailto:r@example.com", "https://r.example/"}},
    {"RPT-03 §3 mailto hfields dropped", "v=TLSRPTv1; rua=mailto:r@example.com?subject=x%20y",
     Uris{"mailto:r@example.com"}},
    {"RPT-03 §3 https with port and userinfo", "v=TLSRPTv1; rua=https://u@r.example:8443/p",
     Uris{"https://u@r.example:8443/p"}},
    {"RPT-03 §3 ftp alone is unusable", "v=TLSRPTv1; rua=ftp://r.example/", std::nullopt,
     "mailto: or https:"},
    {"RPT-03 §3 ftp skipped next to mailto", "v=TLSRPTv1; rua=ftp://r.example/,mailto:r@x.example",
     Uris{"mailto:r@x.example"}},
    {"RPT-03 §3 http is not https", "v=TLSRPTv1; rua=http://r.example/", std::nullopt,
     "mailto: or https:"},
    {"RPT-03 §3 https without host is unusable", "v=TLSRPTv1; rua=https:///path", std::nullopt,
     "mailto: or https:"},
    {"RPT-03 §3 https without slashes is unusable", "v=TLSRPTv1; rua=https:r.example", std::nullopt,
     "mailto: or https:"},
    {"RPT-03 §3 mailto without address is unusable", "v=TLSRPTv1; rua=mailto:", std::nullopt,
     "mailto: or https:"},
    {"RPT-03 §3 mailto without at sign is unusable", "v=TLSRPTv1; rua=mailto:reports", std::nullopt,
     "mailto: or https:"},
    {"RPT-03 §3 mailto decoding to a control character is unusable",
     "v=TLSRPTv1; rua=mailto:a%0Ab@x.example", std::nullopt, "mailto: or https:"},
    {"RPT-03 §3 mailto decoding to a space is unusable", "v=TLSRPTv1; rua=mailto:a%20b@x.example",
     std::nullopt, "mailto: or https:"},
    {"RPT-03 §3 bad percent-encoding", "v=TLSRPTv1; rua=mailto:a%2@x.example", std::nullopt,
     "two hex digits"},
    {"RPT-03 §3 bad percent-encoding at the end", "v=TLSRPTv1; rua=mailto:a@x.example%",
     std::nullopt, "two hex digits"},
    {"RPT-03 §3 raw bang must be encoded", "v=TLSRPTv1; rua=mailto:a!b@x.example", std::nullopt,
     "\";\" between fields"},
    {"RPT-03 §3 not a URI", "v=TLSRPTv1; rua=reports@example.com", std::nullopt, "scheme:"},
    {"RPT-03 §3 URI scheme starting with a digit", "v=TLSRPTv1; rua=1mailto:r@example.com",
     std::nullopt, "scheme:"},
    {"RPT-03 §3 empty rua", "v=TLSRPTv1; rua=", std::nullopt, "expected a URI"},
    {"RPT-03 §3 trailing comma", "v=TLSRPTv1; rua=mailto:r@example.com,", std::nullopt,
     "expected a URI"},
    {"RPT-03 §3 double comma", "v=TLSRPTv1; rua=mailto:a@x.example,,mailto:b@x.example",
     std::nullopt, "expected a URI"},
    {"RPT-03 §3 space inside a URI", "v=TLSRPTv1; rua=mailto:a b@x.example", std::nullopt,
     "\";\" between fields"},
    {"RPT-03 §3 missing rua", "v=TLSRPTv1; foo=bar", std::nullopt, "\"rua=\""},
    {"RPT-03 §3 version alone", "v=TLSRPTv1", std::nullopt, "\"rua=\""},
    {"RPT-03 §3 rua key upper-case", "v=TLSRPTv1; RUA=mailto:r@example.com", std::nullopt,
     "\"rua=\""},
    {"RPT-03 §3 repeated rua: first wins",
     "v=TLSRPTv1; rua=mailto:a@x.example; rua=mailto:b@x.example", Uris{"mailto:a@x.example"}},
    {"RPT-03 §3 repeated rua: first unusable is not rescued",
     "v=TLSRPTv1; rua=ftp://x.example/; rua=mailto:b@x.example", std::nullopt, "mailto: or https:"},
    {"RPT-05 §3 multi-string concatenated",
     "v=TLSRPTv1; rua=mailto:rep"
     "orts@example.com",
     Uris{"mailto:reports@example.com"}},
    {"RPT-06 §3 unknown extension ignored", "v=TLSRPTv1; foo=bar; rua=mailto:r@example.com",
     Uris{"mailto:r@example.com"}},
    {"RPT-06 §3 extension after rua", "v=TLSRPTv1; rua=mailto:r@example.com; x.y-z_1=a:b/c;",
     Uris{"mailto:r@example.com"}},
    {"RPT-06 §3 extension with space in value", "v=TLSRPTv1; rua=mailto:r@example.com; foo=a b",
     std::nullopt, "\";\" between fields"},
    {"RPT-06 §3 extension with equals in value", "v=TLSRPTv1; rua=mailto:r@example.com; foo=a=b",
     std::nullopt, "\";\" between fields"},
    {"RPT-06 §3 extension with empty value", "v=TLSRPTv1; foo=; rua=mailto:r@example.com",
     std::nullopt, "value after \"foo=\""},
    {"RPT-06 §3 extension name starting with underscore",
     "v=TLSRPTv1; _foo=1; rua=mailto:r@example.com", std::nullopt, "field name"},
    {"RPT-06 §3 double semicolon", "v=TLSRPTv1;; rua=mailto:r@example.com", std::nullopt,
     "field name"},
    {"RPT-06 §3 space before semicolon", "v=TLSRPTv1 ; rua=mailto:r@example.com",
     Uris{"mailto:r@example.com"}},
    {"RPT-06 §3 trailing whitespace", "v=TLSRPTv1; rua=mailto:r@example.com  ",
     Uris{"mailto:r@example.com"}},
    {"RPT-06 §3 non-ASCII", "v=TLSRPTv1; rua=mailto:r@m\xc3\xbcnchen.example", std::nullopt,
     "US-ASCII"},
};

class ParseTlsrptRecordTest : public ::testing::TestWithParam<RecordRow> {};

TEST_P(ParseTlsrptRecordTest, Parses) {
  const RecordRow& row = GetParam();
  const auto result = parse_tlsrpt_record(row.record);
  if (row.rua) {
    ASSERT_TRUE(result.has_value()) << row.name << ": " << result.error().reason;
    EXPECT_EQ(result->rua, *row.rua) << row.name;
  } else {
    ASSERT_FALSE(result.has_value()) << row.name;
    EXPECT_EQ(result.error().category, ErrorCategory::record_syntax) << row.name;
    const std::string& reason = result.error().reason;
    EXPECT_NE(reason.find(row.reason_part), std::string::npos) << row.name << ": " << reason;
    EXPECT_NE(reason.find("expected"), std::string::npos) << row.name << ": " << reason;
    EXPECT_EQ(reason.find('\n'), std::string::npos) << row.name << ": " << reason;
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, ParseTlsrptRecordTest, ::testing::ValuesIn(kRecordRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

struct SelectRow {
  const char* name;
  std::vector<std::string> records;
  std::optional<Uris> rua;
  ErrorCategory category = ErrorCategory::record_syntax;
};

void PrintTo(const SelectRow& row, std::ostream* os) {
  *os << row.name;
}

const std::string kSpf = "v=spf1 -all";
const std::string kValid = "v=TLSRPTv1; rua=mailto:r@example.com";

const SelectRow kSelectRows[] = {
    {"RPT-04 §3 one valid record", {kValid}, Uris{"mailto:r@example.com"}},
    {"RPT-04 §3 no records", {}, std::nullopt, ErrorCategory::no_record},
    {"RPT-04 §3 only unrelated records", {kSpf}, std::nullopt, ErrorCategory::no_record},
    {"RPT-04 §3 two valid records",
     {kValid, "v=TLSRPTv1; rua=https://r.example/"},
     std::nullopt,
     ErrorCategory::multiple_records},
    {"RPT-04 §3 valid plus SPF", {kSpf, kValid}, Uris{"mailto:r@example.com"}},
    {"RPT-04 §3 valid plus other version",
     {"v=TLSRPTv2; rua=mailto:x@example.com", kValid},
     Uris{"mailto:r@example.com"}},
    {"RPT-04 §3 the one left is invalid", {kSpf, "v=TLSRPTv1; rua=ftp://x.example/"}, std::nullopt},
    {"RPT-04 §3 lower-case version is discarded",
     {"v=tlsrptv1; rua=mailto:x@example.com", kValid},
     Uris{"mailto:r@example.com"}},
    {"RPT-04 §3 space before semicolon counts",
     {"v=TLSRPTv1 ; rua=mailto:x@example.com", kValid},
     std::nullopt,
     ErrorCategory::multiple_records},
};

class SelectTlsrptRecordTest : public ::testing::TestWithParam<SelectRow> {};

TEST_P(SelectTlsrptRecordTest, Selects) {
  const SelectRow& row = GetParam();
  const auto result = select_tlsrpt_record(row.records);
  if (row.rua) {
    ASSERT_TRUE(result.has_value()) << row.name << ": " << result.error().reason;
    EXPECT_EQ(result->rua, *row.rua) << row.name;
  } else {
    ASSERT_FALSE(result.has_value()) << row.name;
    EXPECT_EQ(result.error().category, row.category)
        << row.name << ": " << to_string(result.error().category) << ": " << result.error().reason;
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, SelectTlsrptRecordTest, ::testing::ValuesIn(kSelectRows),
                         [](const auto& p) { return row_name(p.param.name, p.index); });

}  // namespace
}  // namespace mtasts
