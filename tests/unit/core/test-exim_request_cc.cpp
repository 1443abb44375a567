// The daemon's Exim protocol (design §2.1, docs/protocol-readsocket.md): line framing with and
// without the client's half-close, request parsing, answers and error answers.
#include "core/exim_request.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mtasts {
namespace {

constexpr std::size_t kMax = 32;

struct LineRow {
  const char* name;
  std::string input;
  bool eof;
  LineStatus status;
  std::string line;
  std::size_t consumed;
};

TEST(EximLine, table) {
  const std::vector<LineRow> rows = {
      {"nothing yet", "", false, LineStatus::need_more, "", 0},
      {"part of a line", "getmta exa", false, LineStatus::need_more, "", 0},
      {"LF ends the line", "getmta a.example\n", false, LineStatus::done, "getmta a.example", 17},
      {"CRLF ends the line", "getmta a.example\r\n", false, LineStatus::done, "getmta a.example",
       18},
      {"bytes after the line are left", "getmx a.example\nrest", false, LineStatus::done,
       "getmx a.example", 16},
      {"readsocket: no newline, then EOF", "getmta a.example", true, LineStatus::done,
       "getmta a.example", 16},
      {"CR then EOF", "getmta a.example\r", true, LineStatus::done, "getmta a.example", 17},
      {"EOF with nothing sent", "", true, LineStatus::invalid, "", 0},
      {"empty line is a line (the parser refuses it)", "\n", false, LineStatus::done, "", 1},
      {"exactly the limit", std::string(kMax, 'x') + "\n", false, LineStatus::done,
       std::string(kMax, 'x'), kMax + 1},
      {"limit plus CRLF", std::string(kMax, 'x') + "\r\n", false, LineStatus::done,
       std::string(kMax, 'x'), kMax + 2},
      {"limit, CR still waiting for LF", std::string(kMax, 'x') + "\r", false,
       LineStatus::need_more, "", 0},
      {"one over the limit with LF", std::string(kMax + 1, 'x') + "\n", false, LineStatus::invalid,
       "", 0},
      {"over the limit without LF: refused at once", std::string(kMax + 2, 'x'), false,
       LineStatus::invalid, "", 0},
      {"over the limit at EOF", std::string(kMax + 1, 'x'), true, LineStatus::invalid, "", 0},
  };
  for (const LineRow& row : rows) {
    SCOPED_TRACE(row.name);
    const LineStep step = read_exim_line(row.input, row.eof, kMax);
    EXPECT_EQ(step.status, row.status);
    if (row.status == LineStatus::done) {
      EXPECT_EQ(step.line, row.line);
      EXPECT_EQ(step.consumed, row.consumed);
    }
    if (row.status == LineStatus::invalid) {
      EXPECT_FALSE(step.reason.empty());
    }
  }
}

struct RequestRow {
  const char* name;
  std::string line;
  bool ok;
  EximCommand command;
  std::string domain;
  std::optional<std::string> host;
  std::string error_part;  // for failures: a part of the reason
};

TEST(EximRequest, table) {
  const std::vector<RequestRow> rows = {
      {"getmta D", "getmta example.com", true, EximCommand::getmta, "example.com", std::nullopt,
       ""},
      {"getmta D H", "getmta example.com mx.example.net", true, EximCommand::getmta, "example.com",
       "mx.example.net", ""},
      {"getmx D", "getmx example.com", true, EximCommand::getmx, "example.com", std::nullopt, ""},
      {"ignorelist D", "ignorelist example.com", true, EximCommand::ignorelist, "example.com",
       std::nullopt, ""},
      {"blanks around and between", " \tgetmta   Example.COM.\t ", true, EximCommand::getmta,
       "Example.COM.", std::nullopt, ""},
      {"command in any case", "GetMTA example.com", true, EximCommand::getmta, "example.com",
       std::nullopt, ""},
      {"U-labels pass through (normalized later)", "getmta m\xc3\xbcnchen.example", true,
       EximCommand::getmta, "m\xc3\xbcnchen.example", std::nullopt, ""},
      {"address literal passes through", "getmta [192.0.2.1]", true, EximCommand::getmta,
       "[192.0.2.1]", std::nullopt, ""},
      {"empty", "", false, EximCommand::getmta, "", std::nullopt, "empty request"},
      {"blank", "   ", false, EximCommand::getmta, "", std::nullopt, "empty request"},
      {"unknown command", "getpolicy example.com", false, EximCommand::getmta, "", std::nullopt,
       "unknown command"},
      {"getmta without domain (empty $domain)", "getmta ", false, EximCommand::getmta, "",
       std::nullopt, "getmta takes 1 or 2 arguments"},
      {"getmta with three", "getmta a.example b.example c", false, EximCommand::getmta, "",
       std::nullopt, "getmta takes 1 or 2 arguments"},
      {"getmx with two", "getmx a.example b.example", false, EximCommand::getmta, "", std::nullopt,
       "getmx takes 1 argument"},
      {"ignorelist without domain", "ignorelist", false, EximCommand::getmta, "", std::nullopt,
       "ignorelist takes 1 argument"},
      // Issue 10, RFC 8461 §4.1: the host is taken as sent, whatever its form; it is matched,
      // never refused.
      {"host with a leading hyphen", "getmta example.com -mx.example.com", true,
       EximCommand::getmta, "example.com", "-mx.example.com", ""},
      {"host with a trailing hyphen", "getmta example.com mx-.example.com", true,
       EximCommand::getmta, "example.com", "mx-.example.com", ""},
      {"host with an underscore", "getmta example.com mx_1.example.com", true, EximCommand::getmta,
       "example.com", "mx_1.example.com", ""},
      {"host with a leading dot", "getmta example.com .example.com", true, EximCommand::getmta,
       "example.com", ".example.com", ""},
      {"host with two root dots", "getmta example.com mail.example.com..", true,
       EximCommand::getmta, "example.com", "mail.example.com..", ""},
      {"host with a star label", "getmta example.com *.example.com", true, EximCommand::getmta,
       "example.com", "*.example.com", ""},
      {"one-label host", "getmta example.com com", true, EximCommand::getmta, "example.com", "com",
       ""},
      {"host with a 64-octet label", "getmta example.com " + std::string(64, 'x') + ".example.com",
       true, EximCommand::getmta, "example.com", std::string(64, 'x') + ".example.com", ""},
      {"address literal host", "getmta example.com [192.0.2.1]", true, EximCommand::getmta,
       "example.com", "[192.0.2.1]", ""},
      {"host with a control character is still a host",
       std::string("getmta example.com mx\x01.example.com"), true, EximCommand::getmta,
       "example.com", "mx\x01.example.com", ""},
      {"NUL", std::string("getmta a\0.example", 17), false, EximCommand::getmta, "", std::nullopt,
       "control character"},
      {"control character in the command", "get\x01mta a.example mx.example", false,
       EximCommand::getmta, "", std::nullopt, "control character"},
      {"control character in the domain next to a host", "getmta a\x7f.example mx.example", false,
       EximCommand::getmta, "", std::nullopt, "control character"},
      {"control character in a fourth word", "getmta a.example mx.example x\x01", false,
       EximCommand::getmta, "", std::nullopt, "control character"},
      {"escape", "getmta \x1b[1ma.example", false, EximCommand::getmta, "", std::nullopt,
       "control character"},
  };
  for (const RequestRow& row : rows) {
    SCOPED_TRACE(row.name);
    auto parsed = parse_exim_request(row.line);
    ASSERT_EQ(parsed.has_value(), row.ok) << (parsed ? "" : parsed.error());
    if (row.ok) {
      EXPECT_EQ(parsed->command, row.command);
      EXPECT_EQ(parsed->domain, row.domain);
      EXPECT_EQ(parsed->host, row.host);
    } else {
      EXPECT_NE(parsed.error().find(row.error_part), std::string::npos) << parsed.error();
      EXPECT_EQ(parsed.error().find('\n'), std::string::npos);
    }
  }
}

Answer enforce() {
  Answer answer;
  answer.kind = AnswerKind::policy;
  answer.mode = Mode::enforce;
  answer.mx = {"mx1.example.com", "*.example.net"};
  return answer;
}

TEST(EximRequest, answers_are_the_dlfunc_strings) {
  auto request = [](std::string_view line) { return *parse_exim_request(line); };
  EXPECT_EQ(exim_answer(request("getmta d.example"), enforce()), "enforce");
  EXPECT_EQ(exim_answer(request("getmx d.example"), enforce()), "mx1.example.com:*.example.net");
  EXPECT_EQ(exim_answer(request("ignorelist d.example"), enforce()),
            "<; ! ^mx1\\.example\\.com$ ; ! ^[^.]+\\.example\\.net$ ; *");
  // STS-33, STS-51: the host is normalized before matching; no match answers "0".
  EXPECT_EQ(exim_answer(request("getmta d.example MX1.Example.COM."), enforce()), "");
  EXPECT_EQ(exim_answer(request("getmta d.example a.example.net"), enforce()), "");
  EXPECT_EQ(exim_answer(request("getmta d.example a.b.example.net"), enforce()), "0");
  EXPECT_EQ(exim_answer(request("getmta d.example not_a_host!"), enforce()), "0");
  // Issue 10, RFC 8461 §4.1: a malformed host is matched, never an error.
  EXPECT_EQ(exim_answer(request("getmta d.example mx_1.example.net"), enforce()), "");
  EXPECT_EQ(exim_answer(request("getmta d.example -mx.example.net"), enforce()), "");
  EXPECT_EQ(exim_answer(request("getmta d.example MX-.Example.NET."), enforce()), "");
  EXPECT_EQ(exim_answer(request("getmta d.example mx_1.example.com"), enforce()), "0");
  EXPECT_EQ(exim_answer(request("getmta d.example mx1.example.com.."), enforce()), "0");
  EXPECT_EQ(exim_answer(request("getmta d.example .example.net"), enforce()), "0");
  EXPECT_EQ(exim_answer(request("getmta d.example *.example.net"), enforce()), "");
  EXPECT_EQ(exim_answer(request("getmta d.example *.example.com"), enforce()), "0");
  EXPECT_EQ(exim_answer(request("getmta d.example com"), enforce()), "0");
  EXPECT_EQ(exim_answer(request("getmta d.example m\xc3\xbcnchen.example.net"), enforce()), "");
  Answer none;
  EXPECT_EQ(exim_answer(request("getmta d.example"), none), "none");
  EXPECT_EQ(exim_answer(request("getmta d.example evil.example"), none), "");
  EXPECT_EQ(exim_answer(request("getmta d.example mx_1.example.com"), none), "");
  EXPECT_EQ(exim_answer(request("getmta d.example -mx.example.com"), none), "");
  EXPECT_EQ(exim_answer(request("ignorelist d.example"), none), "");
}

TEST(EximRequest, error_answers_are_one_bounded_line) {
  EXPECT_EQ(exim_error_answer("bad"), "error: bad");
  EXPECT_TRUE(exim_error_answer("x").starts_with(kEximErrorPrefix));
  const std::string long_answer = exim_error_answer(std::string(1000, 'a') + "\n\x01");
  EXPECT_LE(long_answer.size(), 310u);
  EXPECT_EQ(exim_error_answer("a\nb\rc"), "error: a b c");
}

}  // namespace
}  // namespace mtasts
