// build_report_mail: the RFC 8460 §5.3 report mail, parsed back as a mail reader would.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/gzip.hpp"
#include "core/tlsrpt_mail.hpp"

namespace mtasts::tlsrpt {
namespace {

using namespace std::chrono_literals;

constexpr Day kDay = std::chrono::sys_days{2026y / std::chrono::December / 7};
constexpr std::int64_t kSendTime = 1796601600 + 86400 + 2 * 3600;  // 2026-12-08T02:00:00Z

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find('\n', start);
    EXPECT_NE(end, std::string_view::npos) << "the last line has no line end";
    if (end == std::string_view::npos) break;
    lines.emplace_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

struct Header {
  std::string name;
  std::string value;  // unfolded, without the space after the colon
};

struct Entity {
  std::vector<Header> headers;
  std::string body;
  std::string value(std::string_view name) const {
    for (const Header& header : headers) {
      if (header.name == name) return header.value;
    }
    ADD_FAILURE() << "no header " << name;
    return "";
  }
};

// Splits headers from body at the first empty line and unfolds the headers (RFC 5322 §2.2.3).
Entity parse_entity(std::string_view text) {
  Entity entity;
  const std::size_t blank = text.find("\n\n");
  EXPECT_NE(blank, std::string_view::npos) << "no empty line after the headers";
  if (blank == std::string_view::npos) return entity;
  for (const std::string& line : split_lines(text.substr(0, blank + 1))) {
    EXPECT_LE(line.size(), 998U) << line;  // RFC 5322 §2.1.1 hard limit
    EXPECT_EQ(line.find('\r'), std::string::npos) << "CR in " << line;
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      EXPECT_FALSE(entity.headers.empty()) << "continuation before any header: " << line;
      EXPECT_NE(line.find_first_not_of(" \t"), std::string::npos) << "white-space-only line";
      if (!entity.headers.empty()) entity.headers.back().value += line;
      continue;
    }
    const std::size_t colon = line.find(':');
    EXPECT_NE(colon, std::string::npos) << "not a header line: " << line;
    if (colon == std::string::npos) continue;
    EXPECT_EQ(line.substr(colon, 2), ": ") << line;
    entity.headers.push_back({line.substr(0, colon), line.substr(colon + 2)});
  }
  entity.body = std::string(text.substr(blank + 2));
  return entity;
}

std::vector<std::string> names_of(const Entity& entity) {
  std::vector<std::string> names;
  for (const Header& header : entity.headers) names.push_back(header.name);
  return names;
}

std::string base64_decode(std::string_view text) {
  std::string out;
  std::uint32_t group = 0;
  int bits = 0;
  for (const char c : text) {
    int value = -1;
    if (c >= 'A' && c <= 'Z') value = c - 'A';
    if (c >= 'a' && c <= 'z') value = c - 'a' + 26;
    if (c >= '0' && c <= '9') value = c - '0' + 52;
    if (c == '+') value = 62;
    if (c == '/') value = 63;
    if (c == '=' || c == '\n') continue;
    EXPECT_GE(value, 0) << "not base64: " << static_cast<int>(c);
    if (value < 0) continue;
    group = (group << 6) | static_cast<std::uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((group >> bits) & 0xff);
    }
  }
  return out;
}

Report sample_report(std::string organization = "Example Sender Ltd") {
  PolicyTally tally;
  tally.policy = {.type = PolicyType::sts,
                  .domain = "example.com",
                  .policy_strings = {"version: STSv1", "mode: enforce", "mx: mx1.example.com",
                                     "max_age: 604800"},
                  .mx_hosts = {"mx1.example.com"}};
  tally.successful = 40;
  tally.failed = 1;
  FailureKey failure;
  failure.result = ResultType::starttls_not_supported;
  failure.sending_mta_ip = "192.0.2.10";
  failure.receiving_mx_hostname = "mx1.example.com";
  failure.receiving_ip = "198.51.100.25";
  tally.failures[failure] = 1;
  const std::vector<PolicyTally> tallies = {tally};
  return build_report({.organization_name = std::move(organization),
                       .contact_info = "tlsrpt-admin@mail.example.net",
                       .submitter = "mail.example.net"},
                      kDay, "example.com", tallies);
}

MailEnvelope envelope() {
  return {.from = "tlsrpt-noreply@mail.example.net",
          .to = "tls-reports@example.com",
          .date = kSendTime,
          .message_id_domain = "mail.example.net"};
}

struct Parsed {
  Entity message;
  std::string boundary;
  std::string preamble;
  std::vector<Entity> parts;
};

// The message and its multipart/report parts (RFC 2046 §5.1.1), checking the delimiters.
Parsed parse_mail(const std::string& mail) {
  Parsed parsed;
  parsed.message = parse_entity(mail);
  const std::regex content_type(
      R"re(^multipart/report; report-type="tlsrpt"; boundary="([^"]+)"$)re");
  std::smatch match;
  const std::string type = parsed.message.value("Content-Type");
  EXPECT_TRUE(std::regex_match(type, match, content_type)) << type;
  if (match.empty()) return parsed;
  parsed.boundary = match[1];
  const std::string delimiter = "--" + parsed.boundary;
  std::string_view body = parsed.message.body;
  const std::string close = delimiter + "--\n";
  EXPECT_TRUE(body.ends_with(close)) << "no close delimiter at the end";
  // Every delimiter starts a line; the LF before it belongs to it.
  std::size_t at = body.find(delimiter);
  EXPECT_NE(at, std::string_view::npos);
  if (at == std::string_view::npos) return parsed;
  parsed.preamble = std::string(body.substr(0, at));
  while (true) {
    const std::size_t line_end = body.find('\n', at);
    const std::string_view line = body.substr(at, line_end - at);
    if (line == delimiter + "--") break;
    EXPECT_EQ(line, delimiter);
    const std::size_t next = body.find("\n" + delimiter, line_end);
    EXPECT_NE(next, std::string_view::npos);
    if (next == std::string_view::npos) break;
    parsed.parts.push_back(parse_entity(body.substr(line_end + 1, next + 1 - (line_end + 1))));
    at = next + 1;
  }
  return parsed;
}

std::size_t count(std::string_view text, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t at = text.find(needle); at != std::string_view::npos;
       at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

TEST(TlsrptMail, HeadersFollowRfc8460Section53) {
  const Report report = sample_report();
  const std::string gz = gzip_compress(report.json);
  const std::string mail =
      build_report_mail(report, gz, "example.com", "mail.example.net", envelope());
  const Entity message = parse_entity(mail);
  EXPECT_EQ(names_of(message),
            (std::vector<std::string>{"From", "To", "Date", "Subject", "Message-ID", "MIME-Version",
                                      "TLS-Report-Domain", "TLS-Report-Submitter", "TLS-Required",
                                      "Auto-Submitted", "Content-Type"}));
  EXPECT_EQ(message.value("From"), "tlsrpt-noreply@mail.example.net");
  EXPECT_EQ(message.value("To"), "tls-reports@example.com");
  EXPECT_EQ(message.value("Date"), "Tue, 08 Dec 2026 02:00:00 +0000");
  EXPECT_EQ(message.value("Subject"), report.subject);  // unfolded (RPT-30)
  EXPECT_TRUE(std::regex_match(
      message.value("Subject"),
      std::regex(R"(^Report Domain: \S+ Submitter: \S+ Report-ID: <[^@>]+@[^>]+>$)")));
  EXPECT_TRUE(std::regex_match(message.value("Message-ID"),
                               std::regex(R"(^<[0-9a-f]{16}\.[0-9a-f]{16}@mail\.example\.net>$)")))
      << message.value("Message-ID");
  EXPECT_EQ(message.value("MIME-Version"), "1.0");
  EXPECT_EQ(message.value("TLS-Report-Domain"), "example.com");  // RPT-29
  EXPECT_EQ(message.value("TLS-Report-Submitter"), "mail.example.net");
  EXPECT_EQ(message.value("TLS-Required"), "No");  // RFC 8689 §5, RPT-09
  EXPECT_EQ(message.value("Auto-Submitted"), "auto-generated");
  // The Subject is longer than a line: folded at a space, every line within 78.
  EXPECT_GT(report.subject.size(), 78U);
  for (const std::string& line : split_lines(mail.substr(0, mail.find("\n\n") + 1))) {
    EXPECT_LE(line.size(), 78U) << line;
  }
}

TEST(TlsrptMail, MultipartReportCarriesTheGzippedReport) {
  const Report report = sample_report();
  const std::string gz = gzip_compress(report.json);
  const std::string mail =
      build_report_mail(report, gz, "example.com", "mail.example.net", envelope());
  const Parsed parsed = parse_mail(mail);
  ASSERT_EQ(parsed.parts.size(), 2U);
  EXPECT_EQ(count(mail, "--" + parsed.boundary), 3U);  // two delimiters and the close

  const Entity& text = parsed.parts[0];  // RPT-28: human-readable first
  EXPECT_EQ(text.value("Content-Type"), "text/plain; charset=us-ascii");
  EXPECT_NE(text.body.find("Example Sender Ltd"), std::string::npos) << text.body;
  EXPECT_NE(text.body.find("example.com"), std::string::npos);
  EXPECT_NE(text.body.find("2026-12-07"), std::string::npos);
  EXPECT_NE(text.body.find(report.report_id), std::string::npos);

  const Entity& attachment = parsed.parts[1];
  EXPECT_EQ(attachment.value("Content-Type"), "application/tlsrpt+gzip");
  EXPECT_EQ(attachment.value("Content-Transfer-Encoding"), "base64");
  EXPECT_EQ(attachment.value("Content-Disposition"),
            "attachment; filename=\"" + report.filename + "\"");
  const std::vector<std::string> lines = split_lines(attachment.body);
  ASSERT_FALSE(lines.empty());
  for (std::size_t i = 0; i + 1 < lines.size(); ++i) EXPECT_EQ(lines[i].size(), 76U) << i;
  EXPECT_LE(lines.back().size(), 76U);
  EXPECT_EQ(base64_decode(attachment.body), gz);
  const auto json = gzip_decompress(base64_decode(attachment.body), 1 << 20);
  ASSERT_TRUE(json.has_value()) << json.error().reason;
  EXPECT_EQ(*json, report.json);
}

TEST(TlsrptMail, SameInputSameBytes) {
  const Report report = sample_report();
  const std::string gz = gzip_compress(report.json);
  const std::string first =
      build_report_mail(report, gz, "example.com", "mail.example.net", envelope());
  EXPECT_EQ(first, build_report_mail(report, gz, "example.com", "mail.example.net", envelope()));
  // Another rua: another Message-ID, the same report half.
  MailEnvelope other = envelope();
  other.to = "reports@tlsrpt.example.org";
  const Entity a = parse_entity(first);
  const Entity b =
      parse_entity(build_report_mail(report, gz, "example.com", "mail.example.net", other));
  EXPECT_NE(a.value("Message-ID"), b.value("Message-ID"));
  EXPECT_EQ(a.value("Message-ID").substr(0, 17), b.value("Message-ID").substr(0, 17));
}

TEST(TlsrptMail, HeaderInjectionIsStripped) {
  const Report report = sample_report();
  const std::string gz = gzip_compress(report.json);
  MailEnvelope hostile = envelope();
  hostile.from = "tlsrpt@mail.example.net\r\nBcc: victim1@evil.example";
  hostile.to = "tls-reports@example.com\nBcc: victim2@evil.example\n\nbody";
  hostile.message_id_domain = "mail.example.net>\r\nX-Injected: 1";
  const std::string mail = build_report_mail(report, gz, "example.com\r\nBcc: victim3@evil.example",
                                             "mail.example.net\nContent-Type: text/html", hostile);
  const Parsed parsed = parse_mail(mail);
  EXPECT_EQ(names_of(parsed.message),
            (std::vector<std::string>{"From", "To", "Date", "Subject", "Message-ID", "MIME-Version",
                                      "TLS-Report-Domain", "TLS-Report-Submitter", "TLS-Required",
                                      "Auto-Submitted", "Content-Type"}));
  EXPECT_EQ(mail.find('\r'), std::string::npos);
  EXPECT_EQ(mail.find("\nBcc:"), std::string::npos);
  EXPECT_EQ(mail.find("\nX-Injected"), std::string::npos);
  EXPECT_EQ(parsed.message.value("From"), "tlsrpt@mail.example.netBcc: victim1@evil.example");
  EXPECT_EQ(parsed.message.value("TLS-Report-Domain"), "example.comBcc: victim3@evil.example");
  EXPECT_TRUE(std::regex_match(parsed.message.value("Message-ID"),
                               std::regex(R"(^<[0-9a-f]{16}\.[0-9a-f]{16}@[A-Za-z0-9.-]+>$)")))
      << parsed.message.value("Message-ID");
  ASSERT_EQ(parsed.parts.size(), 2U);
  EXPECT_EQ(base64_decode(parsed.parts[1].body), gz);
}

TEST(TlsrptMail, QuotesCannotLeaveTheFilenameParameter) {
  Report report = sample_report();
  report.filename = "a\"; name=\"evil.exe\r\n.json.gz";
  const std::string mail = build_report_mail(report, gzip_compress(report.json), "example.com",
                                             "mail.example.net", envelope());
  const Parsed parsed = parse_mail(mail);
  ASSERT_EQ(parsed.parts.size(), 2U);
  EXPECT_EQ(parsed.parts[1].value("Content-Disposition"),
            "attachment; filename=\"a; name=evil.exe.json.gz\"");
}

TEST(TlsrptMail, TheBoundaryNeverOccursInAPart) {
  // An organization name that holds the boundary the report would otherwise get.
  const Report plain = sample_report();
  const std::string usual =
      parse_mail(build_report_mail(plain, gzip_compress(plain.json), "example.com",
                                   "mail.example.net", envelope()))
          .boundary;
  ASSERT_FALSE(usual.empty());
  const Report tricky = sample_report("Org --" + usual + " Ltd");
  const std::string mail = build_report_mail(tricky, gzip_compress(tricky.json), "example.com",
                                             "mail.example.net", envelope());
  const Parsed parsed = parse_mail(mail);
  EXPECT_NE(parsed.boundary, usual);
  EXPECT_EQ(count(mail, "--" + parsed.boundary), 3U);
  ASSERT_EQ(parsed.parts.size(), 2U);
  EXPECT_NE(parsed.parts[0].body.find("Org --" + usual + " Ltd"), std::string::npos);
}

TEST(TlsrptMail, TheTextPartIsAscii) {
  const Report report = sample_report("M\xc3\xbcnchen Mail \x01 GmbH");
  const std::string mail = build_report_mail(report, gzip_compress(report.json), "example.com",
                                             "mail.example.net", envelope());
  const Parsed parsed = parse_mail(mail);
  ASSERT_EQ(parsed.parts.size(), 2U);
  for (const char c : parsed.parts[0].body) {
    EXPECT_TRUE(c == '\n' || (c >= 0x20 && c < 0x7f)) << static_cast<int>(c);
  }
  EXPECT_NE(parsed.parts[0].body.find("M??nchen Mail ? GmbH"), std::string::npos)
      << parsed.parts[0].body;
}

TEST(TlsrptMail, EmptyMessageIdDomainFallsBackToTheSubmitter) {
  const Report report = sample_report();
  MailEnvelope bare = envelope();
  bare.message_id_domain = "";
  const Entity message = parse_entity(build_report_mail(report, gzip_compress(report.json),
                                                        "example.com", "mail.example.net", bare));
  EXPECT_TRUE(message.value("Message-ID").ends_with("@mail.example.net>"));
}

TEST(TlsrptMail, Rfc5322Dates) {
  EXPECT_EQ(rfc5322_date(1796601600 + 5 * 3600 + 7), "Mon, 07 Dec 2026 05:00:07 +0000");
  EXPECT_EQ(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(rfc5322_date(951782400), "Tue, 29 Feb 2000 00:00:00 +0000");
  EXPECT_EQ(rfc5322_date(-5), "Thu, 01 Jan 1970 00:00:00 +0000");
  EXPECT_EQ(rfc5322_date(253402300799), "Fri, 31 Dec 9999 23:59:59 +0000");
  EXPECT_EQ(rfc5322_date(INT64_MAX), "Fri, 31 Dec 9999 23:59:59 +0000");
}

}  // namespace
}  // namespace mtasts::tlsrpt
