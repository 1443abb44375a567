// The daemon's listening sockets: Unix and TCP, bound from the config or passed by systemd
// (socket activation). Binding happens before privileges are dropped.
#pragma once

#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include "service/asio.hpp"
#include "daemon/systemd.hpp"
#include "service/config.hpp"

namespace mtasts::daemon {

enum class Protocol { exim, socketmap };

[[nodiscard]] std::string_view to_string(Protocol protocol);

struct Listener {
  Protocol protocol = Protocol::exim;
  std::string description;  // "unix:/run/mtasts/exim.sock", "tcp:127.0.0.1:8461"
  std::unique_ptr<asio::local::stream_protocol::acceptor> unix_acceptor;  // one of the two
  std::unique_ptr<asio::ip::tcp::acceptor> tcp_acceptor;
  std::string created_path;  // a socket file this process created (removed at exit)
};

// First raises the soft limit on open files to the hard one: the clients these listeners accept
// (up to max_connections) and the lookups they ask for each hold descriptors.
// Without inherited sockets: binds every socket the config names (Unix sockets get
// socket_owner, socket_group and socket_mode; a stale socket file is replaced, one in use is an
// error). With inherited sockets (systemd): uses exactly those, each assigned a protocol by its
// FileDescriptorName ("exim" or "socketmap") or else by matching its address against the config.
[[nodiscard]] std::expected<std::vector<Listener>, std::string> open_listeners(
    asio::io_context& io, const DaemonConfig& config,
    const std::vector<InheritedSocket>& inherited);

// True when the settings that only take effect at start (sockets, ownership, user, the metrics
// listener) differ.
[[nodiscard]] bool listener_settings_differ(const DaemonConfig& a, const DaemonConfig& b);

}  // namespace mtasts::daemon
