// Recipient domains from Exim and Postfix logs (core/mta_log_domains.hpp): the fixtures under
// tests/data/mta-logs give exactly their .expected lists, and each kind of skipped line is
// counted where the admin's summary reports it.
#include "core/mta_log_domains.hpp"

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mtasts {
namespace {

std::string read_fixture(const std::string& name) {
  std::ifstream in(std::string(MTASTS_SOURCE_DIR) + "/tests/data/mta-logs/" + name);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

MtaLogDomains read_log(MtaLogFormat format, const std::string& text) {
  MtaLogDomains log(format);
  for (const std::string& line : lines_of(text)) log.add_line(line);
  return log;
}

TEST(MtaLogDomains, EximFixtureGivesTheExpectedDomains) {
  const MtaLogDomains log = read_log(MtaLogFormat::exim, read_fixture("exim-mainlog"));
  EXPECT_EQ(log.domains(), lines_of(read_fixture("exim-mainlog.expected")));
  const MtaLogCounts& c = log.counts();
  EXPECT_EQ(c.remote, 9u);  // two to enforce.example, two to testing.example
  // local user, pipe, file, lmtp, localhost content filter, deferral without a host
  EXPECT_EQ(c.local, 6u);
  EXPECT_EQ(c.bounce, 2u);   // the ** line and the delivery of the bounce message
  EXPECT_EQ(c.literal, 2u);  // [192.0.2.77] and [IPv6:2001:db8::9]
  EXPECT_EQ(c.invalid, 1u);  // bad..example
}

TEST(MtaLogDomains, PostfixFixtureGivesTheExpectedDomains) {
  const MtaLogDomains log = read_log(MtaLogFormat::postfix, read_fixture("postfix-maillog"));
  EXPECT_EQ(log.domains(), lines_of(read_fixture("postfix-maillog.expected")));
  const MtaLogCounts& c = log.counts();
  EXPECT_EQ(c.remote, 9u);
  // lmtp, local, virtual, pipe, 127.0.0.1 filter, relay=none, [::1] filter
  EXPECT_EQ(c.local, 7u);
  EXPECT_EQ(c.bounce, 2u);  // status=bounced and the delivery of the from=<> message
  EXPECT_EQ(c.literal, 2u);
  EXPECT_EQ(c.invalid, 1u);
}

TEST(MtaLogDomains, WholeTextWithCrlf) {
  const std::string text =
      "2026-12-06 10:00:02 1vQaaa-000101-AB => a@one.example R=r T=remote_smtp H=mx.one.example "
      "[192.0.2.1]\r\n"
      "2026-12-06 10:00:02 1vQaaa-000101-AB => b@two.example R=r T=remote_smtp H=mx.two.example "
      "[192.0.2.2]";
  EXPECT_EQ(mta_log_domains(MtaLogFormat::exim, text),
            (std::vector<std::string>{"one.example", "two.example"}));
}

TEST(MtaLogDomains, BounceIdsAreForgottenWhenTheMessageCompletes) {
  MtaLogDomains log(MtaLogFormat::exim);
  log.add_line("2026-12-06 10:00:00 1vQaaa-000101-AB <= <> R=1vQzzz-000000-AA U=exim P=local");
  log.add_line(
      "2026-12-06 10:00:01 1vQaaa-000101-AB => a@one.example T=remote_smtp H=mx [1.2.3.4]");
  log.add_line("2026-12-06 10:00:01 1vQaaa-000101-AB Completed");
  // The same id again (ids repeat across years of logs) is a normal message now.
  log.add_line("2026-12-06 10:00:05 1vQaaa-000101-AB <= x@ourhost.example P=local S=1");
  log.add_line(
      "2026-12-06 10:00:06 1vQaaa-000101-AB => b@two.example T=remote_smtp H=mx [1.2.3.5]");
  EXPECT_EQ(log.domains(), (std::vector<std::string>{"two.example"}));
  EXPECT_EQ(log.counts().bounce, 1u);
}

TEST(MtaLogDomains, LimitsHold) {
  MtaLogDomains log(MtaLogFormat::postfix, 2);
  for (const char* domain : {"a.example", "b.example", "a.example", "c.example"}) {
    log.add_line(std::string("Dec  6 10:00:00 mx postfix/smtp[1]: ABC: to=<u@") + domain +
                 ">, relay=mx.example[192.0.2.1]:25, status=sent (250 OK)");
  }
  EXPECT_EQ(log.domains(), (std::vector<std::string>{"a.example", "b.example"}));
  EXPECT_EQ(log.counts().over_limit, 1u);
}

TEST(MtaLogDomains, GarbageIsIgnored) {
  for (MtaLogFormat format : {MtaLogFormat::exim, MtaLogFormat::postfix}) {
    MtaLogDomains log(format);
    for (const char* line :
         {"", " ", "=>", "1vQaaa-000101-AB =>", "postfix/smtp[1]:", "postfix/smtp[1]: X: to=<",
          "postfix/smtp[1]: X: to=<a@b.example", "x postfix/qmgr[1]: Q: from=<>,",
          "2026-12-06 1vQaaa-000101-AB => a@one.example H=", "\xff\xfe postfix/smtp[1]: \x01"}) {
      log.add_line(line);
    }
    EXPECT_TRUE(log.domains().empty());
  }
}

}  // namespace
}  // namespace mtasts
