// The only daemon translation unit that includes Boost.Beast (compile time).
#include "daemon/metrics_server.hpp"

#include <exception>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/prometheus_text.hpp"
#include "service/config.hpp"

namespace mtasts::daemon {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

std::expected<std::unique_ptr<MetricsServer>, std::string> MetricsServer::open(
    asio::io_context& io, const std::string& listen) {
  auto parsed = parse_listen_address(listen);
  if (!parsed) return std::unexpected(parsed.error().reason);
  error_code ec;
  const auto address = asio::ip::make_address(parsed->address, ec);
  if (ec) return std::unexpected(fmt::format("metrics_listen {}: {}", listen, ec.message()));
  const tcp::endpoint endpoint(address, parsed->port);
  tcp::acceptor acceptor(io);
  const std::string description = fmt::format("metrics tcp:{}", listen);
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return std::unexpected(fmt::format("{}: {}", description, ec.message()));
  return std::unique_ptr<MetricsServer>(new MetricsServer(std::move(acceptor), description));
}

MetricsServer::MetricsServer(tcp::acceptor acceptor, std::string description)
    : acceptor_(std::move(acceptor)), description_(std::move(description)) {}

void MetricsServer::start(std::function<std::string()> render,
                          std::function<void(const std::string&)> log_error) {
  render_ = std::move(render);
  log_error_ = std::move(log_error);
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), [this](std::exception_ptr error) {
    if (error)
      log_error_(fmt::format("{}: internal error: {}", description_, exception_text(error)));
  });
}

void MetricsServer::stop() {
  stopping_ = true;
  error_code ignored;
  acceptor_.close(ignored);
  for (tcp::socket* socket : open_) socket->close(ignored);
}

asio::awaitable<void> MetricsServer::accept_loop() {
  while (!stopping_) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
    if (stopping_ || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      log_error_(fmt::format("{}: accept: {}", description_, ec.message()));
      asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    if (open_.size() >= kMaxConnections) continue;  // a scraper needs one; drop the excess
    asio::co_spawn(acceptor_.get_executor(), serve(std::move(socket)), [](std::exception_ptr) {});
  }
}

asio::awaitable<void> MetricsServer::serve(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  const auto handle = open_.insert(open_.end(), &stream.socket());
  struct Unregister {
    std::list<tcp::socket*>& open;
    std::list<tcp::socket*>::iterator handle;
    ~Unregister() { open.erase(handle); }
  } unregister{open_, handle};

  // One deadline for the whole exchange: a slow or silent client cannot hold a connection.
  stream.expires_after(kTimeout);
  beast::flat_buffer buffer(kMaxRequestHead);
  http::request_parser<http::empty_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(kMaxRequestHead));
  auto [read_error, read_size] =
      co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
  if (read_error) co_return;  // malformed, oversized, timed out or gone: just close
  const auto& request = parser.get();

  http::response<http::string_body> response;
  response.version(11);
  response.keep_alive(false);
  response.set(http::field::server, "mtastsd");
  const std::string_view target(request.target().data(), request.target().size());
  const std::string_view path = target.substr(0, target.find('?'));
  const bool head = request.method() == http::verb::head;
  if (request.method() != http::verb::get && !head) {
    response.result(http::status::method_not_allowed);
    response.set(http::field::allow, "GET, HEAD");
    response.set(http::field::content_type, "text/plain");
    response.body() = "only GET and HEAD\n";
  } else if (path != "/metrics") {
    response.result(http::status::not_found);
    response.set(http::field::content_type, "text/plain");
    response.body() = "mtastsd: the metrics are at /metrics\n";
  } else {
    response.result(http::status::ok);
    response.set(http::field::content_type, prometheus::kContentType);
    response.body() = render_();
  }
  response.prepare_payload();
  if (head) response.body().clear();
  // A scraper that goes away mid-answer changes nothing; the connection closes either way.
  static_cast<void>(
      co_await http::async_write(stream, response, asio::as_tuple(asio::use_awaitable)));
  error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.close();
}

}  // namespace mtasts::daemon
