// One coroutine per connection, on the daemon's single event loop.
//
// Exim (${readsocket}, docs/protocol-readsocket.md): read one request line (LF, CRLF, or the
// bytes before the client's half-close), answer it without a trailing newline, close. One read
// deadline covers the whole request line, one write deadline the answer. Bad requests get
// "error: <reason>".
//
// Postfix socketmap (docs/protocol-socketmap.md): netstring requests answered in order on one
// connection until the client closes it, stays idle for idle_timeout, or sends something that
// is not a netstring within the size limit (answered "PERM ..." and closed).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include "service/asio.hpp"
#include "daemon/state.hpp"

namespace mtasts::daemon {

asio::awaitable<void> serve_exim(asio::local::stream_protocol::socket socket, State& state);
asio::awaitable<void> serve_exim(asio::ip::tcp::socket socket, State& state);
asio::awaitable<void> serve_socketmap(asio::local::stream_protocol::socket socket, State& state);
asio::awaitable<void> serve_socketmap(asio::ip::tcp::socket socket, State& state);

}  // namespace mtasts::daemon
