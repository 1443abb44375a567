// Where the fleet's shared cache lives: a Redis URL parsed into a Target. Pure.
//
//   redis://HOST[:PORT][/DB]                     TCP, port 6379
//   rediss://HOST[:PORT][/DB]                    TLS over TCP, port 6379
//   unix:///ABS/PATH[?db=N]                      a Unix socket
//   sentinel://H1[:PORT][,H2[:PORT]...]/MASTER[/DB]  ask the sentinels (port 26379) for MASTER
//
// HOST is a name or an IP address, IPv6 in brackets. DB is 0..2^31-1 (the server decides how
// many it has). A user or password in the URL ("user:pw@") is refused: the password belongs in
// shared_cache_password_file, which keeps it out of the config file and `ps`.
#pragma once

#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

namespace mtasts::redis {

inline constexpr std::uint16_t kDefaultPort = 6379;
inline constexpr std::uint16_t kDefaultSentinelPort = 26379;

struct Address {
  std::string host;  // a name or an IP address (IPv6 without brackets)
  std::uint16_t port = kDefaultPort;
  friend bool operator==(const Address&, const Address&) = default;
};

struct Target {
  enum class Kind { tcp, tls, unix_socket, sentinel };
  Kind kind = Kind::tcp;
  std::string host;  // tcp, tls (IPv6 without brackets)
  std::uint16_t port = kDefaultPort;
  std::string path;                // unix_socket
  std::vector<Address> sentinels;  // sentinel
  std::string master_name;         // sentinel
  int database = 0;
  friend bool operator==(const Target&, const Target&) = default;
};

// Errors: ErrorCategory::config, one line naming what is wrong (never echoing user info).
[[nodiscard]] std::expected<Target, Error> parse_target(std::string_view url);

// "host:port", "[v6]:port".
[[nodiscard]] std::string describe(const Address& address);

// For logs: "redis 127.0.0.1:6379 db 0", "rediss cache.example:6380 db 2",
// "redis unix /run/redis.sock db 0", "sentinel mymaster via h1:26379,h2:26379 db 0".
[[nodiscard]] std::string describe(const Target& target);

}  // namespace mtasts::redis
