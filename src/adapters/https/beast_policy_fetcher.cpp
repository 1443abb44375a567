// Policy fetches on Boost.Beast; the TLS and connection machinery is tls_client.hpp's.
#include "adapters/https/beast_policy_fetcher.hpp"

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <string_view>
#include <utility>

#include "adapters/https/tls_client.hpp"
#include "adapters/https/tls_facts.hpp"
#include "core/policy.hpp"

namespace mtasts::https {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;

namespace {

constexpr std::string_view kPath = "/.well-known/mta-sts.txt";

bool is_plain_hostname(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok) return false;
  }
  return name.front() != '.' && name.back() != '.';
}

std::unexpected<Error> failure(ErrorCategory category, std::string reason) {
  return std::unexpected(Error{category, "policy fetch: " + std::move(reason)});
}

}  // namespace

// The TLS client context: built once, on the first fetch.
struct BeastPolicyFetcher::Tls {
  explicit Tls(std::optional<std::string> ca_file) : context(std::move(ca_file)) {}
  TlsClientContext context;
};

BeastPolicyFetcher::BeastPolicyFetcher(dns::Resolver& resolver, BeastPolicyFetcherOptions options)
    : resolver_(resolver),
      options_(std::move(options)),
      tls_(std::make_unique<Tls>(options_.ca_file)) {}

BeastPolicyFetcher::~BeastPolicyFetcher() = default;

asio::awaitable<std::expected<std::string, Error>> BeastPolicyFetcher::fetch(
    std::string policy_domain) {
  co_return co_await run_fetch(std::move(policy_domain), nullptr);
}

asio::awaitable<std::expected<std::string, Error>> BeastPolicyFetcher::fetch_with_facts(
    std::string policy_domain, PolicyFetchFacts& facts) {
  co_return co_await run_fetch(std::move(policy_domain), &facts);
}

asio::awaitable<std::expected<std::string, Error>> BeastPolicyFetcher::run_fetch(
    std::string policy_domain, PolicyFetchFacts* facts) {
  using Clock = std::chrono::steady_clock;

  if (!is_plain_hostname(policy_domain)) {
    co_return failure(ErrorCategory::invalid_domain,
                      fmt::format("\"{}\" is not a normalized domain name", quote(policy_domain)));
  }
  // STS-11: the policy host is mta-sts.<policy domain>, also under CNAME delegation.
  const std::string host = "mta-sts." + policy_domain;
  if (facts) {
    facts->host = host;
    facts->url = fmt::format("https://{}{}{}", host,
                             options_.port == 443 ? "" : fmt::format(":{}", options_.port), kPath);
  }
  const auto deadline = Clock::now() + options_.timeout;
  const auto timed_out = [&](std::string_view phase) {
    return failure(ErrorCategory::fetch_failed, fmt::format("{} did not answer within {} ms ({})",
                                                            host, options_.timeout.count(), phase));
  };

  const auto context = tls_->context.get();
  if (!context) {
    co_return failure(ErrorCategory::fetch_failed, fmt::format("{}: {}", host, context.error()));
  }

  auto executor = co_await asio::this_coro::executor;

  // 1. Addresses from our resolver, raced against the overall deadline.
  auto resolved = co_await resolve_before(resolver_, host, deadline);
  if (!resolved) co_return timed_out("resolving its address");
  const dns::Answer<std::string> addresses = std::move(*resolved);
  if (addresses.status == dns::Status::nxdomain || addresses.status == dns::Status::nodata) {
    co_return failure(
        ErrorCategory::fetch_failed,
        fmt::format("{} has no A or AAAA record ({}); publish one for the policy host", host,
                    dns::to_string(addresses.status)));
  }
  if (addresses.status != dns::Status::ok || addresses.records.empty()) {
    co_return failure(
        ErrorCategory::fetch_failed,
        fmt::format("cannot resolve {} now ({}{}{})", host, dns::to_string(addresses.status),
                    addresses.detail.empty() ? "" : ": ", addresses.detail));
  }

  // 2. TCP: each address in order until one accepts.
  TlsStream stream(executor, **context);
  beast::tcp_stream& tcp_layer = beast::get_lowest_layer(stream);
  auto connected = co_await connect_first(tcp_layer, addresses.records, options_.port, deadline);
  if (!connected) {
    if (connected.error().timed_out) {
      co_return timed_out(fmt::format("connecting to {}", connected.error().detail));
    }
    co_return failure(ErrorCategory::fetch_failed,
                      fmt::format("cannot connect to {} ({})", host, connected.error().detail));
  }
  const std::string peer = std::move(*connected);
  if (facts) facts->address = peer;

  // 3. TLS: SNI and a SAN-only, one-label-wildcard host check (STS-18, STS-45).
  if (auto named = expect_peer_name(stream.native_handle(), host); !named) {
    co_return failure(ErrorCategory::fetch_failed, named.error());
  }
  auto shaken = co_await handshake(stream, deadline);
  if (facts) facts->tls = tls_facts(stream.native_handle(), host, shaken.has_value());
  if (!shaken) {
    using Kind = HandshakeFailure::Kind;
    switch (shaken.error().kind) {
      case Kind::certificate:
        co_return failure(
            ErrorCategory::webpki_invalid,
            fmt::format("certificate of {} ({}) is not valid for that name: {} (RFC 8461 §3.3 "
                        "requires a PKIX-valid certificate naming mta-sts.<domain> in its SAN)",
                        host, peer, shaken.error().detail));
      case Kind::timeout:
        co_return timed_out("TLS handshake");
      case Kind::no_certificate:
        co_return failure(ErrorCategory::webpki_invalid,
                          fmt::format("{} ({}) presented no certificate", host, peer));
      case Kind::other:
        break;
    }
    co_return failure(
        ErrorCategory::fetch_failed,
        fmt::format("TLS handshake with {} ({}) failed: {}", host, peer, shaken.error().detail));
  }

  // 4. The request: GET with no conditional or caching headers (STS-22).
  {
    http::request<http::empty_body> request{http::verb::get, kPath, 11};
    request.set(http::field::host,
                options_.port == 443 ? host : fmt::format("{}:{}", host, options_.port));
    request.set(http::field::user_agent, kUserAgent);
    request.set(http::field::connection, "close");
    tcp_layer.expires_at(deadline);
    auto [ec, written] =
        co_await http::async_write(stream, request, asio::as_tuple(asio::use_awaitable));
    if (ec == beast::error::timeout) co_return timed_out("sending the request");
    if (ec) {
      co_return failure(
          ErrorCategory::fetch_failed,
          fmt::format("cannot send the request to {} ({}): {}", host, peer, ec.message()));
    }
  }

  // 5. The response header: 200 and text/plain only (STS-20, STS-21, STS-12).
  beast::flat_buffer buffer(options_.max_header + options_.max_body + 16 * 1024);
  http::response_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(options_.max_header));
  parser.body_limit(options_.max_body);
  // Beast checks Content-Length against the body cap as soon as the header is complete; the
  // status and media type are still reported first, they say more to the admin.
  bool declared_over_cap = false;
  {
    tcp_layer.expires_at(deadline);
    auto [ec, read] = co_await http::async_read_header(stream, buffer, parser,
                                                       asio::as_tuple(asio::use_awaitable));
    if (ec == http::error::body_limit && parser.is_header_done()) {
      declared_over_cap = true;
      ec = {};
    }
    if (ec == beast::error::timeout) co_return timed_out("waiting for the response header");
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      co_return failure(
          ErrorCategory::fetch_failed,
          fmt::format("response header from {} exceeds {} bytes", host, options_.max_header));
    }
    if (ec == http::error::end_of_stream || ec == ssl::error::stream_truncated ||
        ec == asio::error::eof || ec == asio::error::connection_reset) {
      co_return failure(ErrorCategory::fetch_failed,
                        fmt::format("{} ({}) closed the connection before a complete response "
                                    "header",
                                    host, peer));
    }
    if (ec) {
      co_return failure(
          ErrorCategory::fetch_failed,
          fmt::format("bad HTTP response from {} ({}): {}", host, peer, ec.message()));
    }
  }
  const auto& header = parser.get();
  const unsigned status = header.result_int();
  if (facts) {
    facts->http_status = status;
    if (auto found = header.find(http::field::content_type); found != header.end()) {
      facts->content_type = std::string(found->value());
    }
    if (auto found = header.find(http::field::location); found != header.end()) {
      facts->location = std::string(found->value());
    }
  }
  if (status >= 300 && status <= 399) {
    co_return failure(
        ErrorCategory::fetch_failed,
        fmt::format("HTTP {} from {}; redirects are not allowed (RFC 8461 §3.3)", status, host));
  }
  if (status != 200) {
    co_return failure(
        ErrorCategory::fetch_failed,
        fmt::format("HTTP {} from {}; only 200 gives a policy (RFC 8461 §3.3)", status, host));
  }
  const auto content_type = header.find(http::field::content_type);
  if (content_type == header.end()) {
    co_return failure(
        ErrorCategory::policy_syntax,
        fmt::format("no Content-Type from {}; RFC 8461 §3.2 requires text/plain", host));
  }
  if (!is_text_plain(std::string_view(content_type->value()))) {
    co_return failure(ErrorCategory::policy_syntax,
                      fmt::format("Content-Type {} from {}; RFC 8461 §3.2 requires text/plain",
                                  quote(std::string_view(content_type->value())), host));
  }

  if (declared_over_cap) {
    co_return failure(ErrorCategory::fetch_failed,
                      fmt::format("policy body from {} exceeds {} bytes (Content-Length {}; RFC "
                                  "8461 §3.3)",
                                  host, options_.max_body,
                                  quote(std::string_view(header[http::field::content_length]))));
  }

  // 6. The body, under the cap. A TLS connection cut without close_notify is tolerated only
  // when the message was already complete (Content-Length or chunked framing says so).
  {
    tcp_layer.expires_at(deadline);
    auto [ec, read] =
        co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
    if (ec == beast::error::timeout) co_return timed_out("reading the policy body");
    if (ec == http::error::body_limit || ec == http::error::buffer_overflow) {
      co_return failure(ErrorCategory::fetch_failed,
                        fmt::format("policy body from {} exceeds {} bytes (RFC 8461 §3.3)", host,
                                    options_.max_body));
    }
    if (ec == ssl::error::stream_truncated && !parser.is_done()) {
      co_return failure(ErrorCategory::fetch_failed,
                        fmt::format("{} ({}) cut the connection (no TLS close_notify) before the "
                                    "end of the policy body",
                                    host, peer));
    }
    if (ec && ec != ssl::error::stream_truncated) {
      co_return failure(
          ErrorCategory::fetch_failed,
          fmt::format("cannot read the policy body from {} ({}): {}", host, peer, ec.message()));
    }
    if (!parser.is_done()) {
      co_return failure(ErrorCategory::fetch_failed,
                        fmt::format("incomplete response from {} ({})", host, peer));
    }
  }
  // Connection: close was asked for; the message is complete, so just drop the connection.
  tcp_layer.close();
  auto message = parser.release();
  if (facts) facts->body_size = message.body().size();
  co_return std::move(message.body());
}

}  // namespace mtasts::https
