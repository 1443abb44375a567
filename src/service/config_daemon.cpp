#include "service/config_daemon.hpp"

#include <chrono>
#include <cstdint>
#include <set>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "service/toml_reading.hpp"

namespace mtasts::detail {
namespace {

const std::set<std::string_view> kDaemonKeys = {
    "exim_socket",
    "socketmap_socket",
    "exim_listen",
    "socketmap_listen",
    "socket_owner",
    "socket_group",
    "socket_mode",
    "user",
    "group",
    "read_timeout_ms",
    "write_timeout_ms",
    "idle_timeout_ms",
    "shutdown_timeout_ms",
    "max_request_line",
    "max_netstring",
    "max_connections",
    "refresh",
    "refresh_concurrency",
    "refresh_scan_interval",
    "refresh_ahead",
    "refresh_retry_max",
    "drop_unused_after",
    "refresh_ttl_window",
    "cdb_export",
    "cdb_export_interval",
    "metrics_listen",
};

const std::set<std::string_view> kSocketmapKeys = {
    "enforce_testing",
    "servername",
    "tlsrpt",
    "report_testing",
};

// A string or an array of strings, each a TCP listen address.
std::optional<Error> read_listen(const toml::table& table, std::string_view source,
                                 std::string_view key, std::vector<std::string>& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  std::vector<std::string> texts;
  if (auto error = detail::read_string_list(table, source, key, texts)) return error;
  for (const std::string& text : texts) {
    auto parsed = parse_listen_address(text);
    if (!parsed) return config_error(source, node->source(), key, parsed.error().reason);
  }
  out = std::move(texts);
  return std::nullopt;
}

// cdb_export: "" (none) or an absolute path; the temporary file is written beside it.
std::optional<Error> read_cdb_path(const toml::table& table, std::string_view source,
                                   std::string& out) {
  std::string value = out;
  if (auto error = read_string(table, source, "cdb_export", value)) return error;
  if (!value.empty() && (!value.starts_with('/') || value.ends_with('/'))) {
    return config_error(source, table.get("cdb_export")->source(), "cdb_export",
                        "must be an absolute file path (or \"\" for none)");
  }
  out = value;
  return std::nullopt;
}

// One listen address "ADDR:PORT" / "[V6]:PORT", or "" for none.
std::optional<Error> read_optional_listen(const toml::table& table, std::string_view source,
                                          std::string_view key, std::string& out) {
  std::string value = out;
  if (auto error = read_string(table, source, key, value)) return error;
  if (!value.empty()) {
    auto parsed = parse_listen_address(value);
    if (!parsed) return config_error(source, table.get(key)->source(), key, parsed.error().reason);
  }
  out = value;
  return std::nullopt;
}

}  // namespace

std::optional<Error> read_daemon(const toml::table& root, std::string_view source,
                                 DaemonConfig& daemon) {
  const toml::node* node = root.get("daemon");
  if (node == nullptr) return std::nullopt;
  const toml::table* table = node->as_table();
  if (table == nullptr) return config_error(source, node->source(), "daemon", "expected a table");
  if (auto error = check_keys(*table, source, kDaemonKeys, "daemon.")) return error;
  constexpr std::int64_t kDay = 86400;
  std::int64_t read_ms = daemon.read_timeout.count();
  std::int64_t write_ms = daemon.write_timeout.count();
  std::int64_t idle_ms = daemon.idle_timeout.count();
  std::int64_t shutdown_ms = daemon.shutdown_timeout.count();
  const std::optional<Error> errors[] = {
      read_socket_path(*table, source, "exim_socket", daemon.exim_socket),
      read_socket_path(*table, source, "socketmap_socket", daemon.socketmap_socket),
      read_listen(*table, source, "exim_listen", daemon.exim_listen),
      read_listen(*table, source, "socketmap_listen", daemon.socketmap_listen),
      read_string(*table, source, "socket_owner", daemon.socket_owner),
      read_string(*table, source, "socket_group", daemon.socket_group),
      read_mode(*table, source, "socket_mode", daemon.socket_mode),
      read_string(*table, source, "user", daemon.user),
      read_string(*table, source, "group", daemon.group),
      read_integer(*table, source, "read_timeout_ms", 100, 600'000, read_ms),
      read_integer(*table, source, "write_timeout_ms", 100, 600'000, write_ms),
      read_integer(*table, source, "idle_timeout_ms", 100, 3'600'000, idle_ms),
      read_integer(*table, source, "shutdown_timeout_ms", 0, 600'000, shutdown_ms),
      read_integer(*table, source, "max_request_line", 64, 65536, daemon.max_request_line),
      read_integer(*table, source, "max_netstring", 64, 65536, daemon.max_netstring),
      read_integer(*table, source, "max_connections", 1, 1'000'000, daemon.max_connections),
      read_bool(*table, source, "refresh", daemon.refresh),
      read_integer(*table, source, "refresh_concurrency", 1, 1024, daemon.refresh_concurrency),
      read_integer(*table, source, "refresh_scan_interval", 1, kDay, daemon.refresh_scan_interval),
      read_integer(*table, source, "refresh_ahead", 0, kDay, daemon.refresh_timing.ahead),
      read_integer(*table, source, "refresh_retry_max", 10, kDay, daemon.refresh_timing.retry_max),
      read_integer(*table, source, "drop_unused_after", 0, 3650 * kDay,
                   daemon.refresh_timing.drop_unused_after),
      read_integer(*table, source, "refresh_ttl_window", 0, 3650 * kDay,
                   daemon.refresh_timing.ttl_window),
      read_cdb_path(*table, source, daemon.cdb_export),
      read_integer(*table, source, "cdb_export_interval", 1, 3600, daemon.cdb_export_interval),
      read_optional_listen(*table, source, "metrics_listen", daemon.metrics_listen),
  };
  for (const auto& error : errors) {
    if (error) return error;
  }
  // Entries used only through the Exim module or the CLI show their use when they go stale
  // (core/refresh_plan.hpp: observed_last_use); a shorter period would drop them in between.
  if (daemon.refresh_timing.drop_unused_after != 0 &&
      daemon.refresh_timing.drop_unused_after < 60) {
    return config_error(source, table->get("drop_unused_after")->source(),
                        "daemon.drop_unused_after", "must be 0 (never) or at least 60 seconds");
  }
  daemon.read_timeout = std::chrono::milliseconds(read_ms);
  daemon.write_timeout = std::chrono::milliseconds(write_ms);
  daemon.idle_timeout = std::chrono::milliseconds(idle_ms);
  daemon.shutdown_timeout = std::chrono::milliseconds(shutdown_ms);
  return std::nullopt;
}

std::optional<Error> read_socketmaps(const toml::table& root, std::string_view source,
                                     std::map<std::string, SocketmapMapOptions>& out) {
  const toml::node* node = root.get("socketmap");
  if (node == nullptr) return std::nullopt;
  const toml::table* table = node->as_table();
  if (table == nullptr) {
    return config_error(source, node->source(), "socketmap", "expected tables [socketmap.NAME]");
  }
  // A bare [socketmap] names no map: as without any table, "postfix" is served (an empty set
  // would answer every request "PERM unknown socketmap name").
  if (table->empty()) return std::nullopt;
  std::map<std::string, SocketmapMapOptions> maps;
  for (const auto& [name, map_node] : *table) {
    const std::string key = fmt::format("socketmap.{}", key_text(name.str()));
    const toml::table* map = map_node.as_table();
    if (map == nullptr) return config_error(source, map_node.source(), key, "expected a table");
    const std::string_view text = name.str();
    if (text.empty() || text.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
                            std::string_view::npos) {
      return config_error(source, map_node.source(), key,
                          "a map name is letters, digits, '.', '_' and '-'");
    }
    if (auto error = check_keys(*map, source, kSocketmapKeys, key + ".")) return error;
    SocketmapMapOptions options;
    const std::optional<Error> errors[] = {
        read_bool(*map, source, "enforce_testing", options.enforce_testing),
        read_bool(*map, source, "servername", options.servername),
        read_bool(*map, source, "tlsrpt", options.tlsrpt),
        read_bool(*map, source, "report_testing", options.report_testing),
    };
    for (const auto& error : errors) {
      if (error) return error;
    }
    if (options.report_testing && !options.tlsrpt) {
      return config_error(source, map->get("report_testing")->source(), key + ".report_testing",
                          "needs tlsrpt = true");
    }
    maps.emplace(std::string(text), options);
  }
  out = std::move(maps);
  return std::nullopt;
}

}  // namespace mtasts::detail
