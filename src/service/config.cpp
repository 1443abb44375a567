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

#include <fmt/format.h>
#include <toml++/toml.h>

#include "core/text_quote.hpp"

namespace mtasts {
namespace {

Error config_error(std::string_view source, const toml::source_region& where, std::string_view key,
                   std::string_view what) {
  return Error{ErrorCategory::config,
               fmt::format("{}:{}: {}: {}", source, where.begin.line, key, what)};
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

const std::set<std::string_view> kKnownKeys = {
    "cache",
    "resolver",
    "trust_anchor",
    "ca_file",
    "strict",
    "https_port",
    "dns_timeout_ms",
    "fetch_timeout_ms",
    "lookup_timeout_ms",
    "max_policy_bytes",
    "max_cache_bytes",
    "recheck_interval",
    "negative_ttl",
    "dns_retry",
    "fetch_backoff_min",
    "fetch_backoff_max",
    "log_level",
    "log_target",
};

}  // namespace

Config default_config() {
  Config config;
  config.cache_path = MTASTS_DEFAULT_CACHE;
  return config;
}

std::string default_config_path() {
  if (const char* path = std::getenv("MTASTS_CONFIG"); path != nullptr && *path != '\0') {
    return path;
  }
  return MTASTS_DEFAULT_CONFIG;
}

std::expected<Config, Error> parse_config(std::string_view toml_text, std::string_view source) {
  toml::table table;
  try {
    table = toml::parse(toml_text, source);
  } catch (const toml::parse_error& error) {
    return std::unexpected(
        Error{ErrorCategory::config,
              fmt::format("{}:{}: {}", source, error.source().begin.line, error.description())});
  }
  for (const auto& [key, node] : table) {
    if (!kKnownKeys.contains(key.str())) {
      return std::unexpected(
          config_error(source, node.source(), key.str(), "unknown key (see mtasts.toml(5))"));
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
      read_integer(table, source, "recheck_interval", 60, 365 * kDay,
                   config.timing.recheck_interval),
      read_integer(table, source, "negative_ttl", 60, 30 * kDay, config.timing.negative_ttl),
      read_integer(table, source, "dns_retry", 10, kDay, config.timing.dns_retry),
      // STS-23: never retry a failed fetch sooner than five minutes.
      read_integer(table, source, "fetch_backoff_min", 300, kDay, config.timing.fetch_backoff_min),
      read_integer(table, source, "fetch_backoff_max", 300, 7 * kDay,
                   config.timing.fetch_backoff_max),
      read_choice(table, source, "log_level", {"trace", "debug", "info", "warning", "error", "off"},
                  config.log_level),
      read_choice(table, source, "log_target", {"stderr", "syslog"}, config.log_target),
  };
  for (const auto& error : errors) {
    if (error) return std::unexpected(*error);
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
  if (config.timing.fetch_backoff_max < config.timing.fetch_backoff_min) {
    return std::unexpected(
        Error{ErrorCategory::config,
              fmt::format("{}: fetch_backoff_max is below fetch_backoff_min", source)});
  }
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

std::expected<std::string, Error> parse_resolver_address(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return std::unexpected(
        Error{ErrorCategory::config, fmt::format("resolver {}: {}", quote_input(text), why)});
  };
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
