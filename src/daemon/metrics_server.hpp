// The optional Prometheus endpoint (metrics_listen): a minimal HTTP/1.1 responder on the event
// loop. GET (or HEAD) /metrics answers the text exposition; anything else 404 or 405. One
// request per connection (Connection: close), the request head capped at kMaxRequestHead octets
// and no body accepted, the whole exchange within kTimeout. Like the other listeners it has no
// authentication: bind it to loopback. The socket is bound before privileges are dropped.
#pragma once

#include <chrono>
#include <cstddef>
#include <expected>
#include <functional>
#include <list>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "service/asio.hpp"

namespace mtasts::daemon {

class MetricsServer {
 public:
  static constexpr std::size_t kMaxRequestHead = 8192;
  static constexpr std::chrono::seconds kTimeout{5};
  static constexpr std::size_t kMaxConnections = 64;

  // Binds `listen` ("ADDR:PORT" or "[V6]:PORT"). The error names the address and the reason.
  [[nodiscard]] static std::expected<std::unique_ptr<MetricsServer>, std::string> open(
      asio::io_context& io, const std::string& listen);

  // Serves until stop(); `render` gives the body of each scrape, `log_error` hears of accept
  // failures.
  void start(std::function<std::string()> render,
             std::function<void(const std::string&)> log_error);
  // Closes the listener and every open connection.
  void stop();
  [[nodiscard]] const std::string& description() const { return description_; }

 private:
  MetricsServer(asio::ip::tcp::acceptor acceptor, std::string description);
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(asio::ip::tcp::socket socket);

  asio::ip::tcp::acceptor acceptor_;
  std::string description_;
  std::function<std::string()> render_;
  std::function<void(const std::string&)> log_error_;
  std::list<asio::ip::tcp::socket*> open_;  // for stop()
  bool stopping_ = false;
};

}  // namespace mtasts::daemon
