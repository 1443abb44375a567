#include "service/config.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "core/domain.hpp"
#include "core/text_quote.hpp"

namespace mtasts {
namespace {

Error config_error(std::string_view source, const toml::source_region& where, std::string_view key,
                   std::string_view what) {
  return Error{ErrorCategory::config,
               fmt::format("{}:{}: {}: {}", source, where.begin.line, key, what)};
}

// A key of the file as an error message shows it: bare keys as they are, any other (a quoted
// TOML key may hold newlines, control bytes or megabytes) quoted, escaped and cut, so the reason
// stays one line (style §2.2).
std::string key_text(std::string_view key) {
  const bool bare = !key.empty() && key.size() <= 64 &&
                    key.find_first_not_of(
                        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789_-") == std::string_view::npos;
  return bare ? std::string(key) : quote_input(key, 64);
}

// toml++'s description of a syntax error, which can repeat keys of the input verbatim: control
// bytes escaped and cut to a bound, so the reason stays one line.
std::string description_text(std::string_view description) {
  constexpr std::size_t kMax = 200;
  std::string out;
  for (const char ch : description.substr(0, kMax)) {
    const auto byte = static_cast<unsigned char>(ch);
    if (byte < 0x20 || byte == 0x7f) {
      out += fmt::format("\\x{:02x}", byte);
    } else {
      out.push_back(ch);
    }
  }
  if (description.size() > kMax) out += "...";
  return out;
}

// Reads an integer key within [low, high]; absent keys leave `out` untouched.
template <class T>
std::optional<Error> read_integer(const toml::table& table, std::string_view source,
                                  std::string_view key, std::int64_t low, std::int64_t high,
                                  T& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  const auto* value = node->as_integer();
  if (value == nullptr) return config_error(source, node->source(), key, "expected an integer");
  std::int64_t number = value->get();
  if (number < low || number > high) {
    return config_error(source, node->source(), key,
                        fmt::format("{} is out of range [{}, {}]", number, low, high));
  }
  out = static_cast<T>(number);
  return std::nullopt;
}

std::optional<Error> read_string(const toml::table& table, std::string_view source,
                                 std::string_view key, std::string& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  const auto* value = node->as_string();
  if (value == nullptr) return config_error(source, node->source(), key, "expected a string");
  // Every string ends up in a C API (open, bind, getpwnam), which would cut it at a NUL.
  if (value->get().find('\0') != std::string::npos) {
    return config_error(source, node->source(), key, "contains a NUL character");
  }
  out = value->get();
  return std::nullopt;
}

std::optional<Error> read_choice(const toml::table& table, std::string_view source,
                                 std::string_view key,
                                 std::initializer_list<std::string_view> allowed,
                                 std::string& out) {
  std::string value = out;
  if (auto error = read_string(table, source, key, value)) return error;
  for (std::string_view choice : allowed) {
    if (value == choice) {
      out = value;
      return std::nullopt;
    }
  }
  return config_error(
      source, table.get(key)->source(), key,
      fmt::format("{} is not one of: {}", quote_input(value), fmt::join(allowed, ", ")));
}

std::optional<Error> read_resolvers(const toml::table& table, std::string_view source,
                                    std::vector<std::string>& out) {
  const toml::node* node = table.get("resolver");
  if (node == nullptr) return std::nullopt;
  std::vector<std::string> texts;
  if (const auto* single = node->as_string()) {
    texts.push_back(single->get());
  } else if (const auto* list = node->as_array()) {
    for (const toml::node& item : *list) {
      const auto* text = item.as_string();
      if (text == nullptr)
        return config_error(source, item.source(), "resolver", "expected strings");
      texts.push_back(text->get());
    }
  } else {
    return config_error(source, node->source(), "resolver", "expected a string or an array");
  }
  out.clear();
  for (const std::string& text : texts) {
    auto parsed = parse_resolver_address(text);
    if (!parsed) return config_error(source, node->source(), "resolver", parsed.error().reason);
    out.push_back(text);
  }
  return std::nullopt;
}

std::optional<Error> read_domains(const toml::table& table, std::string_view source,
                                  std::string_view key, std::vector<std::string>& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  const auto* list = node->as_array();
  if (list == nullptr) return config_error(source, node->source(), key, "expected an array");
  out.clear();
  for (const toml::node& item : *list) {
    const auto* text = item.as_string();
    if (text == nullptr) return config_error(source, item.source(), key, "expected strings");
    auto domain = normalize_domain(text->get());
    if (!domain) {
      return config_error(source, item.source(), key,
                          fmt::format("{}: {}", quote_input(text->get()), domain.error().reason));
    }
    out.push_back(std::move(*domain));
  }
  return std::nullopt;
}

const std::set<std::string_view> kKnownKeys = {
    "cache",
    "resolver",
    "trust_anchor",
    "ca_file",
    "strict",
    "dane",
    "dane_required",
    "dane_min_ttl",
    "dane_max_ttl",
    "https_port",
    "dns_timeout_ms",
    "fetch_timeout_ms",
    "lookup_timeout_ms",
    "max_policy_bytes",
    "max_cache_bytes",
    "txt_max_ttl",
    "txt_min_ttl",
    "recheck_interval",  // the old name of txt_max_ttl, still read
    "negative_ttl",
    "dns_retry",
    "fetch_backoff_min",
    "fetch_backoff_max",
    "log_level",
    "log_target",
    "daemon",
    "socketmap",
};

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

std::optional<Error> read_bool(const toml::table& table, std::string_view source,
                               std::string_view key, bool& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  const auto* value = node->as_boolean();
  if (value == nullptr) return config_error(source, node->source(), key, "expected true or false");
  out = value->get();
  return std::nullopt;
}

// Every key of `table` must be in `known`; `where` names the table in the message.
std::optional<Error> check_keys(const toml::table& table, std::string_view source,
                                const std::set<std::string_view>& known, std::string_view where) {
  for (const auto& [key, node] : table) {
    if (!known.contains(key.str())) {
      return config_error(source, node.source(), fmt::format("{}{}", where, key_text(key.str())),
                          "unknown key (see mtastsd.toml(5))");
    }
  }
  return std::nullopt;
}

// A Unix socket path: "" (none) or absolute and short enough for sockaddr_un.
std::optional<Error> read_socket_path(const toml::table& table, std::string_view source,
                                      std::string_view key, std::string& out) {
  std::string value = out;
  if (auto error = read_string(table, source, key, value)) return error;
  if (!value.empty()) {
    constexpr std::size_t kMaxPath = 107;  // sizeof(sockaddr_un::sun_path) - 1
    if (!value.starts_with('/')) {
      return config_error(source, table.get(key)->source(), key,
                          "must be an absolute path (or \"\" for none)");
    }
    if (value.size() > kMaxPath) {
      return config_error(source, table.get(key)->source(), key,
                          fmt::format("longer than {} octets", kMaxPath));
    }
  }
  out = value;
  return std::nullopt;
}

// A string or an array of strings, each a TCP listen address.
std::optional<Error> read_listen(const toml::table& table, std::string_view source,
                                 std::string_view key, std::vector<std::string>& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  std::vector<std::string> texts;
  if (const auto* single = node->as_string()) {
    texts.push_back(single->get());
  } else if (const auto* list = node->as_array()) {
    for (const toml::node& item : *list) {
      const auto* text = item.as_string();
      if (text == nullptr) return config_error(source, item.source(), key, "expected strings");
      texts.push_back(text->get());
    }
  } else {
    return config_error(source, node->source(), key, "expected a string or an array");
  }
  for (const std::string& text : texts) {
    auto parsed = parse_listen_address(text);
    if (!parsed) return config_error(source, node->source(), key, parsed.error().reason);
  }
  out = std::move(texts);
  return std::nullopt;
}

// "0660" (a string of octal digits, as in systemd units) or a TOML integer such as 0o660.
std::optional<Error> read_mode(const toml::table& table, std::string_view source,
                               std::string_view key, std::uint32_t& out) {
  const toml::node* node = table.get(key);
  if (node == nullptr) return std::nullopt;
  std::int64_t mode = -1;
  if (const auto* text = node->as_string()) {
    const std::string& digits = text->get();
    if (!digits.empty() && digits.size() <= 4 &&
        digits.find_first_not_of("01234567") == std::string::npos) {
      mode = std::stoll(digits, nullptr, 8);
    }
  } else if (const auto* number = node->as_integer()) {
    mode = number->get();
  }
  if (mode < 0 || mode > 0777) {
    return config_error(source, node->source(), key,
                        "expected permission bits as an octal string such as \"0660\"");
  }
  out = static_cast<std::uint32_t>(mode);
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

// [socketmap.NAME] tables; NAME is what Postfix sends as the first word of each request.
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

// toml++ 3.3 (Debian 12) reaches __builtin_unreachable(), undefined behaviour, when it asks
// whether certain non-ASCII code points are whitespace (is_non_ascii_horizontal_whitespace on
// U+00A1-U+0499 such as 'é', U+2E4E-U+3247 and U+FC26-U+FEFE; upstream marzer/tomlplusplus#190
// and #295, fixed after 3.3). It asks about every character it reads outside strings and
// comments, including the ones after a number or date it scans ahead over (`1"é"`), and in a
// """ string the one right after a backslash or a line-ending backslash. TOML allows non-ASCII
// text only inside strings and comments, so this scan follows toml++'s structure (keys, values,
// arrays, inline tables, headers) and refuses any other non-ASCII byte, and the one after a
// backslash, before toml++ sees them. Where it is unsure whether a quote opens a string it
// assumes not. Found by fuzz/fuzz_config.cpp.
struct TomlHazard {
  std::size_t offset = 0;
  std::string_view what;
};

std::optional<TomlHazard> find_toml_hazard(std::string_view text) {
  // Outside strings and comments: what comes next. `token` is a bare value (number, date, bool,
  // or junk) that toml++ reads up to a value terminator, quotes included.
  enum class Mode { key, value, token, after };
  enum class Lex { outside, comment, basic, multi_basic, literal, multi_literal };
  enum class Nest { array, inline_table, header };
  constexpr std::string_view kOutside = "non-ASCII character outside a quoted string or comment";
  constexpr std::string_view kEscape =
      "non-ASCII character right after a backslash or a line-ending backslash in a string; "
      "write it as \\uXXXX";
  const auto non_ascii = [&](std::size_t at) {
    return at < text.size() && static_cast<unsigned char>(text[at]) >= 0x80;
  };
  // Consecutive `quote` characters from `at`.
  const auto run = [&](std::size_t at, char quote) {
    std::size_t end = at;
    while (end < text.size() && text[end] == quote) ++end;
    return end - at;
  };
  Mode mode = Mode::key;
  Mode resume = Mode::key;  // the mode after the current string or comment
  Lex lex = Lex::outside;
  std::vector<Nest> nests;
  const auto in = [&](Nest nest) { return !nests.empty() && nests.back() == nest; };
  std::size_t i = text.starts_with("\xEF\xBB\xBF") ? 3 : 0;  // toml++ skips a UTF-8 BOM
  while (i < text.size()) {
    const char ch = text[i];
    switch (lex) {
      case Lex::outside: {
        if (non_ascii(i)) return TomlHazard{i, kOutside};
        const bool blank = ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
        if (mode == Mode::token) {
          if (blank || ch == '\n' || ch == ']' || ch == '}' || ch == ',' || ch == '#') {
            mode = Mode::after;  // a value terminator: look at it again below
            continue;
          }
          break;
        }
        if (blank) break;
        if (ch == '#') {
          resume = mode;
          lex = Lex::comment;
          break;
        }
        if (ch == '\n') {
          if (mode == Mode::key || (mode == Mode::value && !in(Nest::array)) ||
              (mode == Mode::after && !in(Nest::array))) {
            mode = Mode::key;
          }
          break;
        }
        if (mode == Mode::key) {
          if (ch == '"' || ch == '\'') {
            resume = Mode::key;
          } else {
            if (ch == '=') mode = Mode::value;
            if (ch == '[') nests.push_back(Nest::header);
            if ((ch == ']' && in(Nest::header)) || (ch == '}' && in(Nest::inline_table))) {
              nests.pop_back();
              mode = Mode::after;
            }
            break;
          }
        } else if (mode == Mode::value) {
          if (ch == '"' || ch == '\'') {
            resume = Mode::after;
          } else {
            if (ch == '[') {
              nests.push_back(Nest::array);
            } else if (ch == '{') {
              nests.push_back(Nest::inline_table);
              mode = Mode::key;
            } else if (ch == ']' || ch == '}') {
              if (in(ch == ']' ? Nest::array : Nest::inline_table)) nests.pop_back();
              mode = Mode::after;
            } else if (ch != ',') {
              mode = Mode::token;
            }
            break;
          }
        } else {  // Mode::after
          if (ch == ',') {
            if (in(Nest::array)) mode = Mode::value;
            if (in(Nest::inline_table)) mode = Mode::key;
          } else if (ch == ']' || ch == '}') {
            if ((ch == ']' && (in(Nest::array) || in(Nest::header))) ||
                (ch == '}' && in(Nest::inline_table))) {
              nests.pop_back();
            }
          } else {
            mode = Mode::token;  // junk after a value, quotes included: toml++ refuses it
          }
          break;
        }
        // A quote where a key or a value begins opens a string.
        const std::size_t quotes = run(i, ch);
        const bool multi = quotes >= 3;
        if (ch == '"') lex = multi ? Lex::multi_basic : Lex::basic;
        if (ch == '\'') lex = multi ? Lex::multi_literal : Lex::literal;
        i += multi ? 3 : 1;
        continue;
      }
      case Lex::comment:
        if (ch == '\n') {
          lex = Lex::outside;
          mode = resume;
          continue;  // the line break, outside
        }
        break;
      case Lex::basic:
      case Lex::literal:
        if (ch == '\\' && lex == Lex::basic) {
          if (non_ascii(i + 1)) return TomlHazard{i + 1, kEscape};
          if (i + 1 < text.size() && text[i + 1] != '\n') {
            i += 2;
            continue;
          }
          break;
        }
        if (ch == '\n') {  // toml++ stops there
          lex = Lex::outside;
          mode = resume;
          continue;
        }
        if (ch == (lex == Lex::basic ? '"' : '\'')) {
          lex = Lex::outside;
          mode = resume;
        }
        break;
      case Lex::multi_basic:
      case Lex::multi_literal: {
        if (ch == '\\' && lex == Lex::multi_basic) {
          // An escape, or a line-ending backslash: toml++ then skips blanks and line breaks and
          // asks about the first other character.
          std::size_t next = i + 1;
          while (next < text.size() && (text[next] == ' ' || text[next] == '\t' ||
                                        text[next] == '\r' || text[next] == '\n')) {
            ++next;
          }
          if (non_ascii(next)) return TomlHazard{next, kEscape};
          i = next == i + 1 ? i + 2 : next;
          continue;
        }
        const char quote = lex == Lex::multi_basic ? '"' : '\'';
        if (ch == quote) {
          // Three quotes close the string; up to two more before them belong to it.
          const std::size_t quotes = run(i, quote);
          if (quotes >= 3) {
            lex = Lex::outside;
            mode = resume;
          }
          i += std::min<std::size_t>(quotes, 5);
          continue;
        }
        break;
      }
    }
    ++i;
  }
  return std::nullopt;
}

}  // namespace

Config default_config() {
  Config config;
  config.cache_path = MTASTS_DEFAULT_CACHE;
  return config;
}

bool config_path_is_explicit() {
  const char* path = std::getenv("MTASTS_CONFIG");
  return path != nullptr && *path != '\0';
}

std::string default_config_path() {
  if (const char* path = std::getenv("MTASTS_CONFIG"); path != nullptr && *path != '\0') {
    return path;
  }
  return MTASTS_DEFAULT_CONFIG;
}

std::expected<Config, Error> parse_config(std::string_view toml_text, std::string_view source) {
  if (const auto hazard = find_toml_hazard(toml_text)) {
    const std::string_view before = toml_text.substr(0, hazard->offset);
    const auto line = std::count(before.begin(), before.end(), '\n') + 1;
    return std::unexpected(
        Error{ErrorCategory::config, fmt::format("{}:{}: {}", source, line, hazard->what)});
  }
  toml::table table;
  try {
    table = toml::parse(toml_text, source);
  } catch (const toml::parse_error& error) {
    return std::unexpected(
        Error{ErrorCategory::config, fmt::format("{}:{}: {}", source, error.source().begin.line,
                                                 description_text(error.description()))});
  }
  for (const auto& [key, node] : table) {
    if (!kKnownKeys.contains(key.str())) {
      return std::unexpected(config_error(source, node.source(), key_text(key.str()),
                                          "unknown key (see mtasts.toml(5))"));
    }
  }

  Config config = default_config();
  constexpr std::int64_t kDay = 86400;
  std::int64_t dns_ms = config.dns_timeout.count();
  std::int64_t fetch_ms = config.fetch_timeout.count();
  std::int64_t lookup_ms = config.lookup_timeout.count();
  const std::optional<Error> errors[] = {
      read_string(table, source, "cache", config.cache_path),
      read_resolvers(table, source, config.resolvers),
      read_string(table, source, "trust_anchor", config.trust_anchor_file),
      read_string(table, source, "ca_file", config.ca_file),
      read_integer(table, source, "https_port", 1, 65535, config.https_port),
      read_integer(table, source, "dns_timeout_ms", 100, 60'000, dns_ms),
      read_integer(table, source, "fetch_timeout_ms", 100, 300'000, fetch_ms),
      read_integer(table, source, "lookup_timeout_ms", 100, 600'000, lookup_ms),
      read_integer(table, source, "max_policy_bytes", 1024, 1 << 20, config.max_policy_bytes),
      read_integer(table, source, "max_cache_bytes", std::int64_t{1} << 24, std::int64_t{1} << 40,
                   config.max_map_bytes),
      read_integer(table, source, "txt_max_ttl", 1, 365 * kDay, config.timing.txt_max_ttl),
      read_integer(table, source, "txt_min_ttl", 1, 3600, config.timing.txt_min_ttl),
      // Before the TXT TTL was honoured the id was re-checked every recheck_interval; that
      // value is now the cap on the TTL, so an old file keeps meaning no later than that.
      read_integer(table, source, "recheck_interval", 60, 365 * kDay, config.timing.txt_max_ttl),
      read_integer(table, source, "negative_ttl", 60, 30 * kDay, config.timing.negative_ttl),
      read_integer(table, source, "dns_retry", 10, kDay, config.timing.dns_retry),
      // STS-23: never retry a failed fetch sooner than five minutes.
      read_integer(table, source, "fetch_backoff_min", 300, kDay, config.timing.fetch_backoff_min),
      read_integer(table, source, "fetch_backoff_max", 300, 7 * kDay,
                   config.timing.fetch_backoff_max),
      read_choice(table, source, "log_level", {"trace", "debug", "info", "warning", "error", "off"},
                  config.log_level),
      read_choice(table, source, "log_target", {"stderr", "syslog"}, config.log_target),
      read_bool(table, source, "dane", config.dane),
      read_domains(table, source, "dane_required", config.dane_required),
      read_integer(table, source, "dane_min_ttl", 0, kDay, config.dane_timing.min_ttl),
      read_integer(table, source, "dane_max_ttl", 0, 7 * kDay, config.dane_timing.max_ttl),
  };
  for (const auto& error : errors) {
    if (error) return std::unexpected(*error);
  }
  if (auto error = read_daemon(table, source, config.daemon)) return std::unexpected(*error);
  if (auto error = read_socketmaps(table, source, config.daemon.socketmaps)) {
    return std::unexpected(*error);
  }
  if (const toml::node* node = table.get("strict")) {
    const auto* value = node->as_boolean();
    if (value == nullptr) {
      return std::unexpected(
          config_error(source, node->source(), "strict", "expected true or false"));
    }
    config.strict = value->get();
  }
  if (config.cache_path.empty()) {
    return std::unexpected(
        config_error(source, table.get("cache")->source(), "cache", "must name a file"));
  }
  if (const toml::node* old_name = table.get("recheck_interval");
      old_name != nullptr && table.get("txt_max_ttl") != nullptr) {
    return std::unexpected(config_error(
        source, old_name->source(), "recheck_interval",
        "is the old name of txt_max_ttl; keep only txt_max_ttl (see mtasts.toml(5))"));
  }
  if (config.timing.txt_min_ttl > config.timing.txt_max_ttl) {
    const toml::node* min = table.get("txt_min_ttl");
    const toml::node* where = min != nullptr ? min : table.get("txt_max_ttl");
    if (where == nullptr) where = table.get("recheck_interval");
    return std::unexpected(config_error(
        source, where->source(), "txt_min_ttl",
        fmt::format("{} is above txt_max_ttl ({})", config.timing.txt_min_ttl,
                    config.timing.txt_max_ttl)));
  }
  if (config.timing.fetch_backoff_max < config.timing.fetch_backoff_min) {
    // The defaults are in order, so the file sets at least one of the two: name its line.
    const toml::node* max = table.get("fetch_backoff_max");
    const toml::node* where = max != nullptr ? max : table.get("fetch_backoff_min");
    return std::unexpected(config_error(
        source, where->source(), "fetch_backoff_max",
        fmt::format("{} is below fetch_backoff_min ({})", config.timing.fetch_backoff_max,
                    config.timing.fetch_backoff_min)));
  }
  if (config.dane_timing.max_ttl < config.dane_timing.min_ttl) {
    const toml::node* max = table.get("dane_max_ttl");
    const toml::node* where = max != nullptr ? max : table.get("dane_min_ttl");
    return std::unexpected(
        config_error(source, where->source(), "dane_max_ttl",
                     fmt::format("{} is below dane_min_ttl ({})", config.dane_timing.max_ttl,
                                 config.dane_timing.min_ttl)));
  }
  config.dane_timing.failure_retry = config.timing.dns_retry;
  config.dns_timeout = std::chrono::milliseconds(dns_ms);
  config.fetch_timeout = std::chrono::milliseconds(fetch_ms);
  config.lookup_timeout = std::chrono::milliseconds(lookup_ms);
  return config;
}

std::expected<Config, Error> load_config(const std::string& path, bool must_exist) {
  // Plain read(2) rather than iostreams: the first iostream in a process builds the C++ locale,
  // a cost every Exim delivery process would pay before its first cached answer.
  constexpr std::size_t kMaxConfigBytes = 1 << 20;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (!must_exist && errno == ENOENT) return default_config();
    return std::unexpected(
        Error{ErrorCategory::config,
              fmt::format("cannot read config file {}: {}", path, std::strerror(errno))});
  }
  std::string text;
  char buffer[8192];
  int read_errno = 0;
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) read_errno = errno;
    if (got <= 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
    if (text.size() > kMaxConfigBytes) break;
  }
  ::close(fd);
  if (read_errno != 0) {
    return std::unexpected(
        Error{ErrorCategory::config,
              fmt::format("cannot read config file {}: {}", path, std::strerror(read_errno))});
  }
  if (text.size() > kMaxConfigBytes) {
    return std::unexpected(
        Error{ErrorCategory::config, fmt::format("{}: larger than 1 MiB, refusing it", path)});
  }
  return parse_config(text, path);
}

std::expected<ListenAddress, Error> parse_listen_address(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return std::unexpected(
        Error{ErrorCategory::config, fmt::format("listen address {}: {}", quote_input(text), why)});
  };
  // inet_pton reads up to a NUL: "127.0.0.1\0junk" must not pass as 127.0.0.1.
  if (text.find('\0') != std::string_view::npos) return bad("contains a NUL character");
  std::string host;
  std::string_view port;
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (!rest.starts_with(':')) return bad("expected ':PORT' after ']'");
    port = rest.substr(1);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("expected ADDR:PORT or [V6]:PORT");
    host = std::string(text.substr(0, colon));
    if (host.find(':') != std::string::npos) return bad("write IPv6 addresses as [V6]:PORT");
    port = text.substr(colon + 1);
  }
  unsigned char buffer[sizeof(in6_addr)];
  const bool v6 = text.starts_with('[');
  if (inet_pton(v6 ? AF_INET6 : AF_INET, host.c_str(), buffer) != 1) {
    return bad(v6 ? "expected an IPv6 address inside [...]" : "expected an IPv4 address");
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos) {
    return bad("port must be 1-65535");
  }
  const int number = std::stoi(std::string(port));
  if (number < 1 || number > 65535) return bad("port must be 1-65535");
  return ListenAddress{host, static_cast<std::uint16_t>(number)};
}

std::expected<std::string, Error> parse_resolver_address(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return std::unexpected(
        Error{ErrorCategory::config, fmt::format("resolver {}: {}", quote_input(text), why)});
  };
  if (text.find('\0') != std::string_view::npos) return bad("contains a NUL character");
  std::string host;
  std::string port = "53";
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']'");
    host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (!rest.starts_with(':')) return bad("expected ':PORT' after ']'");
      port = std::string(rest.substr(1));
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    auto colon = text.find(':');
    host = std::string(text.substr(0, colon));
    port = std::string(text.substr(colon + 1));
  } else {
    host = std::string(text);
  }
  unsigned char buffer[sizeof(in6_addr)];
  if (inet_pton(AF_INET, host.c_str(), buffer) != 1 &&
      inet_pton(AF_INET6, host.c_str(), buffer) != 1) {
    return bad("expected an IPv4 or IPv6 address, optionally with :PORT ([v6]:PORT)");
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) < 1 ||
      std::stoi(port) > 65535) {
    return bad("port must be 1-65535");
  }
  return host + "@" + port;
}

}  // namespace mtasts
