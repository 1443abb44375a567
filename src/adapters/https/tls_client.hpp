// The HTTPS client machinery shared by policy fetches (beast_policy_fetcher.cpp) and TLSRPT
// report POSTs (report/beast_https_poster.cpp): one set of PKIX rules for both.
//
// - The TLS context: TLS 1.2 or newer (STS-46), the system store plus an optional CA file,
//   peer verification on. Built once, on first use.
// - Addresses come from our dns::Resolver, never getaddrinfo (STS-11), each tried in order.
// - The peer name: SNI = the host (STS-45), a SAN-only check where a wildcard counts only as the
//   whole left-most label and the subject CN is never consulted (STS-18). An IP-literal host is
//   checked against the certificate's IP SANs and sends no SNI (RFC 6066 §3 forbids literals).
// - Every step runs against one deadline the caller computed.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/asio.hpp"
#include "adapters/dns/resolver.hpp"

namespace mtasts::https {

using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;
using Deadline = std::chrono::steady_clock::time_point;

inline constexpr std::string_view kUserAgent = "mtasts/0.1";

// Server-supplied text for a log line: printable ASCII kept, the rest escaped as \xNN, cut to
// about 100 bytes ("..." appended when cut). No surrounding quotes.
[[nodiscard]] std::string quote(std::string_view text);

// "192.0.2.1:443", "[2001:db8::1]:443".
[[nodiscard]] std::string endpoint_text(const asio::ip::tcp::endpoint& endpoint);

// The client TLS context, built on the first get(); a context that cannot be built (say, an
// unreadable CA file) fails every get() with the same reason.
class TlsClientContext {
 public:
  explicit TlsClientContext(std::optional<std::string> ca_file);
  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  // The context, or why it cannot be built ("cannot load CA file /x: ...").
  [[nodiscard]] std::expected<asio::ssl::context*, std::string> get();

 private:
  std::optional<std::string> ca_file_;
  std::unique_ptr<asio::ssl::context> context_;
  std::string error_;
  bool built_ = false;
};

// The addresses of `host` from `resolver`, or nullopt when `deadline` came first.
asio::awaitable<std::optional<dns::Answer<std::string>>> resolve_before(dns::Resolver& resolver,
                                                                        std::string host,
                                                                        Deadline deadline);

struct ConnectFailure {
  bool timed_out = false;
  // When timed out: the endpoint being tried; otherwise each address tried and why it failed
  // ("192.0.2.1:443: Connection refused; ...").
  std::string detail;
};

// Connects the TCP layer of `stream` to each of `addresses` (address text) on `port` in order
// until one accepts; returns that peer as endpoint_text().
asio::awaitable<std::expected<std::string, ConnectFailure>> connect_first(
    boost::beast::tcp_stream& stream, const std::vector<std::string>& addresses, std::uint16_t port,
    Deadline deadline);

// Sets SNI and the name (or address) the certificate must carry, before the handshake. `host`
// is a lower-case host name or an IP literal (IPv6 without brackets). Returns what failed.
[[nodiscard]] std::expected<void, std::string> expect_peer_name(SSL* ssl, const std::string& host);

struct HandshakeFailure {
  enum class Kind {
    certificate,     // PKIX validation failed: `detail` is OpenSSL's verify error
    no_certificate,  // the server presented none
    timeout,         // the deadline passed
    other,           // a TLS or network error: `detail` says which
  };
  Kind kind = Kind::other;
  std::string detail;
};

// The client handshake on a connected `stream`, after expect_peer_name().
asio::awaitable<std::expected<void, HandshakeFailure>> handshake(TlsStream& stream,
                                                                 Deadline deadline);

}  // namespace mtasts::https
