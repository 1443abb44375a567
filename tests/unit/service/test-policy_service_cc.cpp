// PolicyService over fakes: network steps happen exactly when the decision asks for them.
#include "service/policy_service.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "unit/service/fakes.hpp"

namespace mtasts {
namespace {

constexpr UnixTime kT0 = 1'700'000'000;
const char* kEnforceBody = "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n";

class PolicyServiceTest : public ::testing::Test {
 protected:
  PolicyServiceTest()
      : service(
            io.get_executor(), store, resolver, fetcher, [this] { return now; }, ServiceOptions{},
            std::make_shared<spdlog::logger>("test",
                                             std::make_shared<spdlog::sinks::null_sink_mt>())) {}

  std::vector<LookupResult> lookup_concurrently(const std::string& domain, int callers) {
    std::vector<LookupResult> results;
    for (int i = 0; i < callers; ++i) {
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<void> { results.push_back(co_await service.lookup(domain)); },
          asio::detached);
    }
    io.restart();
    io.run();
    return results;
  }

  LookupResult lookup(const std::string& domain) { return lookup_concurrently(domain, 1).at(0); }

  asio::io_context io;
  testing::MemoryStore store;
  testing::FakeResolver resolver;
  testing::FakeFetcher fetcher;
  UnixTime now = kT0;
  PolicyService service;
};

TEST_F(PolicyServiceTest, STS01_looks_up_txt_and_tlsrpt_then_fetches) {
  resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=abc"});
  resolver.set_txt("_smtp._tls.example.com", {"v=TLSRPTv1; rua=mailto:tls@example.com"});
  fetcher.bodies["example.com"] = kEnforceBody;
  LookupResult result = lookup("example.com");
  EXPECT_EQ(result.answer.kind, AnswerKind::policy);
  EXPECT_EQ(result.answer.mode, Mode::enforce);
  EXPECT_EQ(result.source, AnswerSource::network);
  EXPECT_EQ(resolver.queries["_mta-sts.example.com"], 1);
  EXPECT_EQ(resolver.queries["_smtp._tls.example.com"], 1);
  EXPECT_EQ(fetcher.fetches["example.com"], 1);
  ASSERT_TRUE(store.entries.contains("example.com"));
  EXPECT_EQ(store.entries["example.com"].report, "mailto:tls@example.com");
  EXPECT_EQ(store.entries["example.com"].policy->text, kEnforceBody);
}

TEST_F(PolicyServiceTest, STS17_fresh_cache_uses_no_network) {
  resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=abc"});
  fetcher.bodies["example.com"] = kEnforceBody;
  lookup("example.com");
  now += 600;
  LookupResult result = lookup("example.com");
  EXPECT_EQ(result.source, AnswerSource::cache);
  EXPECT_EQ(result.answer.mode, Mode::enforce);
  EXPECT_EQ(resolver.queries["_mta-sts.example.com"], 1);
  EXPECT_EQ(fetcher.fetches["example.com"], 1);
}

// RFC 8461 §8.1: the id is looked at again once the TXT answer's TTL has passed; the same id
// fetches nothing, a new one fetches the new policy.
TEST_F(PolicyServiceTest, txt_ttl_decides_when_the_id_is_rechecked) {
  resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=abc"}, 30);
  fetcher.bodies["example.com"] = kEnforceBody;
  LookupResult first = lookup("example.com");
  ASSERT_TRUE(first.entry);
  EXPECT_EQ(first.entry->txt_expires_at, kT0 + 30);
  now += 29;
  EXPECT_EQ(lookup("example.com").source, AnswerSource::cache);
  EXPECT_EQ(resolver.queries["_mta-sts.example.com"], 1);
  now += 1;
  LookupResult same = lookup("example.com");
  EXPECT_EQ(same.source, AnswerSource::network);
  EXPECT_EQ(resolver.queries["_mta-sts.example.com"], 2);
  EXPECT_EQ(fetcher.fetches["example.com"], 1) << "same id: no fetch";
  EXPECT_EQ(same.entry->txt_expires_at, kT0 + 60);

  resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=def"}, 0);
  fetcher.bodies["example.com"] =
      "version: STSv1\nmode: enforce\nmx: new.example.net\nmax_age: 86400\n";
  now += 30;
  LookupResult changed = lookup("example.com");
  EXPECT_EQ(fetcher.fetches["example.com"], 2);
  EXPECT_EQ(changed.answer.mx, std::vector<std::string>{"new.example.net"});
  EXPECT_EQ(changed.entry->next_check, now + 1) << "TTL 0: the 1 s floor";
}

TEST_F(PolicyServiceTest, single_flight_many_callers_share_one_lookup) {
  resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=abc"});
  fetcher.bodies["example.com"] = kEnforceBody;
  std::vector<LookupResult> results = lookup_concurrently("example.com", 50);
  ASSERT_EQ(results.size(), 50u);
  for (const LookupResult& result : results) EXPECT_EQ(result.answer.mode, Mode::enforce);
  EXPECT_EQ(resolver.queries["_mta-sts.example.com"], 1);
  EXPECT_EQ(fetcher.fetches["example.com"], 1);
  EXPECT_EQ(store.saves, 1);
}

TEST_F(PolicyServiceTest, STS25_unfetchable_policy_answers_none_and_strict_fail) {
  resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=abc"});
  EXPECT_EQ(lookup("example.com").answer.kind, AnswerKind::no_policy);
  PolicyService strict(
      io.get_executor(), store, resolver, fetcher, [this] { return now; },
      [] {
        ServiceOptions options;
        options.strict = true;
        options.lookup_timeout = std::chrono::milliseconds(1000);
        return options;
      }(),
      std::make_shared<spdlog::logger>("strict"));
  std::optional<LookupResult> result;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { result = co_await strict.lookup("example.com"); },
      asio::detached);
  io.restart();
  io.run();
  ASSERT_TRUE(result);
  EXPECT_EQ(result->answer.kind, AnswerKind::fail);
  EXPECT_EQ(fetcher.fetches["example.com"], 1) << "STS-23: the backoff holds across services";
}

TEST_F(PolicyServiceTest, three_outcomes_servfail_is_not_no_record) {
  resolver.set_failure("_mta-sts.example.com", dns::Status::servfail);
  LookupResult result = lookup("example.com");
  EXPECT_EQ(result.answer.kind, AnswerKind::no_policy);
  ASSERT_TRUE(result.entry);
  EXPECT_TRUE(result.entry->unavailable);
  EXPECT_EQ(result.entry->next_check, kT0 + Timing{}.dns_retry);
}

TEST_F(PolicyServiceTest, STS13_invalid_policy_body_is_a_fetch_failure) {
  resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=abc"});
  fetcher.bodies["example.com"] = "version: STSv2\nmode: enforce\n";
  LookupResult result = lookup("example.com");
  EXPECT_EQ(result.answer.kind, AnswerKind::no_policy);
  ASSERT_TRUE(result.entry);
  EXPECT_TRUE(result.entry->last_error.starts_with("policy_syntax:")) << result.entry->last_error;
}

TEST_F(PolicyServiceTest, refresh_consults_dns_even_when_fresh) {
  resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=abc"});
  fetcher.bodies["example.com"] = kEnforceBody;
  lookup("example.com");
  resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=def"});
  fetcher.bodies["example.com"] =
      "version: STSv1\nmode: testing\nmx: mx1.example.com\nmax_age: 86400\n";
  std::optional<LookupResult> result;
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { result = co_await service.refresh("example.com"); },
      asio::detached);
  io.restart();
  io.run();
  ASSERT_TRUE(result);
  EXPECT_EQ(result->answer.mode, Mode::testing);
  EXPECT_EQ(fetcher.fetches["example.com"], 2);
}

}  // namespace
}  // namespace mtasts
