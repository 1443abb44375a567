// TlsrptReporter over the real counts file (LMDB in a temporary directory), the map-driven fake
// resolver and recording senders: which reports go when, to whom, at most once, and how failed
// ones are retried and given up (RFC 8460 §3, §5; docs/tlsrpt.md).
#include "service/tlsrpt_reporter.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "adapters/store/lmdb_tlsrpt_store.hpp"
#include "core/gzip.hpp"
#include "core/tlsrpt_session.hpp"
#include "service/logging.hpp"
#include "unit/adapters/temp_dir.hpp"
#include "unit/service/fakes.hpp"

namespace mtasts {
namespace {

using namespace std::chrono_literals;
using store::ReportDelivery;
using testing::FakeResolver;

constexpr std::int64_t kDay = 86400;

struct Sent {
  std::string to;
  std::string body;  // the mail, or the POSTed gzip
};

class RecordingMail final : public report::MailSubmitter {
 public:
  asio::awaitable<std::expected<void, Error>> submit(std::string sender, std::string recipient,
                                                     std::string message) override {
    senders.push_back(std::move(sender));
    sent.push_back({std::move(recipient), std::move(message)});
    if (fail) co_return std::unexpected(Error{ErrorCategory::internal, "sendmail exit 75"});
    co_return std::expected<void, Error>{};
  }
  std::vector<Sent> sent;
  std::vector<std::string> senders;
  bool fail = false;
};

class RecordingHttps final : public report::HttpsPoster {
 public:
  asio::awaitable<std::expected<void, Error>> post(std::string uri, std::string content_type,
                                                   std::string body) override {
    content_types.push_back(std::move(content_type));
    sent.push_back({std::move(uri), std::move(body)});
    if (fail) co_return std::unexpected(Error{ErrorCategory::internal, "HTTP 503"});
    co_return std::expected<void, Error>{};
  }
  std::vector<Sent> sent;
  std::vector<std::string> content_types;
  bool fail = false;
};

tlsrpt::Session session(const std::string& domain, bool failed) {
  tlsrpt::PolicyOutcome outcome;
  outcome.policy =
      tlsrpt::PolicyKey{tlsrpt::PolicyType::sts,
                        domain,
                        {"version: STSv1", "mode: enforce", "mx: mx." + domain, "max_age: 86400"},
                        {"mx." + domain}};
  if (failed) {
    outcome.failed = true;
    outcome.failures.push_back(tlsrpt::FailureKey{tlsrpt::ResultType::certificate_expired,
                                                  "192.0.2.1", "mx." + domain, "", "192.0.2.9", "",
                                                  "expired"});
  }
  return tlsrpt::Session{domain, "", {outcome}};
}

class ReporterTest : public ::testing::Test {
 protected:
  ReporterTest() {
    auto opened = store::open_lmdb_tlsrpt_store(dir.file("tlsrpt.mdb"));
    EXPECT_TRUE(opened) << opened.error().reason;
    store = std::move(*opened);
    reporter = std::make_unique<TlsrptReporter>(
        *store, resolver, mail, https,
        TlsrptReporterOptions{.meta = {.organization_name = "Org",
                                       .contact_info = "tlsrpt@sender.example",
                                       .submitter = "sender.example"},
                              .mail_from = "tlsrpt-noreply@sender.example",
                              .send_window = 3600,
                              .retry_for = kDay,
                              .retention_days = 14},
        make_logger("test", "stderr", "off"));
  }

  void add(tlsrpt::Day on, const std::vector<tlsrpt::Session>& sessions) {
    ASSERT_TRUE(store->add(on, sessions));
  }

  TlsrptSendSummary pass(UnixTime now, bool force = false) {
    asio::io_context io;
    TlsrptSendSummary summary;
    asio::co_spawn(io, reporter->send_due(now, std::nullopt, force),
                   [&](std::exception_ptr error, TlsrptSendSummary result) {
                     if (error) std::rethrow_exception(error);
                     summary = std::move(result);
                   });
    io.run();
    return summary;
  }

  ReportDelivery delivery(const std::string& domain, const std::string& rua) {
    auto state = store->delivery(day, domain, rua);
    EXPECT_TRUE(state && *state);
    return state && *state ? **state : ReportDelivery{};
  }

  test_support::TempDir dir{"mtasts-reporter"};
  std::unique_ptr<store::TlsrptStore> store;
  FakeResolver resolver;
  RecordingMail mail;
  RecordingHttps https;
  std::unique_ptr<TlsrptReporter> reporter;
  const tlsrpt::Day day = tlsrpt::Day{std::chrono::days{20000}};
  const UnixTime midnight = (20000 + 1) * kDay;  // the end of `day`
};

TEST_F(ReporterTest, SendsEachClosedDayToEveryRuaOnce) {
  add(day, {session("a.example", false), session("a.example", true), session("a.example", false)});
  resolver.set_txt("_smtp._tls.a.example",
                   {"v=TLSRPTv1; rua=mailto:reports@a.example,https://r.a.example/tlsrpt"});
  // Not before the day is over, nor before the domain's point in the send window.
  EXPECT_EQ(pass(midnight - 10).sent, 0U);
  EXPECT_TRUE(mail.sent.empty());
  const UnixTime due = report_due_at(day, "a.example", 3600);
  ASSERT_GE(due, midnight);
  ASSERT_LE(due, midnight + 3600);
  if (due > midnight) {
    EXPECT_EQ(pass(due - 1).sent, 0U);
  }

  const TlsrptSendSummary summary = pass(due);
  EXPECT_EQ(summary.sent, 2U);
  ASSERT_EQ(mail.sent.size(), 1U);
  EXPECT_EQ(mail.sent[0].to, "reports@a.example");
  EXPECT_EQ(mail.senders[0], "tlsrpt-noreply@sender.example");
  EXPECT_NE(mail.sent[0].body.find("TLS-Report-Domain: a.example"), std::string::npos);
  ASSERT_EQ(https.sent.size(), 1U);
  EXPECT_EQ(https.sent[0].to, "https://r.a.example/tlsrpt");
  EXPECT_EQ(https.content_types[0], "application/tlsrpt+gzip");
  auto json = gzip_decompress(https.sent[0].body, 1 << 20);
  ASSERT_TRUE(json);
  EXPECT_NE(json->find("\"total-successful-session-count\": 2"), std::string::npos) << *json;
  EXPECT_NE(json->find("\"total-failure-session-count\": 1"), std::string::npos);
  EXPECT_EQ(delivery("a.example", "mailto:reports@a.example").status, ReportDelivery::Status::sent);

  // Later passes, forced or not, send nothing more and do not even ask DNS again.
  const int queries = resolver.queries["_smtp._tls.a.example"];
  EXPECT_EQ(pass(due + 600).sent, 0U);
  EXPECT_EQ(pass(due + 1200, true).sent, 0U);
  EXPECT_EQ(mail.sent.size(), 1U);
  EXPECT_EQ(https.sent.size(), 1U);
  EXPECT_EQ(resolver.queries["_smtp._tls.a.example"], queries);
}

TEST_F(ReporterTest, NoRecordMeansNothingSent) {
  add(day, {session("quiet.example", false)});
  resolver.set_txt("_smtp._tls.quiet.example", {"v=TLSRPTv1; rua=ftp://x.example/"});
  const TlsrptSendSummary summary = pass(midnight + 2 * 3600);
  EXPECT_EQ(summary.sent, 0U);
  EXPECT_EQ(summary.no_record, 1U);
  EXPECT_TRUE(mail.sent.empty());
  EXPECT_TRUE(https.sent.empty());
}

TEST_F(ReporterTest, TemporaryDnsFailureIsRetriedOnALaterPass) {
  add(day, {session("flaky.example", false)});
  resolver.set_failure("_smtp._tls.flaky.example", dns::Status::servfail);
  EXPECT_EQ(pass(midnight + 2 * 3600).sent, 0U);
  resolver.set_txt("_smtp._tls.flaky.example", {"v=TLSRPTv1; rua=mailto:r@flaky.example"});
  EXPECT_EQ(pass(midnight + 3 * 3600).sent, 1U);
}

TEST_F(ReporterTest, FailedDeliveriesBackOffAndGiveUpAfterRetryFor) {
  add(day, {session("down.example", true)});
  resolver.set_txt("_smtp._tls.down.example", {"v=TLSRPTv1; rua=https://r.down.example/"});
  https.fail = true;
  UnixTime now = midnight + 3601;
  EXPECT_EQ(pass(now).failed, 1U);
  ReportDelivery state = delivery("down.example", "https://r.down.example/");
  EXPECT_EQ(state.status, ReportDelivery::Status::pending);
  EXPECT_EQ(state.attempts, 1U);
  EXPECT_EQ(state.next_attempt, now + 300);
  EXPECT_EQ(state.last_error, "HTTP 503");
  // Within the backoff nothing is tried; the pauses double.
  EXPECT_EQ(pass(now + 299).failed, 0U);
  EXPECT_EQ(pass(now + 300).failed, 1U);
  EXPECT_EQ(delivery("down.example", "https://r.down.example/").next_attempt, now + 300 + 600);
  ASSERT_EQ(https.sent.size(), 2U);
  // A later success ends it.
  https.fail = false;
  EXPECT_EQ(pass(now + 900).sent, 1U);
  EXPECT_EQ(delivery("down.example", "https://r.down.example/").status,
            ReportDelivery::Status::sent);

  // Another domain that never comes back is given up within retry_for (24 h) of its due time.
  add(day, {session("dead.example", true)});
  resolver.set_txt("_smtp._tls.dead.example", {"v=TLSRPTv1; rua=https://r.dead.example/"});
  https.fail = true;
  const std::size_t before = https.sent.size();
  std::uint64_t given_up = 0;
  for (UnixTime t = midnight + 3601; t < midnight + 3 * kDay; t += 300)
    given_up += pass(t).given_up;
  EXPECT_EQ(given_up, 1U);
  const ReportDelivery dead = delivery("dead.example", "https://r.dead.example/");
  EXPECT_EQ(dead.status, ReportDelivery::Status::given_up);
  EXPECT_LE(dead.first_attempt, midnight + 3601 + 3600);
  // Doubling pauses capped at 4 h over a day: well under 20 attempts.
  EXPECT_GE(https.sent.size() - before, 6U);
  EXPECT_LE(https.sent.size() - before, 20U);
}

TEST_F(ReporterTest, AnAttemptInterruptedByACrashIsNeverRepeated) {
  add(day, {session("crash.example", false)});
  resolver.set_txt("_smtp._tls.crash.example", {"v=TLSRPTv1; rua=mailto:r@crash.example"});
  // What a kill -9 between "in flight" and "sent" leaves behind.
  ASSERT_TRUE(store->set_delivery(day, "crash.example", "mailto:r@crash.example",
                                  ReportDelivery{.status = ReportDelivery::Status::in_flight,
                                                 .attempts = 1,
                                                 .first_attempt = midnight + 10,
                                                 .next_attempt = 0,
                                                 .last_error = {}}));
  EXPECT_EQ(pass(midnight + 2 * kDay, true).sent, 0U);
  EXPECT_TRUE(mail.sent.empty());
}

TEST_F(ReporterTest, PruneDropsDaysBeyondRetention) {
  add(day, {session("old.example", false)});
  add(day + std::chrono::days{20}, {session("new.example", false)});
  auto pruned = reporter->prune((20000 + 21) * kDay);
  ASSERT_TRUE(pruned);
  EXPECT_EQ(*pruned, 1U);
  auto days = store->days();
  ASSERT_TRUE(days);
  EXPECT_EQ(days->size(), 1U);
}

}  // namespace
}  // namespace mtasts
