// BeastHttpsPoster against the test world: real DNS (through UnboundResolver), real TLS with the
// world's test CA, report endpoints that record what was POSTed and answer with a set status.
#include "adapters/report/beast_https_poster.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "adapters/dns/unbound_resolver.hpp"
#include "unit/adapters/world_process.hpp"

namespace {

using namespace mtasts;
using namespace std::chrono_literals;
using nlohmann::json;

constexpr const char* kPath = "/v1/tlsrpt";
constexpr const char* kContentType = "application/tlsrpt+gzip";

json endpoint(json spec) {
  spec["path"] = kPath;
  return spec;
}

json poster_manifest() {
  return json{
      {"dns", json::object()},
      {"https",
       {
           {"ok.post.example", endpoint({{"body", "thanks\n"}})},
           {"created.post.example", endpoint({{"status", 201}})},
           {"busy.post.example", endpoint({{"status", 503}, {"body", "try again later\n"}})},
           {"moved.post.example",
            endpoint({{"status", 302}, {"location", "https://target.post.example/v1/tlsrpt"}})},
           {"target.post.example", endpoint({})},
           {"untrusted.post.example", endpoint({{"cert", "untrusted"}})},
           {"wrongname.post.example", endpoint({{"cert", "wrong-name"}})},
           {"stall.post.example", endpoint({{"behaviour", "stall"}})},
       }},
      {"domains", {{"post.example", "BeastHttpsPoster unit tests"}}},
  };
}

// Every byte value, as a gzip report would carry.
std::string binary_body() {
  std::string body;
  for (int round = 0; round < 40; ++round) {
    for (int byte = 0; byte < 256; ++byte) body += static_cast<char>(byte);
  }
  return body;
}

// The world logs bodies decoded as Latin-1; nlohmann hands them back as UTF-8.
std::string latin1_from_utf8(const std::string& text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte < 0x80 || i + 1 == text.size()) {
      out += static_cast<char>(byte);
    } else {
      const auto next = static_cast<unsigned char>(text[++i]);
      out += static_cast<char>(((byte & 0x1F) << 6) | (next & 0x3F));
    }
  }
  return out;
}

struct Outcome {
  std::expected<void, Error> result;
  std::chrono::milliseconds elapsed;
};

class PosterWorld : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { world_ = new test::WorldProcess(poster_manifest()); }
  static void TearDownTestSuite() {
    delete world_;
    world_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(world_->ok()) << "test world: " << world_->error(); }

  static Outcome post(const std::string& uri, const std::string& body = "{}",
                      std::chrono::milliseconds timeout = 5s, bool trust_world_ca = true,
                      const std::string& content_type = kContentType) {
    asio::io_context io;
    dns::UnboundOptions dns_options;
    dns_options.servers = {world_->dns()};
    dns::UnboundResolver resolver(io.get_executor(), dns_options);
    report::HttpsPostOptions options;
    options.port_override = world_->https_port();
    if (trust_world_ca) options.ca_file = world_->ca_file();
    options.timeout = timeout;
    report::BeastHttpsPoster poster(resolver, std::move(options));

    std::optional<std::expected<void, Error>> out;
    const auto start = std::chrono::steady_clock::now();
    asio::co_spawn(io, poster.post(uri, content_type, body),
                   [&](std::exception_ptr error, std::expected<void, Error> result) {
                     if (error) std::rethrow_exception(error);
                     out = std::move(result);
                   });
    io.run();
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    return {std::move(*out), elapsed};
  }

  // Requests the world logged for one endpoint (by SNI).
  static std::vector<json> requests_for(const std::string& host) {
    std::vector<json> out;
    const json log = world_->log();
    if (!log.is_object() || !log.contains("https")) return out;
    for (const json& entry : log["https"]) {
      if (entry.value("sni", json()).is_string() && entry["sni"] == host) out.push_back(entry);
    }
    return out;
  }

  static test::WorldProcess* world_;
};

test::WorldProcess* PosterWorld::world_ = nullptr;

void expect_error(const std::expected<void, Error>& result,
                  std::initializer_list<std::string_view> parts) {
  ASSERT_FALSE(result.has_value()) << "unexpected success";
  EXPECT_EQ(result.error().category, ErrorCategory::report_delivery)
      << to_string(result.error().category) << ": " << result.error().reason;
  for (std::string_view part : parts) {
    EXPECT_NE(result.error().reason.find(part), std::string::npos)
        << "missing \"" << part << "\" in: " << result.error().reason;
  }
}

TEST_F(PosterWorld, Rpt31PostWith200SucceedsAndCarriesTheExactBody) {
  world_->clear_log();
  const std::string body = binary_body();
  const auto outcome = post("https://ok.post.example/v1/tlsrpt?source=mtasts", body);
  ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().reason;

  const auto requests = requests_for("ok.post.example");
  ASSERT_EQ(requests.size(), 1u);
  const json& request = requests.front();
  EXPECT_EQ(request["method"], "POST");
  EXPECT_EQ(request["path"], "/v1/tlsrpt?source=mtasts");
  const std::string host_header = request["host"];
  EXPECT_EQ(host_header, "ok.post.example:" + std::to_string(world_->https_port()));
  const json& headers = request["headers"];
  EXPECT_EQ(headers.value("content-type", ""), kContentType);
  EXPECT_EQ(headers.value("content-length", ""), std::to_string(body.size()));
  EXPECT_EQ(headers.value("user-agent", ""), "mtasts/0.1");
  EXPECT_EQ(latin1_from_utf8(request["body"]), body);
}

TEST_F(PosterWorld, Rpt31Status201IsSuccess) {
  world_->clear_log();
  const auto outcome = post("https://created.post.example/v1/tlsrpt", "{\"report\": 1}");
  ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().reason;
  const auto requests = requests_for("created.post.example");
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests.front()["method"], "POST");
  EXPECT_EQ(requests.front()["body"], "{\"report\": 1}");
  EXPECT_EQ(requests.front()["headers"].value("content-type", ""), kContentType);
}

TEST_F(PosterWorld, Status503FailsQuotingStatusAndBody) {
  expect_error(post("https://busy.post.example/v1/tlsrpt").result,
               {"https://busy.post.example/v1/tlsrpt", "HTTP 503 from busy.post.example",
                "try again later"});
}

TEST_F(PosterWorld, WrongPathIs404) {
  expect_error(post("https://ok.post.example/other").result, {"HTTP 404"});
}

TEST_F(PosterWorld, RedirectIsNotFollowed) {
  world_->clear_log();
  expect_error(post("https://moved.post.example/v1/tlsrpt").result,
               {"HTTP 302 from moved.post.example", "https://target.post.example/v1/tlsrpt",
                "not followed"});
  EXPECT_EQ(requests_for("moved.post.example").size(), 1u);
  EXPECT_TRUE(requests_for("target.post.example").empty());
}

TEST_F(PosterWorld, UntrustedCertificateFails) {
  world_->clear_log();
  expect_error(post("https://untrusted.post.example/v1/tlsrpt").result,
               {"certificate of untrusted.post.example", "local issuer"});
  EXPECT_TRUE(requests_for("untrusted.post.example").empty()) << "the report went out";
}

TEST_F(PosterWorld, TestCaIsNotTrustedWithoutCaFile) {
  expect_error(post("https://ok.post.example/v1/tlsrpt", "{}", 5s, false).result,
               {"certificate of ok.post.example", "local issuer"});
}

TEST_F(PosterWorld, WrongNameFails) {
  expect_error(post("https://wrongname.post.example/v1/tlsrpt").result,
               {"certificate of wrongname.post.example", "hostname mismatch"});
}

TEST_F(PosterWorld, IpLiteralNeedsTheAddressInTheCertificate) {
  // No SNI for a literal: the world answers with its unknown.invalid certificate, which names
  // no IP address.
  expect_error(post("https://127.0.0.1/v1/tlsrpt").result, {"127.0.0.1", "IP address mismatch"});
}

TEST_F(PosterWorld, SilentServerFailsAtTheDeadline) {
  const auto outcome = post("https://stall.post.example/v1/tlsrpt", "{}", 1500ms);
  expect_error(outcome.result,
               {"stall.post.example did not answer within 1500 ms (waiting for the response)"});
  EXPECT_GE(outcome.elapsed, 1400ms);
  EXPECT_LT(outcome.elapsed, 3000ms);
}

TEST_F(PosterWorld, HostWithoutAddressFails) {
  expect_error(post("https://absent.post.example/v1/tlsrpt").result,
               {"absent.post.example has no A or AAAA record"});
}

TEST_F(PosterWorld, UnusableUrisAreRefusedBeforeAnyIo) {
  world_->clear_log();
  struct Row {
    const char* uri;
    const char* says;
  };
  const Row rows[] = {
      {"http://ok.post.example/v1/tlsrpt", "scheme http is not https"},
      {"mailto:tlsrpt@ok.post.example", "scheme mailto is not https"},
      {"ok.post.example/v1/tlsrpt", "not a URI"},
      {"https://user@ok.post.example/v1/tlsrpt", "user information"},
      {"https://ok.post.example:99999/v1/tlsrpt", "port 99999 is not 1 to 65535"},
      {"https://ok.post.example:0/", "port 0"},
      {"https://ok_post.example/v1/tlsrpt", "not a host name"},
      {"https://-ok.post.example/", "not a host name"},
      {"https:///v1/tlsrpt", "no host in the URI"},
      {"https://ok.post.example/v1 tlsrpt", "not a URI"},
      {"https://ok.post.example/v1\r\nX-Injected: 1", "not a URI"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.uri);
    const auto outcome = post(row.uri);
    expect_error(outcome.result, {row.says});
    EXPECT_LT(outcome.elapsed, 1000ms);
  }
  EXPECT_TRUE(world_->log()["https"].empty());
}

TEST_F(PosterWorld, ContentTypeThatIsNoHeaderValueIsRefused) {
  world_->clear_log();
  expect_error(
      post("https://ok.post.example/v1/tlsrpt", "{}", 5s, true, "text/plain\r\nX-Injected: 1")
          .result,
      {"content type text/plain\\x0d\\x0aX-Injected: 1 is not a header value"});
  expect_error(post("https://ok.post.example/v1/tlsrpt", "{}", 5s, true, "").result,
               {"the content type is empty"});
  EXPECT_TRUE(requests_for("ok.post.example").empty());
}

TEST_F(PosterWorld, SchemeAndHostAreCaseInsensitive) {
  world_->clear_log();
  const auto outcome = post("HTTPS://OK.Post.Example/v1/tlsrpt");
  ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().reason;
  EXPECT_EQ(requests_for("ok.post.example").size(), 1u);
}

TEST(BeastHttpsPosterConfig, UnreadableCaFileIsReported) {
  asio::io_context io;
  dns::UnboundOptions dns_options;
  dns_options.servers = {"127.0.0.1:9"};
  dns::UnboundResolver resolver(io.get_executor(), dns_options);
  report::HttpsPostOptions options;
  options.ca_file = "/nonexistent/ca.pem";
  report::BeastHttpsPoster poster(resolver, std::move(options));
  std::optional<std::expected<void, Error>> out;
  asio::co_spawn(io, poster.post("https://example.net/r", kContentType, "{}"),
                 [&](std::exception_ptr error, std::expected<void, Error> result) {
                   if (error) std::rethrow_exception(error);
                   out = std::move(result);
                 });
  io.run();
  ASSERT_TRUE(out.has_value());
  expect_error(*out, {"https://example.net/r", "/nonexistent/ca.pem"});
}

}  // namespace
