// Every setting, limit and timeout in one struct (style §2.13). Loaded from one TOML file; the
// defaults below are the documented defaults (docs/configuration.md lists them all).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/decide.hpp"
#include "core/error.hpp"
#include "core/refresh_plan.hpp"
#include "core/socketmap.hpp"

namespace mtasts {

// The daemon's settings ([daemon] and [socketmap.NAME] in the file; read only by mtastsd).
struct DaemonConfig {
  // Unix sockets; "" = none. Their directory must exist (systemd: RuntimeDirectory=mtasts).
  std::string exim_socket = "/run/mtasts/exim.sock";            // exim_socket
  std::string socketmap_socket = "/run/mtasts/socketmap.sock";  // socketmap_socket
  // TCP listeners "ADDR:PORT" / "[V6]:PORT"; none by default. No authentication: loopback only
  // unless a firewall guards the port.
  std::vector<std::string> exim_listen;       // exim_listen
  std::vector<std::string> socketmap_listen;  // socketmap_listen
  std::string socket_owner;                   // socket_owner: user name or uid; "" = unchanged
  std::string socket_group;                   // socket_group: group name or gid; "" = unchanged
  std::uint32_t socket_mode = 0660;           // socket_mode = "0660"
  std::string user;   // user: switch to it after binding (when started as root); "" = stay
  std::string group;  // group: default the user's primary group
  std::chrono::milliseconds read_timeout{10000};      // read_timeout_ms: a request must arrive
  std::chrono::milliseconds write_timeout{10000};     // write_timeout_ms: an answer must be taken
  std::chrono::milliseconds idle_timeout{30000};      // idle_timeout_ms: socketmap between requests
  std::chrono::milliseconds shutdown_timeout{10000};  // shutdown_timeout_ms: drain on SIGTERM
  std::size_t max_request_line = 1024;                // max_request_line: Exim request line, octets
  std::size_t max_netstring = 4096;    // max_netstring: socketmap request payload, octets
  std::size_t max_connections = 1000;  // max_connections: further clients wait in the backlog
  // Proactive refresh (RFC 8461 §3.3), see core/refresh_plan.hpp.
  bool refresh = true;                       // refresh: re-check cached policies before they expire
  std::size_t refresh_concurrency = 8;       // refresh_concurrency: refreshes running at once
  std::int64_t refresh_scan_interval = 300;  // refresh_scan_interval (s): walk the cache file
  RefreshTiming refresh_timing;  // refresh_ahead, refresh_retry_max, drop_unused_after (s)
  // Exim cdb export (design §2.5), see core/exim_cdb.hpp.
  std::string cdb_export;                 // cdb_export: the file; "" = none
  std::int64_t cdb_export_interval = 10;  // cdb_export_interval (s): rewritten at most this often
  std::string metrics_listen;  // metrics_listen: Prometheus endpoint "ADDR:PORT"; "" = none
  // Socketmap names and their options ([socketmap.NAME]); without any table: {"postfix": {}}.
  std::map<std::string, SocketmapMapOptions> socketmaps{{"postfix", SocketmapMapOptions{}}};
  friend bool operator==(const DaemonConfig&, const DaemonConfig&) = default;
};

// TLSRPT (RFC 8460; [tlsrpt] in the file): mtastsd collects TLS outcomes from Postfix (libtlsrpt
// datagrams) and Exim (`tlsrpt` requests) and reports them daily (docs/tlsrpt.md).
struct TlsrptConfig {
  bool enabled = false;                            // enabled
  std::string socket = "/run/mtasts/tlsrpt.sock";  // socket: Postfix's datagram socket; "" = none
  std::uint32_t socket_mode = 0660;                // socket_mode: who may send datagrams
  std::string store;  // store: the counts file; "" = "tlsrpt.mdb" beside the cache
  std::size_t max_store_bytes = std::size_t{64} << 20;  // max_store_bytes: the counts file's bound
  std::string organization_name;                        // organization_name: required when enabled
  std::string contact_info;  // contact_info: an address (RFC 5322 addr-spec); required
  std::string submitter;     // submitter: the reporting domain; default contact_info's domain
  std::string mail_from;     // mail_from: envelope sender and From: of report mail; default
                             // "tlsrpt-noreply@<submitter>" (keep it out of collection: docs)
  std::vector<std::string> sendmail{"/usr/sbin/sendmail", "-oi"};  // sendmail: argv, no shell
  std::int64_t send_window = 14400;  // send_window (s): reports spread over this after 00:00 UTC
  std::int64_t retention_days = 14;  // retention_days: counts older than this are pruned
  std::int64_t retry_for = 86400;    // retry_for (s): a failing rua is retried this long (RPT-31)
  bool send = true;                  // send = false: collect and keep, never send
  std::size_t queue_limit = 65536;   // queue_limit: sessions waiting for the writer, then dropped
  friend bool operator==(const TlsrptConfig&, const TlsrptConfig&) = default;
};

// The fleet's shared cache (design §8, docs/fleet.md); only mtastsd uses it.
struct SharedCacheConfig {
  std::string url;  // shared_cache = "redis://HOST[:PORT][/DB]", "rediss://...", "unix:///PATH",
                    // "sentinel://H1[:PORT],H2[:PORT]/MASTER[/DB]"; "" = none
  std::string password_file;       // shared_cache_password_file: its first line is the password
  std::string user;                // shared_cache_user: ACL user (AUTH user password); "" = default
  std::string ca_file;             // shared_cache_ca_file: CA for rediss://, beside the system's
  std::string prefix = "mtasts:";  // shared_cache_prefix: keys are PREFIX "v1:" DOMAIN
  // shared_cache_timeout_ms: one read or lock's deadline. It counts the daemon's own event loop
  // too, which a storm of cold lookups (TLS handshakes) keeps busy for tens of milliseconds: a
  // few ms would then send members to the network alone (bench/fleet_bench.py).
  std::chrono::milliseconds timeout{100};
  friend bool operator==(const SharedCacheConfig&, const SharedCacheConfig&) = default;
};

struct Config {
  std::string cache_path;              // cache = "/var/lib/mtasts/cache.mdb"
  std::vector<std::string> resolvers;  // resolver = ["127.0.0.1:53"]; empty: /etc/resolv.conf
  std::string trust_anchor_file;       // trust_anchor = "/usr/share/dns/root.key"; empty: none
  std::string ca_file;                 // ca_file = extra CA bundle for policy hosts
  bool strict = false;                 // strict = answer `fail` for unavailable published policies
  // DANE (RFC 7672), evaluated before MTA-STS. Needs trust_anchor: without validation nothing is
  // secure, so DANE is never claimed.
  bool dane = true;                        // dane = false: never look at TLSA records
  std::vector<std::string> dane_required;  // dane_required = ["example.com"]: mandatory DANE
  DaneTiming dane_timing;          // dane_min_ttl, dane_max_ttl (s); failures are re-checked after
                                   // dns_retry
  std::uint16_t https_port = 443;  // https_port = only for test worlds
  std::chrono::milliseconds dns_timeout{5000};       // dns_timeout_ms
  std::chrono::milliseconds fetch_timeout{10000};    // fetch_timeout_ms
  std::chrono::milliseconds lookup_timeout{15000};   // lookup_timeout_ms: whole lookup incl. fetch
  std::size_t max_policy_bytes = 65536;              // max_policy_bytes (RFC 8461 §3.3: 64 KiB)
  std::size_t max_map_bytes = std::size_t{1} << 30;  // max_cache_bytes: LMDB map size cap
  Timing timing;                      // txt_max_ttl, txt_min_ttl, negative_ttl, dns_retry,
                                      // fetch_backoff_min, fetch_backoff_max (seconds)
  std::string log_level = "info";     // log_level = trace|debug|info|warning|error
  std::string log_target = "stderr";  // log_target = stderr|syslog
  DaemonConfig daemon;                // [daemon], [socketmap.NAME]
  TlsrptConfig tlsrpt;                // [tlsrpt]
  SharedCacheConfig shared_cache;     // shared_cache, shared_cache_*
};

// The TLSRPT counts file: tlsrpt.store, or "tlsrpt.mdb" in the cache's directory.
[[nodiscard]] std::string tlsrpt_store_path(const Config& config);

// Defaults, with the cache path from the build (MTASTS_DEFAULT_CACHE).
[[nodiscard]] Config default_config();

// The config file used when none is named: $MTASTS_CONFIG, else the build default
// (/etc/mtasts/mtasts.toml).
[[nodiscard]] std::string default_config_path();
// True when $MTASTS_CONFIG names the file: like a file named on the command line, it must exist
// (only the built-in default path may be missing and mean "all defaults").
[[nodiscard]] bool config_path_is_explicit();

// Parses TOML text. Unknown keys and bad values are errors naming the source, line and key.
[[nodiscard]] std::expected<Config, Error> parse_config(std::string_view toml_text,
                                                        std::string_view source_name);

// Loads `path`. When `must_exist` is false a missing file yields default_config().
[[nodiscard]] std::expected<Config, Error> load_config(const std::string& path, bool must_exist);

// Parses a TCP listen address "ADDR:PORT" or "[V6]:PORT" (port required, 1-65535) into the
// address text and the port.
struct ListenAddress {
  std::string address;
  std::uint16_t port = 0;
  friend bool operator==(const ListenAddress&, const ListenAddress&) = default;
};
[[nodiscard]] std::expected<ListenAddress, Error> parse_listen_address(std::string_view text);

// Parses "ADDR", "ADDR:PORT", "[V6]:PORT" or "V6"; returns "ADDR@PORT" as libunbound wants it.
[[nodiscard]] std::expected<std::string, Error> parse_resolver_address(std::string_view text);

}  // namespace mtasts
