// The only translation unit that includes Boost.Beast (compile time).
#include "adapters/https/beast_policy_fetcher.hpp"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <exception>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "core/policy.hpp"

namespace mtasts::https {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr std::string_view kPath = "/.well-known/mta-sts.txt";
constexpr std::string_view kUserAgent = "mtasts/0.1";
constexpr std::size_t kQuoteLimit = 100;

// Server-supplied text for a log line: printable ASCII kept, the rest escaped, cut to ~100 bytes.
std::string quote(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (out.size() >= kQuoteLimit) {
      out += "...";
      break;
    }
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7F) {
      out += c;
    } else {
      out += fmt::format("\\x{:02x}", static_cast<unsigned>(byte));
    }
  }
  return out;
}

std::string endpoint_text(const tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  return address.is_v6() ? fmt::format("[{}]:{}", address.to_string(), endpoint.port())
                         : fmt::format("{}:{}", address.to_string(), endpoint.port());
}

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
  std::unique_ptr<ssl::context> context;
  std::string error;  // why it could not be built; reported by every fetch
};

namespace {

std::string build_context(ssl::context& context, const BeastPolicyFetcherOptions& options) {
  // STS-46: TLS 1.2 or newer.
  context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  if (SSL_CTX_set_min_proto_version(context.native_handle(), TLS1_2_VERSION) != 1) {
    return "cannot require TLS 1.2 or newer (OpenSSL refused)";
  }
  error_code ec;
  context.set_default_verify_paths(ec);
  if (ec) return fmt::format("cannot load the system's trusted CAs: {}", ec.message());
  if (options.ca_file) {
    context.load_verify_file(*options.ca_file, ec);
    if (ec) return fmt::format("cannot load CA file {}: {}", *options.ca_file, ec.message());
  }
  context.set_verify_mode(ssl::verify_peer, ec);
  if (ec) return fmt::format("cannot enable certificate verification: {}", ec.message());
  return {};
}

}  // namespace

BeastPolicyFetcher::BeastPolicyFetcher(dns::Resolver& resolver, BeastPolicyFetcherOptions options)
    : resolver_(resolver), options_(std::move(options)) {}

BeastPolicyFetcher::~BeastPolicyFetcher() = default;

asio::awaitable<std::expected<std::string, Error>> BeastPolicyFetcher::fetch(
    std::string policy_domain) {
  using namespace asio::experimental::awaitable_operators;
  using Clock = std::chrono::steady_clock;

  if (!is_plain_hostname(policy_domain)) {
    co_return failure(ErrorCategory::invalid_domain,
                      fmt::format("\"{}\" is not a normalized domain name", quote(policy_domain)));
  }
  // STS-11: the policy host is mta-sts.<policy domain>, also under CNAME delegation.
  const std::string host = "mta-sts." + policy_domain;
  const auto deadline = Clock::now() + options_.timeout;
  const auto timed_out = [&](std::string_view phase) {
    return failure(ErrorCategory::fetch_failed, fmt::format("{} did not answer within {} ms ({})",
                                                            host, options_.timeout.count(), phase));
  };

  if (!tls_) {
    tls_ = std::make_unique<Tls>();
    try {
      tls_->context = std::make_unique<ssl::context>(ssl::context::tls_client);
      tls_->error = build_context(*tls_->context, options_);
    } catch (const std::exception& e) {
      tls_->error = fmt::format("cannot create a TLS context: {}", e.what());
    }
  }
  if (!tls_->error.empty()) {
    co_return failure(ErrorCategory::fetch_failed, fmt::format("{}: {}", host, tls_->error));
  }

  auto executor = co_await asio::this_coro::executor;

  // 1. Addresses from our resolver, raced against the overall deadline.
  asio::steady_timer timer(executor);
  timer.expires_at(deadline);
  auto raced =
      co_await (resolver_.addresses(host) || timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (raced.index() != 0) co_return timed_out("resolving its address");
  const dns::Answer<std::string> addresses = std::get<0>(std::move(raced));
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
  beast::ssl_stream<beast::tcp_stream> stream(executor, *tls_->context);
  beast::tcp_stream& tcp_layer = beast::get_lowest_layer(stream);
  std::string tried;
  std::string peer;
  for (const std::string& text : addresses.records) {
    error_code ec;
    const auto address = asio::ip::make_address(text, ec);
    if (ec) {
      tried += fmt::format("{}{}: not an address", tried.empty() ? "" : "; ", quote(text));
      continue;
    }
    const tcp::endpoint endpoint(address, options_.port);
    tcp_layer.close();
    tcp_layer.expires_at(deadline);
    std::tie(ec) = co_await tcp_layer.async_connect(endpoint, asio::as_tuple(asio::use_awaitable));
    if (!ec) {
      peer = endpoint_text(endpoint);
      break;
    }
    if (ec == beast::error::timeout) {
      co_return timed_out(fmt::format("connecting to {}", endpoint_text(endpoint)));
    }
    tried +=
        fmt::format("{}{}: {}", tried.empty() ? "" : "; ", endpoint_text(endpoint), ec.message());
  }
  if (peer.empty()) {
    co_return failure(ErrorCategory::fetch_failed,
                      fmt::format("cannot connect to {} ({})", host, tried));
  }

  // 3. TLS: SNI and a SAN-only, one-label-wildcard host check (STS-18, STS-45).
  SSL* ssl_handle = stream.native_handle();
  // SSL_set_tlsext_host_name() spelled out: the macro hides a C-style cast.
  if (SSL_ctrl(ssl_handle, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(host.c_str())) != 1) {
    co_return failure(ErrorCategory::fetch_failed, fmt::format("cannot set SNI {}", host));
  }
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_handle);
  X509_VERIFY_PARAM_set_hostflags(
      param, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (X509_VERIFY_PARAM_set1_host(param, host.data(), host.size()) != 1) {
    co_return failure(ErrorCategory::fetch_failed,
                      fmt::format("cannot set {} as the name to verify", host));
  }
  {
    tcp_layer.expires_at(deadline);
    auto [ec] = co_await stream.async_handshake(ssl::stream_base::client,
                                                asio::as_tuple(asio::use_awaitable));
    const long verify = SSL_get_verify_result(ssl_handle);
    if (verify != X509_V_OK) {
      co_return failure(
          ErrorCategory::webpki_invalid,
          fmt::format("certificate of {} ({}) is not valid for that name: {} (RFC 8461 §3.3 "
                      "requires a PKIX-valid certificate naming mta-sts.<domain> in its SAN)",
                      host, peer, X509_verify_cert_error_string(verify)));
    }
    if (ec == beast::error::timeout) co_return timed_out("TLS handshake");
    if (ec) {
      co_return failure(
          ErrorCategory::fetch_failed,
          fmt::format("TLS handshake with {} ({}) failed: {}", host, peer, ec.message()));
    }
    X509* certificate = SSL_get0_peer_certificate(ssl_handle);
    if (certificate == nullptr) {
      co_return failure(ErrorCategory::webpki_invalid,
                        fmt::format("{} ({}) presented no certificate", host, peer));
    }
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
  co_return std::move(message.body());
}

}  // namespace mtasts::https
