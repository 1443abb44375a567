// Every setting, limit and timeout in one struct (style §2.13). Loaded from one TOML file; the
// defaults below are the documented defaults (docs/configuration.md lists them all).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

#include "core/decide.hpp"
#include "core/error.hpp"

namespace mtasts {

struct Config {
  std::string cache_path;              // cache = "/var/lib/mtasts/cache.mdb"
  std::vector<std::string> resolvers;  // resolver = ["127.0.0.1:53"]; empty: /etc/resolv.conf
  std::string trust_anchor_file;       // trust_anchor = "/usr/share/dns/root.key"; empty: none
  std::string ca_file;                 // ca_file = extra CA bundle for policy hosts
  bool strict = false;                 // strict = answer `fail` for unavailable published policies
  std::uint16_t https_port = 443;      // https_port = only for test worlds
  std::chrono::milliseconds dns_timeout{5000};       // dns_timeout_ms
  std::chrono::milliseconds fetch_timeout{10000};    // fetch_timeout_ms
  std::chrono::milliseconds lookup_timeout{15000};   // lookup_timeout_ms: whole lookup incl. fetch
  std::size_t max_policy_bytes = 65536;              // max_policy_bytes (RFC 8461 §3.3: 64 KiB)
  std::size_t max_map_bytes = std::size_t{1} << 30;  // max_cache_bytes: LMDB map size cap
  Timing timing;                                     // recheck_interval, negative_ttl, dns_retry,
                  // fetch_backoff_min, fetch_backoff_max (seconds)
  std::string log_level = "info";     // log_level = trace|debug|info|warning|error
  std::string log_target = "stderr";  // log_target = stderr|syslog
};

// Defaults, with the cache path from the build (MTASTS_DEFAULT_CACHE).
[[nodiscard]] Config default_config();

// The config file used when none is named: $MTASTS_CONFIG, else the build default
// (/etc/mtasts/mtasts.toml).
[[nodiscard]] std::string default_config_path();

// Parses TOML text. Unknown keys and bad values are errors naming the source, line and key.
[[nodiscard]] std::expected<Config, Error> parse_config(std::string_view toml_text,
                                                        std::string_view source_name);

// Loads `path`. When `must_exist` is false a missing file yields default_config().
[[nodiscard]] std::expected<Config, Error> load_config(const std::string& path, bool must_exist);

// Parses "ADDR", "ADDR:PORT", "[V6]:PORT" or "V6"; returns "ADDR@PORT" as libunbound wants it.
[[nodiscard]] std::expected<std::string, Error> parse_resolver_address(std::string_view text);

}  // namespace mtasts
