// parse_config(): the top-level keys over default_config(), the daemon's tables
// (service/config_daemon.cpp) included.
#include "service/config.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "core/domain.hpp"
#include "core/text_quote.hpp"
#include "service/config_daemon.hpp"
#include "service/config_fleet.hpp"
#include "service/config_tlsrpt.hpp"
#include "service/toml_hazard.hpp"
#include "service/toml_reading.hpp"

namespace mtasts {
namespace {

using detail::config_error;
using detail::description_text;
using detail::find_toml_hazard;
using detail::key_text;
using detail::read_bool;
using detail::read_choice;
using detail::read_daemon;
using detail::read_integer;
using detail::read_socketmaps;
using detail::read_string;

std::optional<Error> read_resolvers(const toml::table& table, std::string_view source,
                                    std::vector<std::string>& out) {
  const toml::node* node = table.get("resolver");
  if (node == nullptr) return std::nullopt;
  std::vector<std::string> texts;
  if (auto error = detail::read_string_list(table, source, "resolver", texts)) return error;
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
    "tlsrpt",
    "shared_cache",
    "shared_cache_password_file",
    "shared_cache_user",
    "shared_cache_ca_file",
    "shared_cache_prefix",
    "shared_cache_timeout_ms",
};

}  // namespace

Config default_config() {
  Config config;
  config.cache_path = MTASTS_DEFAULT_CACHE;
  return config;
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
  if (auto error = detail::read_tlsrpt(table, source, config.tlsrpt)) {
    return std::unexpected(*error);
  }
  if (auto error = detail::read_shared_cache(table, source, config.shared_cache)) {
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
    return std::unexpected(
        config_error(source, old_name->source(), "recheck_interval",
                     "is the old name of txt_max_ttl; keep only txt_max_ttl (see mtasts.toml(5))"));
  }
  if (config.timing.txt_min_ttl > config.timing.txt_max_ttl) {
    const toml::node* min = table.get("txt_min_ttl");
    const toml::node* where = min != nullptr ? min : table.get("txt_max_ttl");
    if (where == nullptr) where = table.get("recheck_interval");
    return std::unexpected(
        config_error(source, where->source(), "txt_min_ttl",
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

std::string tlsrpt_store_path(const Config& config) {
  if (!config.tlsrpt.store.empty()) return config.tlsrpt.store;
  const auto slash = config.cache_path.rfind('/');
  if (slash == std::string::npos) return "tlsrpt.mdb";
  return config.cache_path.substr(0, slash + 1) + "tlsrpt.mdb";
}

}  // namespace mtasts
