// UnboundResolver: real queries against the test world's DNS. The RDATA parsers it calls are
// tested in test-dns_wire_cc.cpp.
#include "adapters/dns/unbound_resolver.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "unit/adapters/world_process.hpp"

namespace {

using namespace mtasts;
using namespace mtasts::dns;

// ---------------------------------------------------------------------------------------------
// Against the test world.

template <class T>
T run(asio::awaitable<T> task) {
  asio::io_context io;
  std::optional<T> out;
  asio::co_spawn(io, std::move(task), [&](std::exception_ptr error, T value) {
    if (error) std::rethrow_exception(error);
    out = std::move(value);
  });
  io.run();
  return std::move(*out);
}

nlohmann::json resolver_manifest() {
  using nlohmann::json;
  return json{
      {"dns",
       {
           {"single.resolver.example",
            {{"TXT", json::array({json::array({"v=STSv1; id=abc123"})})}, {"ttl", 300}}},
           {"multi.resolver.example",
            {{"TXT", json::array({json::array({"v=STSv1; ", "id=", "20240101"})})}}},
           {"two.resolver.example",
            {{"TXT", json::array({json::array({"first"}), json::array({"second"})})}}},
           {"alias1.resolver.example", {{"CNAME", "alias2.resolver.example"}}},
           {"alias2.resolver.example", {{"CNAME", "target.resolver.example"}}},
           {"target.resolver.example",
            {{"TXT", json::array({json::array({"v=STSv1; id=cname"})})},
             {"A", json::array({"192.0.2.7"})}}},
           {"mail.resolver.example",
            {{"MX", json::array({json::array({10, "MX1.Resolver.Example."}),
                                 json::array({20, "mx2.resolver.example"})})},
             {"A", json::array({"192.0.2.1"})}}},
           {"hosts.resolver.example",
            {{"A", json::array({"192.0.2.10", "192.0.2.11"})},
             {"AAAA", json::array({"2001:db8::10"})}}},
           {"v6only.resolver.example", {{"AAAA", json::array({"2001:db8::6"})}}},
           {"servfail.resolver.example", {{"fault", "servfail"}}},
           {"refused.resolver.example", {{"fault", "refused"}}},
           {"timeout.resolver.example", {{"fault", "timeout"}}},
       }},
      {"https", json::object()},
      {"domains", {{"resolver.example", "UnboundResolver unit tests"}}},
  };
}

class UnboundWorld : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { world_ = new test::WorldProcess(resolver_manifest()); }
  static void TearDownTestSuite() {
    delete world_;
    world_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(world_->ok()) << "test world: " << world_->error(); }

  // A fresh resolver per test: one test's timeout must not mark the server down for the next.
  static std::unique_ptr<UnboundResolver> resolver(
      asio::io_context& io, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    UnboundOptions options;
    options.servers = {world_->dns()};
    options.timeout = timeout;
    return std::make_unique<UnboundResolver>(io.get_executor(), options);
  }

  template <class T>
  static T query(std::chrono::milliseconds timeout,
                 std::function<asio::awaitable<T>(UnboundResolver&)> call) {
    asio::io_context io;
    auto r = resolver(io, timeout);
    std::optional<T> out;
    asio::co_spawn(io, call(*r), [&](std::exception_ptr error, T value) {
      if (error) std::rethrow_exception(error);
      out = std::move(value);
    });
    io.run();
    return std::move(*out);
  }

  static Answer<std::string> txt(const std::string& name,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    return query<Answer<std::string>>(timeout, [name](UnboundResolver& r) { return r.txt(name); });
  }

  static test::WorldProcess* world_;
};

test::WorldProcess* UnboundWorld::world_ = nullptr;

TEST_F(UnboundWorld, TxtSingleString) {
  auto answer = txt("single.resolver.example");
  ASSERT_EQ(answer.status, Status::ok) << answer.detail;
  EXPECT_EQ(answer.records, std::vector<std::string>{"v=STSv1; id=abc123"});
  EXPECT_EQ(answer.canonical_name, "single.resolver.example");
  EXPECT_GT(answer.ttl, 0u);
  // No trust anchor: nothing was validated, so never "secure".
  EXPECT_EQ(answer.security, Security::insecure);
}

TEST_F(UnboundWorld, TxtMultiStringConcatenated) {
  // STS-08: character-strings joined with nothing between them.
  auto answer = txt("multi.resolver.example");
  ASSERT_EQ(answer.status, Status::ok) << answer.detail;
  EXPECT_EQ(answer.records, std::vector<std::string>{"v=STSv1; id=20240101"});
}

TEST_F(UnboundWorld, TxtTwoRecordsStayApart) {
  auto answer = txt("two.resolver.example");
  ASSERT_EQ(answer.status, Status::ok) << answer.detail;
  std::vector<std::string> records = answer.records;
  std::ranges::sort(records);
  EXPECT_EQ(records, (std::vector<std::string>{"first", "second"}));
}

TEST_F(UnboundWorld, CnameChainIsFollowed) {
  // STS-09: _mta-sts may be a CNAME chain.
  auto answer = txt("alias1.resolver.example");
  ASSERT_EQ(answer.status, Status::ok) << answer.detail;
  EXPECT_EQ(answer.records, std::vector<std::string>{"v=STSv1; id=cname"});
  EXPECT_EQ(answer.canonical_name, "target.resolver.example");
}

TEST_F(UnboundWorld, NxdomainAndNodataAreDistinct) {
  auto missing = txt("no-such-name.resolver.example");
  EXPECT_EQ(missing.status, Status::nxdomain) << missing.detail;
  EXPECT_TRUE(missing.records.empty());

  auto no_txt = txt("hosts.resolver.example");
  EXPECT_EQ(no_txt.status, Status::nodata) << no_txt.detail;
  EXPECT_TRUE(no_txt.records.empty());
}

TEST_F(UnboundWorld, ServfailAndRefusedCannotTell) {
  auto servfail = txt("servfail.resolver.example");
  EXPECT_EQ(servfail.status, Status::servfail) << servfail.detail;
  EXPECT_FALSE(servfail.detail.empty());

  auto refused = txt("refused.resolver.example");
  EXPECT_EQ(refused.status, Status::servfail) << refused.detail;
}

TEST_F(UnboundWorld, TimeoutHonoursTheDeadline) {
  const auto start = std::chrono::steady_clock::now();
  auto answer = txt("timeout.resolver.example", std::chrono::milliseconds(800));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(answer.status, Status::timeout) << answer.detail;
  EXPECT_NE(answer.detail.find("800 ms"), std::string::npos) << answer.detail;
  EXPECT_GE(elapsed, std::chrono::milliseconds(700));
  EXPECT_LT(elapsed, std::chrono::milliseconds(3000));
}

TEST_F(UnboundWorld, MxParsed) {
  auto answer = query<Answer<MxRecord>>(
      std::chrono::seconds(5), [](UnboundResolver& r) { return r.mx("mail.resolver.example"); });
  ASSERT_EQ(answer.status, Status::ok) << answer.detail;
  std::vector<std::pair<int, std::string>> got;
  for (const auto& record : answer.records) got.emplace_back(record.preference, record.host);
  std::ranges::sort(got);
  EXPECT_EQ(got, (std::vector<std::pair<int, std::string>>{{10, "mx1.resolver.example"},
                                                           {20, "mx2.resolver.example"}}));
}

TEST_F(UnboundWorld, AddressesAskForAAndAaaa) {
  auto answer = query<Answer<std::string>>(std::chrono::seconds(5), [](UnboundResolver& r) {
    return r.addresses("hosts.resolver.example");
  });
  ASSERT_EQ(answer.status, Status::ok) << answer.detail;
  std::vector<std::string> got = answer.records;
  std::ranges::sort(got);
  EXPECT_EQ(got, (std::vector<std::string>{"192.0.2.10", "192.0.2.11", "2001:db8::10"}));
  // IPv4 first.
  EXPECT_EQ(answer.records.back(), "2001:db8::10");

  auto v6only = query<Answer<std::string>>(std::chrono::seconds(5), [](UnboundResolver& r) {
    return r.addresses("v6only.resolver.example");
  });
  ASSERT_EQ(v6only.status, Status::ok) << v6only.detail;
  EXPECT_EQ(v6only.records, std::vector<std::string>{"2001:db8::6"});

  auto through_cname = query<Answer<std::string>>(std::chrono::seconds(5), [](UnboundResolver& r) {
    return r.addresses("alias1.resolver.example");
  });
  ASSERT_EQ(through_cname.status, Status::ok) << through_cname.detail;
  EXPECT_EQ(through_cname.records, std::vector<std::string>{"192.0.2.7"});

  auto none = query<Answer<std::string>>(std::chrono::seconds(5), [](UnboundResolver& r) {
    return r.addresses("nothing-here.resolver.example");
  });
  EXPECT_EQ(none.status, Status::nxdomain) << none.detail;
}

TEST_F(UnboundWorld, TlsaNodataWhereNonePublished) {
  auto answer = query<Answer<TlsaRecord>>(std::chrono::seconds(5), [](UnboundResolver& r) {
    return r.tlsa("_25._tcp.mail.resolver.example");
  });
  EXPECT_TRUE(answer.status == Status::nxdomain || answer.status == Status::nodata)
      << to_string(answer.status) << ": " << answer.detail;
}

TEST_F(UnboundWorld, ManyConcurrentQueriesOnOneResolver) {
  asio::io_context io;
  auto r = resolver(io);
  int done = 0;
  const std::vector<std::string> names = {"single.resolver.example", "multi.resolver.example",
                                          "alias1.resolver.example", "no-such.resolver.example"};
  for (int i = 0; i < 40; ++i) {
    const std::string& name = names[static_cast<std::size_t>(i) % names.size()];
    asio::co_spawn(io, r->txt(name), [&, name](std::exception_ptr error, Answer<std::string> a) {
      ASSERT_FALSE(error);
      if (name.starts_with("no-such")) {
        EXPECT_EQ(a.status, Status::nxdomain);
      } else {
        EXPECT_EQ(a.status, Status::ok) << name << ": " << a.detail;
      }
      ++done;
    });
  }
  io.run();
  EXPECT_EQ(done, 40);
}

TEST_F(UnboundWorld, QueryOutlivesTheResolverObject) {
  asio::io_context io;
  auto r = resolver(io);
  std::optional<Answer<std::string>> out;
  asio::co_spawn(io, r->txt("single.resolver.example"),
                 [&](std::exception_ptr, Answer<std::string> a) { out = std::move(a); });
  r.reset();
  io.run();
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(out->status, Status::ok) << out->detail;
}

TEST_F(UnboundWorld, WithTrustAnchorUnsignedWorldIsNeverSecure) {
  // The world signs nothing: a validating resolver must not call its answers secure.
  // The root zone's KSK-2017 as a DS record (what /usr/share/dns/root.key holds).
  const std::string anchor =
      (std::filesystem::temp_directory_path() / ("mtasts-root-" + std::to_string(getpid())))
          .string();
  std::ofstream(anchor) << ". IN DS 20326 8 2 "
                           "E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n";
  asio::io_context io;
  UnboundOptions options;
  options.servers = {world_->dns()};
  options.trust_anchor_file = anchor;
  options.timeout = std::chrono::seconds(3);
  UnboundResolver r(io.get_executor(), options);
  std::optional<Answer<std::string>> out;
  asio::co_spawn(io, r.txt("single.resolver.example"),
                 [&](std::exception_ptr, Answer<std::string> a) { out = std::move(a); });
  io.run();
  ASSERT_TRUE(out.has_value());
  EXPECT_NE(out->security, Security::secure) << to_string(out->status) << ": " << out->detail;
  if (out->security == Security::bogus) {
    EXPECT_FALSE(out->detail.empty());
  }
  std::filesystem::remove(anchor);
}

TEST(UnboundConfig, BadServerIsAnErrorNotACrash) {
  UnboundOptions options;
  options.servers = {"not-an-address"};
  asio::io_context io;
  UnboundResolver r(io.get_executor(), options);
  auto answer = run(r.txt("example.net"));
  EXPECT_EQ(answer.status, Status::error);
  EXPECT_NE(answer.detail.find("not-an-address"), std::string::npos) << answer.detail;
}

TEST(UnboundConfig, MissingTrustAnchorFileIsAnError) {
  UnboundOptions options;
  options.servers = {"127.0.0.1:9"};
  options.trust_anchor_file = "/nonexistent/root.key";
  asio::io_context io;
  UnboundResolver r(io.get_executor(), options);
  auto answer = run(r.txt("example.net"));
  EXPECT_EQ(answer.status, Status::error);
  EXPECT_NE(answer.detail.find("/nonexistent/root.key"), std::string::npos) << answer.detail;
  EXPECT_NE(answer.security, Security::secure);
}

TEST(UnboundConfig, CreationIsLazy) {
  // Nothing is opened until the first query: constructing and destroying is free.
  asio::io_context io;
  for (int i = 0; i < 1000; ++i) {
    UnboundResolver r(io.get_executor());
  }
  SUCCEED();
}

}  // namespace
