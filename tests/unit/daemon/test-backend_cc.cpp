// mtastsd's Backend over a fake Wiring: what it adds to the AnswerService (waiting for the group
// commit before answering, the metrics, the MX memo, the background count a stop waits for).
#include "daemon/backend.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "unit/service/fake_wiring.hpp"

namespace mtasts::daemon {
namespace {

using namespace std::chrono_literals;

const char* kEnforceBody = "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n";

class BackendTest : public ::testing::Test {
 protected:
  BackendTest()
      : lookups(std::make_shared<Counter>(io.get_executor())),
        activity(std::make_shared<Activity>()) {
    config.lookup_timeout = 2000ms;
    backend = std::make_shared<Backend>(
        io.get_executor(), config,
        std::shared_ptr<store::SharedStore>(&wiring.shared_store, [](store::SharedStore*) {}),
        nullptr, wiring,
        std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>()),
        lookups, activity);
    activity->listen(Activity::Listeners{
        [this](const std::string& domain) { used.push_back(domain); },
        [this](const std::string& domain, const CacheEntry&) { learnt.push_back(domain); },
        [this] { ++cache_writes; }});
  }

  // Starts an answer; the test runs the loop.
  std::shared_ptr<std::optional<std::expected<Answered, Error>>> start(std::string raw) {
    auto out = std::make_shared<std::optional<std::expected<Answered, Error>>>();
    asio::co_spawn(
        io,
        [this, out, raw]() -> asio::awaitable<void> {
          *out = co_await backend->service().answer(raw);
        },
        asio::detached);
    return out;
  }

  std::string metrics() const { return activity->metrics.render(Gauges{}); }

  asio::io_context io;
  testing::FakeWiring wiring;
  Config config;
  std::shared_ptr<Counter> lookups;
  std::shared_ptr<Activity> activity;
  std::shared_ptr<Backend> backend;
  std::vector<std::string> used;
  std::vector<std::string> learnt;
  int cache_writes = 0;
};

TEST_F(BackendTest, a_looked_up_answer_waits_for_its_commit) {
  wiring.resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=1;"});
  wiring.fetcher.bodies["example.com"] = kEnforceBody;
  wiring.shared_store.auto_commit = false;

  auto out = start("example.com");
  io.run_for(300ms);  // DNS and the fetch are done long before; the commit is not
  EXPECT_FALSE(out->has_value());
  EXPECT_EQ(lookups->value(), 1u);
  ASSERT_EQ(wiring.shared_store.waiting.size(), 1u);

  wiring.shared_store.release_commits();
  io.restart();
  io.run();
  ASSERT_TRUE(out->has_value());
  ASSERT_TRUE(out->value().has_value());
  EXPECT_EQ(out->value()->path, AnswerPath::miss);
  EXPECT_EQ(out->value()->result.answer.mode, Mode::enforce);
  EXPECT_EQ(lookups->value(), 0u);
  EXPECT_EQ(learnt, std::vector<std::string>{"example.com"});
  EXPECT_EQ(used, std::vector<std::string>{"example.com"});
  EXPECT_EQ(cache_writes, 1);
}

TEST_F(BackendTest, metrics_count_hits_misses_and_fetches_but_not_literals) {
  wiring.resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=1;"});
  wiring.fetcher.bodies["example.com"] = kEnforceBody;
  start("example.com");
  start("example.com");  // shares the first one's flight
  io.run();
  io.restart();
  start("EXAMPLE.com.");
  start("[192.0.2.7]");
  io.run();
  const std::string text = metrics();
  EXPECT_NE(text.find("mtastsd_cache_hits_total 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("mtastsd_cache_misses_total{result=\"answered\"} 2\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("outcome=\"ok\"} 1\n"), std::string::npos) << text;
  EXPECT_EQ(wiring.fetcher.fetches["example.com"], 1);
}

TEST_F(BackendTest, mx_hosts_are_memoized_for_their_ttl) {
  wiring.resolver.mx_answers["example.net"] = dns::Answer<dns::MxRecord>{
      dns::Status::ok,
      dns::Security::insecure,
      {dns::MxRecord{10, "MX1.example.NET."}, dns::MxRecord{20, "bad name!"}},
      600,
      "example.net",
      ""};
  std::vector<std::string> first;
  std::vector<std::string> second;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        first = co_await backend->mx_hosts("example.net");
        second = co_await backend->mx_hosts("example.net");
      },
      asio::detached);
  io.run();
  // Only well-formed names, normalized; the second call makes no query.
  EXPECT_EQ(first, std::vector<std::string>{"mx1.example.net"});
  EXPECT_EQ(second, first);
  EXPECT_EQ(wiring.resolver.queries["example.net"], 1);
}

}  // namespace
}  // namespace mtasts::daemon
