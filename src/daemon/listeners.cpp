#include "daemon/listeners.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include <fmt/format.h>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/v6_only.hpp>

#include "daemon/privileges.hpp"

namespace mtasts::daemon {
namespace {

using UnixProtocol = asio::local::stream_protocol;
using Tcp = asio::ip::tcp;

// Is something accepting connections on this Unix socket path?
bool socket_in_use(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const bool connected =
      ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return connected;
}

std::expected<Listener, std::string> bind_unix(asio::io_context& io, const std::string& path,
                                               Protocol protocol, const DaemonConfig& config) {
  auto fail = [&](std::string_view what, int error) {
    return std::unexpected(fmt::format("unix socket {}: {}: {}", path, what, std::strerror(error)));
  };
  std::optional<uid_t> owner;
  std::optional<gid_t> group;
  if (!config.socket_owner.empty()) {
    auto uid = lookup_user(config.socket_owner);
    if (!uid) return std::unexpected(fmt::format("socket_owner: {}", uid.error()));
    owner = *uid;
  }
  if (!config.socket_group.empty()) {
    auto gid = lookup_group(config.socket_group);
    if (!gid) return std::unexpected(fmt::format("socket_group: {}", gid.error()));
    group = *gid;
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return std::unexpected(fmt::format("unix socket {}: exists and is not a socket", path));
    }
    if (socket_in_use(path)) {
      return std::unexpected(
          fmt::format("unix socket {}: another process is listening on it", path));
    }
    if (::unlink(path.c_str()) != 0) return fail("cannot remove the stale socket", errno);
  }
  Listener listener;
  listener.protocol = protocol;
  listener.description = "unix:" + path;
  listener.unix_acceptor = std::make_unique<UnixProtocol::acceptor>(io);
  boost::system::error_code ec;
  listener.unix_acceptor->open(UnixProtocol(), ec);
  if (ec) return fail("socket", ec.value());
  // Created owner-only, then opened up to socket_mode once owner and group are right.
  const mode_t old_mask = ::umask(0177);
  listener.unix_acceptor->bind(UnixProtocol::endpoint(path), ec);
  ::umask(old_mask);
  if (ec) return fail("bind", ec.value());
  listener.created_path = path;
  listener.unix_acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen", ec.value());
  if ((owner || group) && ::chown(path.c_str(), owner ? *owner : static_cast<uid_t>(-1),
                                  group ? *group : static_cast<gid_t>(-1)) != 0) {
    return fail("chown", errno);
  }
  if (::chmod(path.c_str(), static_cast<mode_t>(config.socket_mode)) != 0) {
    return fail("chmod", errno);
  }
  return listener;
}

std::expected<Tcp::endpoint, std::string> tcp_endpoint(const std::string& text) {
  auto parsed = parse_listen_address(text);
  if (!parsed) return std::unexpected(parsed.error().reason);
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(parsed->address, ec);
  if (ec) return std::unexpected(fmt::format("listen address {}: {}", text, ec.message()));
  return Tcp::endpoint(address, parsed->port);
}

std::expected<Listener, std::string> bind_tcp(asio::io_context& io, const std::string& text,
                                              Protocol protocol) {
  auto endpoint = tcp_endpoint(text);
  if (!endpoint) return std::unexpected(endpoint.error());
  Listener listener;
  listener.protocol = protocol;
  listener.description = "tcp:" + text;
  listener.tcp_acceptor = std::make_unique<Tcp::acceptor>(io);
  boost::system::error_code ec;
  auto fail = [&](std::string_view what) {
    return std::unexpected(fmt::format("tcp {}: {}: {}", text, what, ec.message()));
  };
  listener.tcp_acceptor->open(endpoint->protocol(), ec);
  if (ec) return fail("socket");
  listener.tcp_acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (endpoint->address().is_v6()) listener.tcp_acceptor->set_option(asio::ip::v6_only(true), ec);
  listener.tcp_acceptor->bind(*endpoint, ec);
  if (ec) return fail("bind");
  listener.tcp_acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen");
  return listener;
}

// Which protocol an inherited socket serves: its name, else its address in the config.
std::expected<Listener, std::string> adopt(asio::io_context& io, const InheritedSocket& inherited,
                                           const DaemonConfig& config) {
  const std::string what =
      fmt::format("socket fd {} from systemd (name \"{}\")", inherited.fd, inherited.name);
  if (sd_is_socket(inherited.fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
    return std::unexpected(what + ": not a listening stream socket");
  }
  sockaddr_storage storage{};
  socklen_t length = sizeof storage;
  if (::getsockname(inherited.fd, reinterpret_cast<sockaddr*>(&storage), &length) != 0) {
    return std::unexpected(fmt::format("{}: getsockname: {}", what, std::strerror(errno)));
  }
  std::optional<Protocol> protocol;
  if (inherited.name == "exim") protocol = Protocol::exim;
  if (inherited.name == "socketmap") protocol = Protocol::socketmap;

  Listener listener;
  boost::system::error_code ec;
  if (storage.ss_family == AF_UNIX) {
    const auto* address = reinterpret_cast<const sockaddr_un*>(&storage);
    const std::string path(address->sun_path,
                           ::strnlen(address->sun_path, sizeof address->sun_path));
    if (!protocol && path == config.exim_socket) protocol = Protocol::exim;
    if (!protocol && path == config.socketmap_socket) protocol = Protocol::socketmap;
    listener.description = "unix:" + path + " (systemd)";
    listener.unix_acceptor = std::make_unique<UnixProtocol::acceptor>(io);
    listener.unix_acceptor->assign(UnixProtocol(), inherited.fd, ec);
  } else if (storage.ss_family == AF_INET || storage.ss_family == AF_INET6) {
    listener.tcp_acceptor = std::make_unique<Tcp::acceptor>(io);
    listener.tcp_acceptor->assign(storage.ss_family == AF_INET ? Tcp::v4() : Tcp::v6(),
                                  inherited.fd, ec);
    if (!ec) {
      const Tcp::endpoint local = listener.tcp_acceptor->local_endpoint(ec);
      listener.description =
          fmt::format("tcp:{}:{} (systemd)", local.address().to_string(), local.port());
      auto matches = [&](const std::vector<std::string>& texts) {
        for (const std::string& text : texts) {
          if (auto endpoint = tcp_endpoint(text); endpoint && *endpoint == local) return true;
        }
        return false;
      };
      if (!protocol && matches(config.exim_listen)) protocol = Protocol::exim;
      if (!protocol && matches(config.socketmap_listen)) protocol = Protocol::socketmap;
    }
  } else {
    return std::unexpected(what + ": neither a Unix nor a TCP socket");
  }
  if (ec) return std::unexpected(fmt::format("{}: {}", what, ec.message()));
  if (!protocol) {
    return std::unexpected(fmt::format(
        "{} ({}): unknown protocol; name it FileDescriptorName=exim or =socketmap, or list its "
        "address in the config",
        what, listener.description));
  }
  listener.protocol = *protocol;
  return listener;
}

// Each of up to max_connections clients holds a descriptor, and a lookup it asks for holds more
// (the policy fetch's socket, DNS sockets) on top of the cache, the listeners and the log. The
// soft limit a service starts with is often 1024 (systemd's default, LimitNOFILE=1024:524288),
// which max_connections' default of 1000 alone nearly uses up: past it, accept() and the
// fetches' and resolver's sockets fail with EMFILE and lookups are answered as DNS failures.
// Nothing in mtastsd uses select(), so the soft limit goes up to the hard one (at most 2^20).
void raise_descriptor_limit() {
  constexpr rlim_t kEnough = rlim_t{1} << 20;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= kEnough) return;
  const rlim_t wanted =
      limit.rlim_max == RLIM_INFINITY ? kEnough : std::min(limit.rlim_max, kEnough);
  if (wanted <= limit.rlim_cur) return;
  limit.rlim_cur = wanted;
  (void)::setrlimit(RLIMIT_NOFILE, &limit);
}

}  // namespace

std::string_view to_string(Protocol protocol) {
  return protocol == Protocol::exim ? "exim" : "socketmap";
}

std::expected<std::vector<Listener>, std::string> open_listeners(
    asio::io_context& io, const DaemonConfig& config,
    const std::vector<InheritedSocket>& inherited) {
  raise_descriptor_limit();
  std::vector<Listener> listeners;
  if (!inherited.empty()) {
    for (const InheritedSocket& socket : inherited) {
      auto listener = adopt(io, socket, config);
      if (!listener) return std::unexpected(listener.error());
      listeners.push_back(std::move(*listener));
    }
    return listeners;
  }
  auto add = [&](std::expected<Listener, std::string> listener) -> std::optional<std::string> {
    if (!listener) return listener.error();
    listeners.push_back(std::move(*listener));
    return std::nullopt;
  };
  std::optional<std::string> error;
  if (!config.exim_socket.empty()) {
    error = add(bind_unix(io, config.exim_socket, Protocol::exim, config));
  }
  if (!error && !config.socketmap_socket.empty()) {
    error = add(bind_unix(io, config.socketmap_socket, Protocol::socketmap, config));
  }
  for (const std::string& text : config.exim_listen) {
    if (!error) error = add(bind_tcp(io, text, Protocol::exim));
  }
  for (const std::string& text : config.socketmap_listen) {
    if (!error) error = add(bind_tcp(io, text, Protocol::socketmap));
  }
  if (error) {
    for (const Listener& listener : listeners) {
      if (!listener.created_path.empty()) ::unlink(listener.created_path.c_str());
    }
    return std::unexpected(*error);
  }
  if (listeners.empty()) return std::unexpected(std::string("no listener is configured"));
  return listeners;
}

bool listener_settings_differ(const DaemonConfig& a, const DaemonConfig& b) {
  return a.exim_socket != b.exim_socket || a.socketmap_socket != b.socketmap_socket ||
         a.exim_listen != b.exim_listen || a.socketmap_listen != b.socketmap_listen ||
         a.socket_owner != b.socket_owner || a.socket_group != b.socket_group ||
         a.socket_mode != b.socket_mode || a.user != b.user || a.group != b.group ||
         a.metrics_listen != b.metrics_listen;
}

}  // namespace mtasts::daemon
