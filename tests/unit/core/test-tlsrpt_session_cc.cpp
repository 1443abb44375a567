// The TLSRPT session model (design §7): RFC 8460 names and libtlsrpt codes, the result type of
// mtasts's own policy failures, UTC days, IP text and report-safe text.
#include "core/tlsrpt_session.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mtasts::tlsrpt {
namespace {

TEST(TlsrptSession, policy_types_by_name_and_code) {
  EXPECT_EQ(to_string(PolicyType::tlsa), "tlsa");
  EXPECT_EQ(to_string(PolicyType::sts), "sts");
  EXPECT_EQ(to_string(PolicyType::no_policy_found), "no-policy-found");
  EXPECT_EQ(policy_type_from_code(1), PolicyType::tlsa);
  EXPECT_EQ(policy_type_from_code(2), PolicyType::sts);
  EXPECT_EQ(policy_type_from_code(9), PolicyType::no_policy_found);
  for (std::int64_t code : std::vector<std::int64_t>{0, 3, 8, 10, -1, 4294967298LL}) {
    SCOPED_TRACE(code);
    EXPECT_FALSE(policy_type_from_code(code).has_value());
  }
}

TEST(TlsrptSession, result_types_round_trip_by_name_and_code) {
  struct Row {
    ResultType type;
    std::int64_t code;
    const char* name;
  };
  const std::vector<Row> rows = {
      {ResultType::starttls_not_supported, 201, "starttls-not-supported"},
      {ResultType::certificate_host_mismatch, 202, "certificate-host-mismatch"},
      {ResultType::certificate_not_trusted, 203, "certificate-not-trusted"},
      {ResultType::certificate_expired, 204, "certificate-expired"},
      {ResultType::validation_failure, 205, "validation-failure"},
      {ResultType::sts_policy_fetch_error, 301, "sts-policy-fetch-error"},
      {ResultType::sts_policy_invalid, 302, "sts-policy-invalid"},
      {ResultType::sts_webpki_invalid, 303, "sts-webpki-invalid"},
      {ResultType::tlsa_invalid, 304, "tlsa-invalid"},
      {ResultType::dnssec_invalid, 305, "dnssec-invalid"},
      {ResultType::dane_required, 306, "dane-required"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    EXPECT_EQ(to_string(row.type), row.name);
    EXPECT_EQ(result_type_from_code(row.code), row.type);
    EXPECT_EQ(result_type_from_name(row.name), row.type);
  }
  for (std::int64_t code : {0, 200, 206, 300, 307, 901, 999}) {
    SCOPED_TRACE(code);
    EXPECT_FALSE(result_type_from_code(code).has_value());
  }
  // Names are the registry's, exactly: no case folding, no underscores.
  for (const char* name :
       {"", "STARTTLS-NOT-SUPPORTED", "starttls_not_supported", "ok", "starttls-not-supported "}) {
    SCOPED_TRACE(name);
    EXPECT_FALSE(result_type_from_name(name).has_value());
  }
}

TEST(TlsrptSession, result_type_of_error_categories) {
  EXPECT_EQ(result_type_of(ErrorCategory::fetch_failed), ResultType::sts_policy_fetch_error);
  EXPECT_EQ(result_type_of(ErrorCategory::webpki_invalid), ResultType::sts_webpki_invalid);
  EXPECT_EQ(result_type_of(ErrorCategory::policy_syntax), ResultType::sts_policy_invalid);
  for (ErrorCategory category :
       {ErrorCategory::invalid_domain, ErrorCategory::address_literal, ErrorCategory::no_record,
        ErrorCategory::multiple_records, ErrorCategory::record_syntax, ErrorCategory::dns_temporary,
        ErrorCategory::dns_bogus, ErrorCategory::store, ErrorCategory::config,
        ErrorCategory::session_report, ErrorCategory::internal}) {
    SCOPED_TRACE(to_string(category));
    EXPECT_FALSE(result_type_of(category).has_value());
  }
  EXPECT_EQ(to_string(ErrorCategory::session_report), "session_report");
}

TEST(TlsrptSession, days_format_and_parse) {
  using namespace std::chrono;
  const Day day = sys_days{year{2026} / December / 7};
  EXPECT_EQ(format_day(day), "2026-12-07");
  EXPECT_EQ(parse_day("2026-12-07"), day);
  EXPECT_EQ(format_day(sys_days{year{1970} / January / 1}), "1970-01-01");
  EXPECT_EQ(parse_day("2024-02-29"), sys_days{year{2024} / February / 29});
  EXPECT_EQ(parse_day("0001-01-01"), sys_days{year{1} / January / 1});
  EXPECT_EQ(format_day(*parse_day("0999-03-04")), "0999-03-04");
  for (const char* bad :
       {"", "2026-02-30", "2025-02-29", "2026-13-01", "2026-00-10", "2026-01-00", "2026-1-07",
        "26-12-07", "2026-12-7", "+2026-12-07", "2026-+1-07", "-026-12-07", "2026/12/07",
        "2026-12-07 ", " 2026-12-07", "2026-12-07T00", "２０２６-12-07", "2026-12-0a"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(parse_day(bad).has_value());
  }
}

TEST(TlsrptSession, day_of_unix_time_is_the_utc_day) {
  EXPECT_EQ(format_day(day_of(0)), "1970-01-01");
  EXPECT_EQ(format_day(day_of(86399)), "1970-01-01");
  EXPECT_EQ(format_day(day_of(86400)), "1970-01-02");
  // 2026-12-07T00:00:00Z = 1796601600.
  EXPECT_EQ(format_day(day_of(1796601600)), "2026-12-07");
  EXPECT_EQ(format_day(day_of(1796601600 - 1)), "2026-12-06");
  // Before the epoch the day still starts at midnight (floor, not truncation).
  EXPECT_EQ(format_day(day_of(-1)), "1969-12-31");
  EXPECT_EQ(format_day(day_of(-86400)), "1969-12-31");
  EXPECT_EQ(format_day(day_of(-86401)), "1969-12-30");
}

TEST(TlsrptSession, ip_text_is_normalized) {
  EXPECT_EQ(normalize_ip_text("192.0.2.1"), "192.0.2.1");
  EXPECT_EQ(normalize_ip_text("2001:DB8:0:0::1"), "2001:db8::1");
  EXPECT_EQ(normalize_ip_text("2001:0db8:0000:0000:0000:0000:0000:0001"), "2001:db8::1");
  EXPECT_EQ(normalize_ip_text("2001:db8:0:1:0:0:0:1"), "2001:db8:0:1::1");
  EXPECT_EQ(normalize_ip_text("::ffff:192.0.2.1"), "::ffff:192.0.2.1");
  EXPECT_EQ(normalize_ip_text("::"), "::");
  for (const char* bad :
       {"", "-", "192.0.2", "192.0.2.256", "192.0.2.1 ", " 192.0.2.1", "01.2.3.4", "0x7f.0.0.1",
        "mx.example.com", "2001:db8::1%eth0", "[2001:db8::1]", "2001:db8:::1", "1.2.3.4.5"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(normalize_ip_text(bad).has_value());
  }
  EXPECT_FALSE(normalize_ip_text(std::string_view("192.0.2.1\0junk", 14)).has_value());
  EXPECT_FALSE(normalize_ip_text(std::string(100, '1')).has_value());
}

TEST(TlsrptSession, report_text_is_made_safe) {
  EXPECT_EQ(clean_report_text("plain text", 256), "plain text");
  EXPECT_EQ(clean_report_text("a\tb\r\nc\x7f\x01", 256), "a b  c  ");
  EXPECT_EQ(clean_report_text(std::string_view("a\0b", 3), 256), "a b");
  // UTF-8 is kept; stray bytes, overlong forms and surrogates are not.
  EXPECT_EQ(clean_report_text("m\xc3\xbcnchen", 256), "m\xc3\xbcnchen");
  EXPECT_EQ(clean_report_text("\xf0\x9f\x93\xa7 mail", 256), "\xf0\x9f\x93\xa7 mail");
  EXPECT_EQ(clean_report_text("latin1 \xfc!", 256), "latin1 ?!");
  EXPECT_EQ(clean_report_text("\xc0\xaf", 256), "??");
  EXPECT_EQ(clean_report_text("\xed\xa0\x80", 256), "???");
  EXPECT_EQ(clean_report_text("\xf4\x90\x80\x80", 256), "????");
  EXPECT_EQ(clean_report_text("cut \xc3", 256), "cut ?");
  // Cut to the limit, never inside a character.
  EXPECT_EQ(clean_report_text("abcdef", 4), "abcd");
  EXPECT_EQ(clean_report_text("ab\xc3\xbc", 3), "ab");
  EXPECT_EQ(clean_report_text("ab\xc3\xbc", 4), "ab\xc3\xbc");
  EXPECT_EQ(clean_report_text(std::string(1000, 'x'), 256).size(), 256u);
  EXPECT_EQ(clean_report_text("anything", 0), "");
}

}  // namespace
}  // namespace mtasts::tlsrpt
