// AnswerService, the one way into the engine, over fakes: the literal rule, the hit check, the
// deadline with its fallback, stale-while-revalidate, and what it tells its front-end. And the
// blocking Engine that runs it for the CLI and the Exim module.
#include "service/answer_service.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include "service/engine.hpp"
#include "unit/service/fake_wiring.hpp"

namespace mtasts {
namespace {

using namespace std::chrono_literals;

constexpr UnixTime kT0 = 1'700'000'000;
const char* kEnforceBody = "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 86400\n";

std::shared_ptr<spdlog::logger> quiet() {
  return std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
}

// Records what the service tells its front-end.
struct RecordingEvents final : AnswerEvents {
  std::shared_ptr<void> background_started() override {
    ++started;
    return nullptr;
  }
  void background_finished() override { ++finished; }
  asio::awaitable<void> stored(const LookupResult& result) override {
    stored_domains.push_back(result.domain);
    co_return;
  }
  void fetched(std::string_view outcome) override { fetches.emplace_back(outcome); }
  int started = 0;
  int finished = 0;
  std::vector<std::string> stored_domains;
  std::vector<std::string> fetches;
};

class AnswerServiceTest : public ::testing::Test {
 protected:
  void make(bool serve_stale, std::chrono::milliseconds timeout = 2000ms) {
    AnswerOptions options;
    options.service.lookup_timeout = timeout;
    options.serve_stale = serve_stale;
    service = std::make_unique<AnswerService>(
        io.get_executor(), wiring.shared_store,
        wiring.network(io.get_executor(), Config{}, Concurrency::many_lookups),
        [this] { return now; }, options, quiet(), events);
  }

  std::expected<Answered, Error> answer(std::string_view raw) {
    std::optional<std::expected<Answered, Error>> out;
    asio::co_spawn(
        io, [&]() -> asio::awaitable<void> { out = co_await service->answer(raw); },
        asio::detached);
    // Runs until the answer is in; background work may still be queued.
    io.restart();
    while (!out && io.run_one() > 0) {
    }
    EXPECT_TRUE(out.has_value()) << "the answer never came";
    if (!out) return std::unexpected(Error{ErrorCategory::internal, "no answer"});
    return std::move(*out);
  }

  void publish(const std::string& domain, const std::string& id, std::uint32_t ttl = 3600) {
    wiring.resolver.set_txt("_mta-sts." + domain, {"v=STSv1; id=" + id + ";"}, ttl);
    wiring.fetcher.bodies[domain] = kEnforceBody;
  }

  asio::io_context io;
  testing::FakeWiring wiring;
  RecordingEvents events;
  UnixTime now = kT0;
  std::unique_ptr<AnswerService> service;
};

TEST_F(AnswerServiceTest, STS30_an_address_literal_is_answered_without_cache_or_network) {
  make(false);
  auto answered = answer("[192.0.2.1]");
  ASSERT_TRUE(answered.has_value());
  EXPECT_EQ(answered->path, AnswerPath::literal);
  EXPECT_EQ(answered->result.answer.kind, AnswerKind::no_policy);
  EXPECT_EQ(wiring.shared_store.memory.loads, 0);
  EXPECT_TRUE(wiring.resolver.log.empty());
}

TEST_F(AnswerServiceTest, input_that_is_not_a_hostname_is_an_error_naming_it) {
  make(false);
  auto answered = answer("bad domain");
  ASSERT_FALSE(answered.has_value());
  EXPECT_NE(answered.error().reason.find("bad domain"), std::string::npos);
  EXPECT_TRUE(wiring.resolver.log.empty());
}

TEST_F(AnswerServiceTest, a_miss_looks_up_then_a_hit_uses_no_network) {
  make(false);
  publish("example.com", "1");
  auto first = answer("Example.COM.");
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->path, AnswerPath::miss);
  EXPECT_EQ(first->result.domain, "example.com");
  EXPECT_EQ(first->result.answer.kind, AnswerKind::policy);
  EXPECT_EQ(events.stored_domains, std::vector<std::string>{"example.com"});
  EXPECT_EQ(events.fetches, std::vector<std::string>{"ok"});
  EXPECT_EQ(events.started, 1);
  EXPECT_EQ(events.finished, 1);

  const auto queries = wiring.resolver.log.size();
  auto second = answer("example.com");
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->path, AnswerPath::hit);
  EXPECT_EQ(second->result.answer.kind, AnswerKind::policy);
  EXPECT_EQ(wiring.resolver.log.size(), queries);
}

TEST_F(AnswerServiceTest, a_bad_policy_body_is_told_as_policy_syntax) {
  make(false);
  publish("example.com", "1");
  wiring.fetcher.bodies["example.com"] = "this is not a policy";
  ASSERT_TRUE(answer("example.com").has_value());
  EXPECT_EQ(events.fetches, std::vector<std::string>{"policy_syntax"});
}

TEST_F(AnswerServiceTest, a_lookup_past_the_deadline_answers_from_the_cache_and_goes_on) {
  make(false);
  publish("example.com", "1", 0);  // TTL 0: the next ask re-checks
  ASSERT_EQ(answer("example.com")->path, AnswerPath::miss);
  make(false, 50ms);  // the same cache, a short deadline

  // The cached policy's id is due for a re-check; DNS now takes far longer than the deadline.
  now += 10;
  wiring.resolver.delay = 500ms;
  auto late = answer("example.com");
  ASSERT_TRUE(late.has_value());
  EXPECT_EQ(late->path, AnswerPath::timeout);
  // Never a silent downgrade: the unexpired cached policy still answers.
  EXPECT_EQ(late->result.answer.kind, AnswerKind::policy);
  EXPECT_EQ(late->result.answer.mode, Mode::enforce);
  EXPECT_EQ(events.started, 2);
  EXPECT_EQ(events.finished, 1);  // the lookup is still running
  EXPECT_EQ(events.stored_domains.size(), 1u);

  io.restart();
  io.run();  // the background lookup finishes and is stored for the next caller
  EXPECT_EQ(events.finished, 2);
  EXPECT_EQ(events.stored_domains.size(), 2u);
}

TEST_F(AnswerServiceTest, a_stale_entry_is_served_at_once_and_rechecked_once_in_the_background) {
  make(true);
  publish("example.com", "1", 5);
  ASSERT_EQ(answer("example.com")->path, AnswerPath::miss);

  now += 60;  // past the TXT TTL, well within max_age
  const auto queries = wiring.resolver.queries["_mta-sts.example.com"];
  auto stale = answer("example.com");
  auto again = answer("example.com");
  ASSERT_TRUE(stale.has_value());
  EXPECT_EQ(stale->path, AnswerPath::stale);
  EXPECT_EQ(again->path, AnswerPath::stale);
  EXPECT_EQ(stale->result.answer.kind, AnswerKind::policy);
  io.restart();
  io.run();
  // Two stale answers, one re-check.
  EXPECT_EQ(wiring.resolver.queries["_mta-sts.example.com"], queries + 1);
  EXPECT_EQ(answer("example.com")->path, AnswerPath::hit);
}

TEST_F(AnswerServiceTest, without_serve_stale_a_stale_entry_is_rechecked_inline) {
  make(false);
  publish("example.com", "1", 5);
  ASSERT_EQ(answer("example.com")->path, AnswerPath::miss);
  now += 60;
  EXPECT_EQ(answer("example.com")->path, AnswerPath::miss);
}

// The Engine: the same service, blocking, with the network built only on a miss.
class EngineTest : public ::testing::Test {
 protected:
  std::unique_ptr<Engine> open() {
    Config config;
    config.lookup_timeout = 2000ms;
    auto engine = Engine::open(config, quiet(), wiring);
    EXPECT_TRUE(engine.has_value());
    return std::move(*engine);
  }
  testing::FakeWiring wiring;
};

TEST_F(EngineTest, a_hit_builds_no_network_and_a_literal_needs_no_lookup) {
  auto engine = open();
  wiring.resolver.set_txt("_mta-sts.example.com", {"v=STSv1; id=1;"});
  wiring.fetcher.bodies["example.com"] = kEnforceBody;

  auto literal = engine->answer("[IPv6:2001:db8::1]");
  ASSERT_TRUE(literal.has_value());
  EXPECT_EQ(literal->path, AnswerPath::literal);
  EXPECT_EQ(wiring.networks_built, 0);

  auto miss = engine->answer("example.com");
  ASSERT_TRUE(miss.has_value());
  EXPECT_EQ(miss->path, AnswerPath::miss);
  EXPECT_EQ(miss->result.answer.mode, Mode::enforce);
  EXPECT_EQ(wiring.networks_built, 1);

  auto reopened = open();
  auto hit = reopened->answer("example.com");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->path, AnswerPath::hit);
  EXPECT_EQ(wiring.networks_built, 1);
}

TEST_F(EngineTest, a_lookup_past_the_deadline_is_abandoned_and_answered_from_the_cache) {
  Config config;
  config.lookup_timeout = 50ms;
  auto engine = std::move(*Engine::open(config, quiet(), wiring));
  wiring.resolver.delay = 400ms;
  auto answered = engine->answer("slow.example");
  ASSERT_TRUE(answered.has_value());
  EXPECT_EQ(answered->path, AnswerPath::timeout);
  EXPECT_NE(answered->result.answer.kind, AnswerKind::policy);
  EXPECT_EQ(wiring.networks_built, 1);
  // Abandoned with its half-done work: the next miss builds the network again.
  EXPECT_EQ(engine->answer("slow.example")->path, AnswerPath::timeout);
  EXPECT_EQ(wiring.networks_built, 2);
}

}  // namespace
}  // namespace mtasts
