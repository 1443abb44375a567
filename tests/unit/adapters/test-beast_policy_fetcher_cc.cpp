// BeastPolicyFetcher against the test world: real DNS (through UnboundResolver), real TLS with
// the world's test CA, real HTTP fault modes. Rows name the checklist rule they exercise.
#include "adapters/https/beast_policy_fetcher.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <utility>

#include "adapters/dns/unbound_resolver.hpp"
#include "unit/adapters/world_process.hpp"

namespace {

using namespace mtasts;
using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kPolicy =
    "version: STSv1\nmode: enforce\nmx: mx1.fetch.example\nmax_age: 86400\n";

json host(json spec) {
  if (!spec.contains("body")) spec["body"] = kPolicy;
  return spec;
}

json fetcher_manifest() {
  return json{
      {"dns", json::object()},
      {"https",
       {
           {"mta-sts.ok.fetch.example", host({})},
           {"mta-sts.charset.fetch.example",
            host({{"content_type", "Text/Plain; charset=UTF-8; format=flowed"}})},
           {"mta-sts.html.fetch.example", host({{"content_type", "text/html"}})},
           {"mta-sts.noct.fetch.example", host({{"content_type", nullptr}})},
           {"mta-sts.notfound.fetch.example", host({{"status", 404}})},
           {"mta-sts.error.fetch.example", host({{"status", 500}})},
           {"mta-sts.created.fetch.example", host({{"status", 201}})},
           {"mta-sts.redirect.fetch.example",
            host({{"status", 301},
                  {"location", "https://mta-sts.target.fetch.example/.well-known/mta-sts.txt"}})},
           {"mta-sts.target.fetch.example", host({})},
           {"mta-sts.expired.fetch.example", host({{"cert", "expired"}})},
           {"mta-sts.wrongname.fetch.example", host({{"cert", "wrong-name"}})},
           {"mta-sts.selfsigned.fetch.example", host({{"cert", "self-signed"}})},
           {"mta-sts.cnonly.fetch.example", host({{"cert", "cn-only"}})},
           {"mta-sts.untrusted.fetch.example", host({{"cert", "untrusted"}})},
           {"mta-sts.wildcard.fetch.example", host({{"cert", "wildcard"}})},
           {"mta-sts.deep.wild.fetch.example", host({{"cert", "wildcard-too-deep"}})},
           {"mta-sts.stall.fetch.example", host({{"behaviour", "stall"}})},
           {"mta-sts.trickle.fetch.example", host({{"behaviour", "trickle"}})},
           {"mta-sts.huge.fetch.example", host({{"behaviour", "huge"}})},
           {"mta-sts.chunked.fetch.example", host({{"behaviour", "endless-chunked"}})},
           {"mta-sts.headers.fetch.example", host({{"behaviour", "endless-headers"}})},
           {"mta-sts.handshake.fetch.example", host({{"behaviour", "handshake-stall"}})},
           {"mta-sts.refused.fetch.example", host({{"address", "refused"}})},
           {"mta-sts.blackhole.fetch.example", host({{"address", "blackhole"}})},
           {"mta-sts.max.fetch.example", host({{"size", 64 * 1024}})},
           {"mta-sts.over.fetch.example", host({{"size", 64 * 1024 + 1}})},
           {"mta-sts.cache.fetch.example",
            host({{"headers",
                   {{"Cache-Control", "max-age=86400"},
                    {"ETag", "\"policy-a\""},
                    {"Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT"}}}})},
       }},
      {"domains", {{"fetch.example", "BeastPolicyFetcher unit tests"}}},
  };
}

struct Outcome {
  std::expected<std::string, Error> result;
  std::chrono::milliseconds elapsed;
};

// One fetch of `domain` with `options`, resolving through `dns_server`, run to its end.
Outcome run_fetch(const std::string& dns_server, https::BeastPolicyFetcherOptions options,
                  const std::string& domain) {
  asio::io_context io;
  dns::UnboundOptions dns_options;
  dns_options.servers = {dns_server};
  dns::UnboundResolver resolver(io.get_executor(), dns_options);
  https::BeastPolicyFetcher fetcher(resolver, std::move(options));

  std::optional<std::expected<std::string, Error>> out;
  const auto start = std::chrono::steady_clock::now();
  asio::co_spawn(io, fetcher.fetch(domain),
                 [&](std::exception_ptr error, std::expected<std::string, Error> result) {
                   if (error) std::rethrow_exception(error);
                   out = std::move(result);
                 });
  io.run();
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  return {std::move(*out), elapsed};
}

class FetcherWorld : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { world_ = new test::WorldProcess(fetcher_manifest()); }
  static void TearDownTestSuite() {
    delete world_;
    world_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(world_->ok()) << "test world: " << world_->error(); }

  static Outcome fetch(const std::string& domain, std::chrono::milliseconds timeout = 5s,
                       bool trust_world_ca = true) {
    https::BeastPolicyFetcherOptions options;
    options.port = world_->https_port();
    if (trust_world_ca) options.ca_file = world_->ca_file();
    options.timeout = timeout;
    return run_fetch(world_->dns(), std::move(options), domain);
  }

  // Requests the world logged for one policy host (by SNI).
  static std::vector<json> requests_for(const std::string& policy_host) {
    std::vector<json> out;
    const json log = world_->log();
    if (!log.is_object() || !log.contains("https")) return out;
    for (const json& entry : log["https"]) {
      if (entry.value("sni", json()).is_string() && entry["sni"] == policy_host) {
        out.push_back(entry);
      }
    }
    return out;
  }

  static test::WorldProcess* world_;
};

test::WorldProcess* FetcherWorld::world_ = nullptr;

void expect_error(const std::expected<std::string, Error>& result, ErrorCategory category,
                  std::string_view reason_part, std::string_view host) {
  ASSERT_FALSE(result.has_value()) << "unexpected body: " << result.value();
  EXPECT_EQ(result.error().category, category)
      << to_string(result.error().category) << ": " << result.error().reason;
  EXPECT_NE(result.error().reason.find(reason_part), std::string::npos) << result.error().reason;
  // Every reason names the host.
  EXPECT_NE(result.error().reason.find(host), std::string::npos) << result.error().reason;
}

TEST_F(FetcherWorld, OkReturnsTheBody) {
  auto outcome = fetch("ok.fetch.example");
  ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().reason;
  EXPECT_EQ(*outcome.result, kPolicy);
}

TEST_F(FetcherWorld, Sts11Sts22Sts45RequestAsLogged) {
  ASSERT_TRUE(fetch("ok.fetch.example").result.has_value());
  const auto requests = requests_for("mta-sts.ok.fetch.example");
  ASSERT_FALSE(requests.empty());
  const json& request = requests.back();
  EXPECT_EQ(request["sni"], "mta-sts.ok.fetch.example");  // STS-45
  EXPECT_EQ(request["method"], "GET");                    // STS-11
  EXPECT_EQ(request["path"], "/.well-known/mta-sts.txt");
  const std::string host_header = request["host"];
  EXPECT_TRUE(host_header.starts_with("mta-sts.ok.fetch.example")) << host_header;
  const json& headers = request["headers"];
  EXPECT_EQ(headers.value("user-agent", ""), "mtasts/0.1");
  EXPECT_EQ(headers.value("connection", ""), "close");
  // STS-22: no HTTP caching.
  for (const char* banned : {"if-none-match", "if-modified-since", "cache-control", "if-match",
                             "if-unmodified-since", "if-range"}) {
    EXPECT_FALSE(headers.contains(banned)) << banned;
  }
}

TEST_F(FetcherWorld, Sts22NoConditionalRequestAfterCacheableResponse) {
  ASSERT_TRUE(fetch("cache.fetch.example").result.has_value());
  ASSERT_TRUE(fetch("cache.fetch.example").result.has_value());
  const auto requests = requests_for("mta-sts.cache.fetch.example");
  ASSERT_EQ(requests.size(), 2u);
  for (const json& request : requests) {
    EXPECT_FALSE(request["headers"].contains("if-none-match"));
    EXPECT_FALSE(request["headers"].contains("if-modified-since"));
    EXPECT_FALSE(request["headers"].contains("cache-control"));
  }
}

TEST_F(FetcherWorld, Sts12CharsetAndCaseAccepted) {
  auto outcome = fetch("charset.fetch.example");
  ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().reason;
  EXPECT_EQ(*outcome.result, kPolicy);
}

TEST_F(FetcherWorld, Sts12TextHtmlRejected) {
  expect_error(fetch("html.fetch.example").result, ErrorCategory::policy_syntax,
               "Content-Type text/html from mta-sts.html.fetch.example; RFC 8461 §3.2 requires "
               "text/plain",
               "mta-sts.html.fetch.example");
}

TEST_F(FetcherWorld, Sts12MissingContentTypeRejected) {
  expect_error(fetch("noct.fetch.example").result, ErrorCategory::policy_syntax, "no Content-Type",
               "mta-sts.noct.fetch.example");
}

TEST_F(FetcherWorld, Sts20OnlyStatus200) {
  expect_error(fetch("notfound.fetch.example").result, ErrorCategory::fetch_failed, "HTTP 404",
               "mta-sts.notfound.fetch.example");
  expect_error(fetch("error.fetch.example").result, ErrorCategory::fetch_failed, "HTTP 500",
               "mta-sts.error.fetch.example");
  expect_error(fetch("created.fetch.example").result, ErrorCategory::fetch_failed, "HTTP 201",
               "mta-sts.created.fetch.example");
}

TEST_F(FetcherWorld, Sts21RedirectNotFollowed) {
  world_->clear_log();
  expect_error(fetch("redirect.fetch.example").result, ErrorCategory::fetch_failed,
               "HTTP 301 from mta-sts.redirect.fetch.example; redirects are not allowed (RFC 8461 "
               "§3.3)",
               "mta-sts.redirect.fetch.example");
  EXPECT_EQ(requests_for("mta-sts.redirect.fetch.example").size(), 1u);
  EXPECT_TRUE(requests_for("mta-sts.target.fetch.example").empty());
}

TEST_F(FetcherWorld, Sts18CertificateFailures) {
  struct Row {
    const char* domain;
    const char* openssl_says;
  };
  const Row rows[] = {
      {"expired.fetch.example", "expired"},
      {"wrongname.fetch.example", "hostname mismatch"},
      {"selfsigned.fetch.example", "self-signed"},
      {"cnonly.fetch.example", "hostname mismatch"},  // CN is never consulted
      {"untrusted.fetch.example", "local issuer"},
      {"deep.wild.fetch.example", "hostname mismatch"},  // *.fetch.example is one label only
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.domain);
    const std::string policy_host = std::string("mta-sts.") + row.domain;
    expect_error(fetch(row.domain).result, ErrorCategory::webpki_invalid, row.openssl_says,
                 policy_host);
  }
}

TEST_F(FetcherWorld, Sts18WildcardAsWholeLeftLabelAccepted) {
  auto outcome = fetch("wildcard.fetch.example");
  ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().reason;
}

TEST_F(FetcherWorld, Sts18TestCaNotTrustedWithoutCaFile) {
  // The CA is added to the system store only when configured.
  expect_error(fetch("ok.fetch.example", 5s, false).result, ErrorCategory::webpki_invalid,
               "local issuer", "mta-sts.ok.fetch.example");
}

TEST_F(FetcherWorld, Sts24StallAndTrickleEndAtTheDeadline) {
  for (const char* domain : {"stall.fetch.example", "trickle.fetch.example",
                             "handshake.fetch.example", "blackhole.fetch.example"}) {
    SCOPED_TRACE(domain);
    auto outcome = fetch(domain, 1500ms);
    expect_error(outcome.result, ErrorCategory::fetch_failed, "did not answer within 1500 ms",
                 std::string("mta-sts.") + domain);
    EXPECT_GE(outcome.elapsed, 1400ms);
    EXPECT_LT(outcome.elapsed, 3000ms);
  }
}

TEST_F(FetcherWorld, Sts24BodyCap) {
  // Exactly 64 KiB is accepted, one byte more is not.
  auto max = fetch("max.fetch.example");
  ASSERT_TRUE(max.result.has_value()) << max.result.error().reason;
  EXPECT_EQ(max.result->size(), 64u * 1024u);

  expect_error(fetch("over.fetch.example").result, ErrorCategory::fetch_failed, "exceeds 65536",
               "mta-sts.over.fetch.example");
  expect_error(fetch("huge.fetch.example").result, ErrorCategory::fetch_failed, "exceeds 65536",
               "mta-sts.huge.fetch.example");
}

TEST_F(FetcherWorld, Sts24EndlessChunkedAndHeadersFail) {
  auto chunked = fetch("chunked.fetch.example", 1500ms);
  expect_error(chunked.result, ErrorCategory::fetch_failed, "did not answer within 1500 ms",
               "mta-sts.chunked.fetch.example");
  EXPECT_LT(chunked.elapsed, 3000ms);

  auto headers = fetch("headers.fetch.example", 5000ms);
  expect_error(headers.result, ErrorCategory::fetch_failed, "exceeds 8192",
               "mta-sts.headers.fetch.example");
}

TEST_F(FetcherWorld, Sts24EndlessChunkedHitsTheBodyCap) {
  // The same stream with a small cap: the size limit, not the clock, ends it.
  https::BeastPolicyFetcherOptions options;
  options.port = world_->https_port();
  options.ca_file = world_->ca_file();
  options.max_body = 512;
  expect_error(run_fetch(world_->dns(), std::move(options), "chunked.fetch.example").result,
               ErrorCategory::fetch_failed, "exceeds 512", "mta-sts.chunked.fetch.example");
}

TEST_F(FetcherWorld, RefusedConnectionFailsFast) {
  auto outcome = fetch("refused.fetch.example", 1500ms);
  expect_error(outcome.result, ErrorCategory::fetch_failed, "cannot connect",
               "mta-sts.refused.fetch.example");
  EXPECT_NE(outcome.result.error().reason.find("127.0.0.2"), std::string::npos)
      << outcome.result.error().reason;
  EXPECT_LT(outcome.elapsed, 1500ms);
}

TEST_F(FetcherWorld, NoPolicyHostInDns) {
  expect_error(fetch("absent.fetch.example").result, ErrorCategory::fetch_failed,
               "no A or AAAA record", "mta-sts.absent.fetch.example");
}

TEST_F(FetcherWorld, MalformedDomainRejectedBeforeAnyIo) {
  auto outcome = fetch("bad domain\r\nX-Injected: 1");
  ASSERT_FALSE(outcome.result.has_value());
  EXPECT_EQ(outcome.result.error().category, ErrorCategory::invalid_domain);
}

TEST(BeastPolicyFetcherConfig, UnreadableCaFileIsReported) {
  https::BeastPolicyFetcherOptions options;
  options.ca_file = "/nonexistent/ca.pem";
  expect_error(run_fetch("127.0.0.1:9", std::move(options), "example.net").result,
               ErrorCategory::fetch_failed, "/nonexistent/ca.pem", "mta-sts.example.net");
}

}  // namespace
