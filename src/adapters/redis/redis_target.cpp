#include "adapters/redis/redis_target.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <algorithm>
#include <cstddef>
#include <optional>
#include <utility>

#include "core/text_quote.hpp"

namespace mtasts::redis {

namespace {

// sun_path holds the path and its terminating NUL.
constexpr std::size_t kMaxSocketPath = sizeof(sockaddr_un::sun_path) - 1;
constexpr std::size_t kMaxHostName = 253;

std::unexpected<Error> bad(std::string reason) {
  return std::unexpected(Error{ErrorCategory::config, "Redis URL: " + std::move(reason)});
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool starts_with_scheme(std::string_view url, std::string_view scheme) {
  if (url.size() < scheme.size()) return false;
  return std::ranges::equal(url.substr(0, scheme.size()), scheme,
                            [](char a, char b) { return lower(a) == b; });
}

bool all_digits(std::string_view text) {
  return !text.empty() && std::ranges::all_of(text, [](char c) { return c >= '0' && c <= '9'; });
}

// 0..max, digits only (no sign, no spaces); nullopt otherwise.
std::optional<long long> small_number(std::string_view text, long long max) {
  if (!all_digits(text) || text.size() > 10) return std::nullopt;
  long long value = 0;
  for (char c : text) value = value * 10 + (c - '0');
  if (value > max) return std::nullopt;
  return value;
}

std::expected<int, Error> parse_database(std::string_view text) {
  const auto value = small_number(text, 2147483647);
  if (!value) {
    return bad(fmt::format("database {} is not a number from 0 to 2147483647", quote_input(text)));
  }
  return static_cast<int>(*value);
}

bool host_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

// HOST[:PORT] or [V6]:PORT.
std::expected<Address, Error> parse_address(std::string_view text, std::uint16_t default_port) {
  Address address;
  address.port = default_port;
  std::string_view port_text;
  bool has_port = false;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      return bad(fmt::format("{} has no closing ']'", quote_input(text)));
    }
    const std::string literal(text.substr(1, close - 1));
    in6_addr ignored{};
    if (inet_pton(AF_INET6, literal.c_str(), &ignored) != 1) {
      return bad(fmt::format("{} is not an IPv6 address", quote_input(literal)));
    }
    address.host = literal;
    std::ranges::transform(address.host, address.host.begin(), lower);
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return bad(fmt::format("unexpected {} after {}", quote_input(rest),
                               quote_input(text.substr(0, close + 1))));
      }
      has_port = true;
      port_text = rest.substr(1);
    }
  } else {
    const auto colon = text.find(':');
    std::string_view host = text.substr(0, colon);
    if (colon != std::string_view::npos) {
      if (text.find(':', colon + 1) != std::string_view::npos) {
        return bad(fmt::format("{}: an IPv6 address goes in brackets ([2001:db8::1]:6379)",
                               quote_input(text)));
      }
      has_port = true;
      port_text = text.substr(colon + 1);
    }
    if (host.empty()) return bad("the host is empty");
    if (host.size() > kMaxHostName || !std::ranges::all_of(host, host_name_char) ||
        host.front() == '.' || host.front() == '-') {
      return bad(fmt::format("{} is not a host name or address", quote_input(host)));
    }
    address.host = std::string(host);
    std::ranges::transform(address.host, address.host.begin(), lower);
  }
  if (has_port) {
    const auto port = small_number(port_text, 65535);
    if (!port || *port == 0) {
      return bad(fmt::format("port {} is not a number from 1 to 65535", quote_input(port_text)));
    }
    address.port = static_cast<std::uint16_t>(*port);
  }
  return address;
}

// The part after "scheme://" up to the first '/' (or the end), and what follows it.
std::pair<std::string_view, std::string_view> split_authority(std::string_view rest) {
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return {rest, {}};
  return {rest.substr(0, slash), rest.substr(slash)};
}

// "", "/" or "/DB".
std::expected<int, Error> parse_db_path(std::string_view path) {
  if (path.empty() || path == "/") return 0;
  return parse_database(path.substr(1));
}

std::expected<Target, Error> parse_host_url(std::string_view rest, Target::Kind kind) {
  const auto [authority, path] = split_authority(rest);
  auto address = parse_address(authority, kDefaultPort);
  if (!address) return std::unexpected(address.error());
  auto database = parse_db_path(path);
  if (!database) return std::unexpected(database.error());
  Target target;
  target.kind = kind;
  target.host = std::move(address->host);
  target.port = address->port;
  target.database = *database;
  return target;
}

std::expected<Target, Error> parse_unix_url(std::string_view rest) {
  if (rest.empty() || rest.front() != '/') {
    return bad("the socket path must be absolute (unix:///run/redis/redis.sock)");
  }
  Target target;
  target.kind = Target::Kind::unix_socket;
  const auto question = rest.find('?');
  target.path = std::string(rest.substr(0, question));
  if (target.path.size() < 2) return bad("the socket path is empty");
  if (target.path.size() > kMaxSocketPath) {
    return bad(fmt::format("the socket path is longer than {} bytes", kMaxSocketPath));
  }
  if (target.path.find('\0') != std::string::npos) return bad("the socket path contains NUL");
  if (question != std::string_view::npos) {
    const std::string_view query = rest.substr(question + 1);
    if (!query.starts_with("db=")) {
      return bad(fmt::format("unknown parameter {} (only db=N)", quote_input(query)));
    }
    auto database = parse_database(query.substr(3));
    if (!database) return std::unexpected(database.error());
    target.database = *database;
  }
  return target;
}

bool master_name_char(char c) {
  return c > 0x20 && c < 0x7F && c != '/' && c != '?';
}

std::expected<Target, Error> parse_sentinel_url(std::string_view rest) {
  const auto [authority, path] = split_authority(rest);
  Target target;
  target.kind = Target::Kind::sentinel;
  std::string_view list = authority;
  while (true) {
    const auto comma = list.find(',');
    auto address = parse_address(list.substr(0, comma), kDefaultSentinelPort);
    if (!address) return std::unexpected(address.error());
    target.sentinels.push_back(std::move(*address));
    if (comma == std::string_view::npos) break;
    list = list.substr(comma + 1);
  }
  if (path.size() < 2) return bad("no master name (sentinel://HOST[:PORT],.../MASTER[/DB])");
  const std::string_view names = path.substr(1);
  const auto slash = names.find('/');
  const std::string_view master = names.substr(0, slash);
  if (master.empty()) return bad("the master name is empty");
  if (!std::ranges::all_of(master, master_name_char)) {
    return bad(fmt::format("master name {} has characters other than printable ASCII",
                           quote_input(master)));
  }
  target.master_name = std::string(master);
  if (slash != std::string_view::npos) {
    auto database = parse_db_path(names.substr(slash));
    if (!database) return std::unexpected(database.error());
    target.database = *database;
  }
  return target;
}

}  // namespace

std::expected<Target, Error> parse_target(std::string_view url) {
  const auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    return bad("expected redis://, rediss://, unix:// or sentinel://");
  }
  const std::string_view rest = url.substr(scheme_end + 3);
  // Before anything that could echo the URL: user info is a secret.
  if (split_authority(rest).first.find('@') != std::string_view::npos) {
    return bad("a user or password in the URL is refused: use shared_cache_password_file instead");
  }
  if (rest.find('#') != std::string_view::npos) return bad("a fragment ('#') is refused");
  if (starts_with_scheme(url, "redis://")) return parse_host_url(rest, Target::Kind::tcp);
  if (starts_with_scheme(url, "rediss://")) return parse_host_url(rest, Target::Kind::tls);
  if (starts_with_scheme(url, "unix://")) return parse_unix_url(rest);
  if (starts_with_scheme(url, "sentinel://")) return parse_sentinel_url(rest);
  return bad(fmt::format("unknown scheme {} (expected redis, rediss, unix or sentinel)",
                         quote_input(url.substr(0, scheme_end))));
}

std::string describe(const Address& address) {
  if (address.host.find(':') != std::string::npos) {
    return fmt::format("[{}]:{}", address.host, address.port);
  }
  return fmt::format("{}:{}", address.host, address.port);
}

std::string describe(const Target& target) {
  switch (target.kind) {
    case Target::Kind::tcp:
      return fmt::format("redis {} db {}", describe(Address{target.host, target.port}),
                         target.database);
    case Target::Kind::tls:
      return fmt::format("rediss {} db {}", describe(Address{target.host, target.port}),
                         target.database);
    case Target::Kind::unix_socket:
      return fmt::format("redis unix {} db {}", target.path, target.database);
    case Target::Kind::sentinel: {
      std::string via;
      for (const Address& sentinel : target.sentinels) {
        if (!via.empty()) via += ',';
        via += describe(sentinel);
      }
      return fmt::format("sentinel {} via {} db {}", target.master_name, via, target.database);
    }
  }
  return "redis ?";
}

}  // namespace mtasts::redis
