// TLSRPT report POSTs on Boost.Beast; the TLS and connection machinery is tls_client.hpp's.
// Also the one translation unit that compiles Boost.URL (header-only through its src.hpp).
#include "adapters/report/beast_https_poster.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/src.hpp>
#include <optional>
#include <string_view>
#include <utility>

#include "adapters/https/tls_client.hpp"

namespace mtasts::report {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
namespace urls = boost::urls;
using https::HandshakeFailure;

namespace {

// Interim (1xx) responses skipped before the final one; more is a misbehaving server.
constexpr int kMaxInterimResponses = 4;

struct Endpoint {
  std::string host;          // lower-case LDH name, or an IP literal (IPv6 without brackets)
  bool is_literal = false;   // no DNS lookup, no SNI, the certificate must carry an IP SAN
  std::uint16_t port = 443;  // from the URI, else 443
  std::string target;        // path and query, as written in the URI
};

// Not std::tolower: a locale must not change what a host name is.
char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_ldh_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  char previous = '.';
  for (char c : name) {
    if (c == '.') {
      if (label == 0 || previous == '-') return false;
      label = 0;
    } else {
      const bool ldh =
          (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
      if (!ldh || (c == '-' && label == 0) || ++label > 63) return false;
    }
    previous = c;
  }
  return label > 0 && previous != '-';
}

// A strict reading of an https: rua (RFC 8460 §3): why it cannot be used, or where to POST.
std::expected<Endpoint, std::string> parse_https_uri(std::string_view uri) {
  const auto parsed = urls::parse_uri(uri);
  if (!parsed) return std::unexpected("not a URI (RFC 3986 syntax)");
  const urls::url_view& url = *parsed;
  std::string scheme(url.scheme());
  std::ranges::transform(scheme, scheme.begin(), ascii_lower);
  if (scheme != "https") {
    return std::unexpected(fmt::format("scheme {} is not https", https::quote(url.scheme())));
  }
  if (url.has_userinfo()) return std::unexpected("user information in the URI is not allowed");

  Endpoint endpoint;
  switch (url.host_type()) {
    case urls::host_type::name: {
      const std::string_view name = url.encoded_host();
      if (name.empty()) return std::unexpected("no host in the URI");
      if (!is_ldh_name(name)) {
        return std::unexpected(fmt::format(
            "host {} is not a host name (letters, digits, hyphens and dots)", https::quote(name)));
      }
      endpoint.host = name;
      std::ranges::transform(endpoint.host, endpoint.host.begin(), ascii_lower);
      break;
    }
    case urls::host_type::ipv4:
      endpoint.host = url.host_ipv4_address().to_string();
      endpoint.is_literal = true;
      break;
    case urls::host_type::ipv6:
      endpoint.host = url.host_ipv6_address().to_string();
      endpoint.is_literal = true;
      break;
    default:
      return std::unexpected(
          fmt::format("host {} is not a host name or an IP address", https::quote(url.host())));
  }

  const std::string_view port = url.port();  // empty for "host" and "host:"
  if (!port.empty()) {
    unsigned value = 0;
    for (char c : port) {
      value = value * 10 + static_cast<unsigned>(c - '0');  // the grammar allows digits only
      if (value > 65535) break;
    }
    if (port.size() > 5 || value == 0 || value > 65535) {
      return std::unexpected(fmt::format("port {} is not 1 to 65535", https::quote(port)));
    }
    endpoint.port = static_cast<std::uint16_t>(value);
  }
  // The fragment stays on this side, as with any HTTP client.
  endpoint.target = url.encoded_path().empty() ? "/" : std::string(url.encoded_path());
  if (url.has_query()) endpoint.target += fmt::format("?{}", std::string_view(url.encoded_query()));
  return endpoint;
}

bool is_header_value(std::string_view text) {
  return std::ranges::all_of(text, [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte >= 0x20 && byte != 0x7F;
  });
}

}  // namespace

struct BeastHttpsPoster::Tls {
  explicit Tls(std::optional<std::string> ca_file) : context(std::move(ca_file)) {}
  https::TlsClientContext context;
};

BeastHttpsPoster::BeastHttpsPoster(dns::Resolver& resolver, HttpsPostOptions options)
    : resolver_(resolver),
      options_(std::move(options)),
      tls_(std::make_unique<Tls>(options_.ca_file)) {}

BeastHttpsPoster::~BeastHttpsPoster() = default;

asio::awaitable<std::expected<void, Error>> BeastHttpsPoster::post(std::string uri,
                                                                   std::string content_type,
                                                                   std::string body) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + options_.timeout;
  const auto failure = [&](std::string reason) {
    return std::unexpected(Error{ErrorCategory::report_delivery,
                                 fmt::format("https report to {}: {}", https::quote(uri), reason)});
  };

  auto parsed = parse_https_uri(uri);
  if (!parsed) co_return failure(parsed.error());
  Endpoint endpoint = std::move(*parsed);
  if (options_.port_override) endpoint.port = *options_.port_override;
  const std::string& host = endpoint.host;
  const auto timed_out = [&](std::string_view phase) {
    return failure(
        fmt::format("{} did not answer within {} ms ({})", host, options_.timeout.count(), phase));
  };
  if (content_type.empty()) co_return failure("the content type is empty");
  if (!is_header_value(content_type)) {
    co_return failure(
        fmt::format("content type {} is not a header value", https::quote(content_type)));
  }

  const auto context = tls_->context.get();
  if (!context) co_return failure(context.error());

  // 1. Addresses: the literal itself, or our resolver's answer.
  std::vector<std::string> addresses;
  if (endpoint.is_literal) {
    addresses.push_back(host);
  } else {
    auto resolved = co_await https::resolve_before(resolver_, host, deadline);
    if (!resolved) co_return timed_out("resolving its address");
    if (resolved->status == dns::Status::nxdomain || resolved->status == dns::Status::nodata) {
      co_return failure(
          fmt::format("{} has no A or AAAA record ({})", host, dns::to_string(resolved->status)));
    }
    if (resolved->status != dns::Status::ok || resolved->records.empty()) {
      co_return failure(fmt::format("cannot resolve {} now ({}{}{})", host,
                                    dns::to_string(resolved->status),
                                    resolved->detail.empty() ? "" : ": ", resolved->detail));
    }
    addresses = std::move(resolved->records);
  }

  // 2. TCP, each address in order; 3. TLS with the policy fetch's PKIX rules.
  https::TlsStream stream(co_await asio::this_coro::executor, **context);
  beast::tcp_stream& tcp_layer = beast::get_lowest_layer(stream);
  auto connected = co_await https::connect_first(tcp_layer, addresses, endpoint.port, deadline);
  if (!connected) {
    if (connected.error().timed_out) {
      co_return timed_out(fmt::format("connecting to {}", connected.error().detail));
    }
    co_return failure(fmt::format("cannot connect to {} ({})", host, connected.error().detail));
  }
  const std::string peer = std::move(*connected);
  if (auto named = https::expect_peer_name(stream.native_handle(), host); !named) {
    co_return failure(named.error());
  }
  if (auto shaken = co_await https::handshake(stream, deadline); !shaken) {
    switch (shaken.error().kind) {
      case HandshakeFailure::Kind::certificate:
        co_return failure(fmt::format("certificate of {} ({}) is not valid for that name: {}", host,
                                      peer, shaken.error().detail));
      case HandshakeFailure::Kind::no_certificate:
        co_return failure(fmt::format("{} ({}) presented no certificate", host, peer));
      case HandshakeFailure::Kind::timeout:
        co_return timed_out("TLS handshake");
      case HandshakeFailure::Kind::other:
        break;
    }
    co_return failure(
        fmt::format("TLS handshake with {} ({}) failed: {}", host, peer, shaken.error().detail));
  }

  // 4. The request.
  {
    http::request<http::string_body> request{http::verb::post, endpoint.target, 11};
    const bool literal_v6 = endpoint.is_literal && host.find(':') != std::string::npos;
    const std::string authority = literal_v6 ? fmt::format("[{}]", host) : host;
    request.set(http::field::host,
                endpoint.port == 443 ? authority : fmt::format("{}:{}", authority, endpoint.port));
    request.set(http::field::user_agent, https::kUserAgent);
    request.set(http::field::content_type, content_type);
    request.set(http::field::connection, "close");
    request.body() = std::move(body);
    request.prepare_payload();  // Content-Length
    tcp_layer.expires_at(deadline);
    auto [ec, written] =
        co_await http::async_write(stream, request, asio::as_tuple(asio::use_awaitable));
    if (ec == beast::error::timeout) co_return timed_out("sending the report");
    if (ec) {
      co_return failure(
          fmt::format("cannot send the report to {} ({}): {}", host, peer, ec.message()));
    }
  }

  // 5. The final response header, past any 1xx.
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::string_body>> parser;
  bool body_over_cap = false;
  for (int interim = 0;; ++interim) {
    parser.emplace();
    parser->header_limit(static_cast<std::uint32_t>(options_.max_header));
    parser->body_limit(options_.max_body);
    tcp_layer.expires_at(deadline);
    auto [ec, read] = co_await http::async_read_header(stream, buffer, *parser,
                                                       asio::as_tuple(asio::use_awaitable));
    // A Content-Length over the cap: the status still decides; the body is not read.
    if (ec == http::error::body_limit && parser->is_header_done()) {
      body_over_cap = true;
      ec = {};
    }
    if (ec == beast::error::timeout) co_return timed_out("waiting for the response");
    if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
      co_return failure(
          fmt::format("response header from {} exceeds {} bytes", host, options_.max_header));
    }
    if (ec == http::error::end_of_stream || ec == ssl::error::stream_truncated ||
        ec == asio::error::eof || ec == asio::error::connection_reset) {
      co_return failure(fmt::format(
          "{} ({}) closed the connection before a complete response header", host, peer));
    }
    if (ec) {
      co_return failure(
          fmt::format("bad HTTP response from {} ({}): {}", host, peer, ec.message()));
    }
    const unsigned status = parser->get().result_int();
    if (status >= 200 || status == 101) break;
    if (interim == kMaxInterimResponses) {
      co_return failure(fmt::format("{} ({}) sent only interim (1xx) responses", host, peer));
    }
  }
  const unsigned status = parser->get().result_int();
  if (status >= 200 && status <= 299) {
    // Delivered. Connection: close was asked for; nothing more is needed from the server.
    tcp_layer.close();
    co_return std::expected<void, Error>{};
  }
  if (status >= 300 && status <= 399) {
    const auto location = parser->get().find(http::field::location);
    co_return failure(fmt::format(
        "HTTP {} from {}{}{}; redirects are not followed", status, host,
        location == parser->get().end() ? "" : " to ",
        location == parser->get().end() ? "" : https::quote(std::string_view(location->value()))));
  }

  // 6. Another status: the start of its body tells the admin why. What arrives before the
  // deadline or the cap is quoted; a failure to read it changes nothing.
  if (!body_over_cap) {
    tcp_layer.expires_at(deadline);
    co_await http::async_read(stream, buffer, *parser, asio::as_tuple(asio::use_awaitable));
  }
  tcp_layer.close();
  const std::string& text = parser->get().body();
  co_return failure(fmt::format("HTTP {} from {} ({}){}{}", status, host, peer,
                                text.empty() ? "" : ": ", https::quote(text)));
}

}  // namespace mtasts::report
