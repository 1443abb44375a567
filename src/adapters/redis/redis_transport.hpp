// The Redis client's plumbing (redis_client.cpp is the only user): the RESP codec on hiredis
// and one byte stream (TCP, TLS over TCP, or a Unix socket) on Asio.
//
// Codec: commands are encoded by redisFormatCommandArgv; replies are parsed by hiredis's reader
// under our bounds, since the server's bytes are untrusted: a string or status line longer than
// kMaxElementBytes, or a reply costing more than kMaxReplyBytes (each element counted as 64
// bytes plus its text), is a malformed stream, refused before hiredis allocates it.
//
// Connection: every step is bounded by the deadline given to arm(); when it passes, the stream
// is closed, which ends whatever operation is pending (timed_out() then says why).
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/system/error_code.hpp>
#include <chrono>
#include <cstddef>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "adapters/asio.hpp"
#include "adapters/https/tls_client.hpp"
#include "adapters/redis/redis_client.hpp"

struct redisReader;

namespace mtasts::redis::detail {

using Clock = std::chrono::steady_clock;

inline constexpr std::size_t kMaxElementBytes = std::size_t{1} << 20;
inline constexpr std::size_t kMaxReplyBytes = std::size_t{16} << 20;

// The commands as one RESP pipeline, or why not (an empty command, too many arguments).
[[nodiscard]] std::expected<std::string, std::string> encode(
    const std::vector<std::vector<std::string>>& commands);

class Decoder {
 public:
  Decoder();
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Appends bytes from the server; fails when the reader cannot take them.
  [[nodiscard]] std::expected<void, std::string> feed(std::string_view bytes);
  // The next complete reply; nullopt when more bytes are needed; an error when the stream is
  // malformed or over our bounds (the decoder is then unusable).
  [[nodiscard]] std::expected<std::optional<Reply>, std::string> next();

  struct Budget {
    std::size_t used = 0;  // of the reply being read
    std::string refusal;   // why a bound refused an element, when one did
  };

 private:
  redisReader* reader_ = nullptr;
  Budget budget_;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  explicit Connection(asio::any_io_executor executor);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Closes the stream when `deadline` passes (until disarm()).
  void arm(Clock::time_point deadline);
  void disarm();
  [[nodiscard]] bool timed_out() const { return timed_out_; }

  // The addresses of `host` (itself when it is an IP literal), through getaddrinfo on Asio's
  // resolver thread, so that names from /etc/hosts work. The lookup is left to finish in the
  // background when the deadline or close() comes first.
  asio::awaitable<std::expected<std::vector<std::string>, std::string>> resolve(std::string host);

  // Connects to the addresses in order; `tls`: then the TLS handshake, checking the
  // certificate against `host`. Returns the peer ("192.0.2.1:6379").
  asio::awaitable<std::expected<std::string, std::string>> connect_tcp(
      const std::vector<std::string>& addresses, std::uint16_t port, asio::ssl::context* tls,
      const std::string& host, Clock::time_point deadline);
  asio::awaitable<std::expected<std::string, std::string>> connect_unix(const std::string& path);

  // One read into `buffer`; one write of all of `bytes`. At most one of each at a time.
  asio::awaitable<std::pair<boost::system::error_code, std::size_t>> read_some(
      asio::mutable_buffer buffer);
  asio::awaitable<boost::system::error_code> write(std::string_view bytes);

  void close();

 private:
  using Tcp = boost::beast::tcp_stream;
  using Unix = asio::local::stream_protocol::socket;
  using Tls = std::unique_ptr<https::TlsStream>;

  asio::any_io_executor executor_;
  std::variant<std::monostate, Tcp, Unix, Tls> stream_;
  asio::steady_timer deadline_;
  std::shared_ptr<asio::steady_timer> lookup_;  // the resolve() in progress waits on it
  bool timed_out_ = false;
  bool closed_ = false;
};

// Writes `commands` and reads their replies, for the set-up of a connection (AUTH, SELECT,
// ROLE, SENTINEL), within the connection's armed deadline.
asio::awaitable<std::expected<std::vector<Reply>, std::string>> exchange(
    Connection& connection, Decoder& decoder, std::vector<std::vector<std::string>> commands);

// A sentinel's answer to SENTINEL get-master-addr-by-name: the master's address, or why not.
[[nodiscard]] std::expected<Address, std::string> master_address(const Reply& reply);

}  // namespace mtasts::redis::detail
