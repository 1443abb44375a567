#include "adapters/https/tls_client.hpp"

#include <fmt/format.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <exception>
#include <tuple>
#include <utility>
#include <variant>

namespace mtasts::https {

namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr std::size_t kQuoteLimit = 100;

std::string build_context(ssl::context& context, const std::optional<std::string>& ca_file) {
  // STS-46: TLS 1.2 or newer.
  context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  if (SSL_CTX_set_min_proto_version(context.native_handle(), TLS1_2_VERSION) != 1) {
    return "cannot require TLS 1.2 or newer (OpenSSL refused)";
  }
  error_code ec;
  context.set_default_verify_paths(ec);
  if (ec) return fmt::format("cannot load the system's trusted CAs: {}", ec.message());
  if (ca_file) {
    context.load_verify_file(*ca_file, ec);
    if (ec) return fmt::format("cannot load CA file {}: {}", *ca_file, ec.message());
  }
  context.set_verify_mode(ssl::verify_peer, ec);
  if (ec) return fmt::format("cannot enable certificate verification: {}", ec.message());
  return {};
}

}  // namespace

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

TlsClientContext::TlsClientContext(std::optional<std::string> ca_file)
    : ca_file_(std::move(ca_file)) {}

TlsClientContext::~TlsClientContext() = default;

std::expected<ssl::context*, std::string> TlsClientContext::get() {
  if (!built_) {
    built_ = true;
    try {
      context_ = std::make_unique<ssl::context>(ssl::context::tls_client);
      error_ = build_context(*context_, ca_file_);
    } catch (const std::exception& e) {
      error_ = fmt::format("cannot create a TLS context: {}", e.what());
    }
  }
  if (!error_.empty()) return std::unexpected(error_);
  return context_.get();
}

asio::awaitable<std::optional<dns::Answer<std::string>>> resolve_before(dns::Resolver& resolver,
                                                                        std::string host,
                                                                        Deadline deadline) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_at(deadline);
  auto raced = co_await (resolver.addresses(std::move(host)) ||
                         timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (raced.index() != 0) co_return std::nullopt;
  co_return std::get<0>(std::move(raced));
}

asio::awaitable<std::expected<std::string, ConnectFailure>> connect_first(
    beast::tcp_stream& stream, const std::vector<std::string>& addresses, std::uint16_t port,
    Deadline deadline) {
  std::string tried;
  for (const std::string& text : addresses) {
    error_code ec;
    const auto address = asio::ip::make_address(text, ec);
    if (ec) {
      tried += fmt::format("{}{}: not an address", tried.empty() ? "" : "; ", quote(text));
      continue;
    }
    const tcp::endpoint endpoint(address, port);
    stream.close();
    stream.expires_at(deadline);
    std::tie(ec) = co_await stream.async_connect(endpoint, asio::as_tuple(asio::use_awaitable));
    if (!ec) co_return endpoint_text(endpoint);
    if (ec == beast::error::timeout) {
      co_return std::unexpected(ConnectFailure{true, endpoint_text(endpoint)});
    }
    tried +=
        fmt::format("{}{}: {}", tried.empty() ? "" : "; ", endpoint_text(endpoint), ec.message());
  }
  co_return std::unexpected(ConnectFailure{false, std::move(tried)});
}

std::expected<void, std::string> expect_peer_name(SSL* ssl_handle, const std::string& host) {
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl_handle);
  error_code literal_error;
  asio::ip::make_address(host, literal_error);
  if (!literal_error) {
    if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
      return std::unexpected(fmt::format("cannot set {} as the address to verify", host));
    }
    return {};
  }
  // SSL_set_tlsext_host_name() spelled out: the macro hides a C-style cast.
  if (SSL_ctrl(ssl_handle, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(host.c_str())) != 1) {
    return std::unexpected(fmt::format("cannot set SNI {}", host));
  }
  X509_VERIFY_PARAM_set_hostflags(
      param, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT | X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (X509_VERIFY_PARAM_set1_host(param, host.data(), host.size()) != 1) {
    return std::unexpected(fmt::format("cannot set {} as the name to verify", host));
  }
  return {};
}

asio::awaitable<std::expected<void, HandshakeFailure>> handshake(TlsStream& stream,
                                                                 Deadline deadline) {
  using Kind = HandshakeFailure::Kind;
  beast::get_lowest_layer(stream).expires_at(deadline);
  auto [ec] = co_await stream.async_handshake(ssl::stream_base::client,
                                              asio::as_tuple(asio::use_awaitable));
  SSL* ssl_handle = stream.native_handle();
  // The verify result first: a refused certificate also ends the handshake with an error, and
  // OpenSSL's reason says more than the alert.
  const long verify = SSL_get_verify_result(ssl_handle);
  if (verify != X509_V_OK) {
    co_return std::unexpected(
        HandshakeFailure{Kind::certificate, X509_verify_cert_error_string(verify)});
  }
  if (ec == beast::error::timeout) co_return std::unexpected(HandshakeFailure{Kind::timeout, {}});
  if (ec) co_return std::unexpected(HandshakeFailure{Kind::other, ec.message()});
  if (SSL_get0_peer_certificate(ssl_handle) == nullptr) {
    co_return std::unexpected(HandshakeFailure{Kind::no_certificate, {}});
  }
  co_return std::expected<void, HandshakeFailure>{};
}

}  // namespace mtasts::https
