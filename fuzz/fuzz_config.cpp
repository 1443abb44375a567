// Fuzzes the config loader (service/config.cpp, docs/configuration.md): parse_config on any text
// returns a Config whose every value lies within its documented bounds, or a config Error whose
// one-line reason starts "fuzz.toml:LINE: " with LINE a line of the input. An exception escaping
// toml++ or the checks, a crash, UB or a hang is a bug.
#include <algorithm>
#include <charconv>
#include <set>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "service/config.hpp"

using namespace mtasts;

namespace {

constexpr std::string_view kSource = "fuzz.toml";

// Every accepted string ends up in a C API (open, bind, getpwnam, inet_pton, libunbound), which
// would silently cut it at a NUL.
bool no_nul(std::string_view text) {
  return text.find('\0') == std::string_view::npos;
}

bool socket_path_ok(const std::string& path) {
  return no_nul(path) && (path.empty() || (path.starts_with('/') && path.size() <= 107));
}

bool listen_ok(const std::string& text) {
  return no_nul(text) && parse_listen_address(text);
}

template <class T>
bool within(T value, std::int64_t low, std::int64_t high) {
  return static_cast<std::int64_t>(value) >= low && static_cast<std::int64_t>(value) <= high;
}

void check_error(std::string_view input, const Error& error) {
  FUZZ_CHECK(error.category == ErrorCategory::config);
  FUZZ_CHECK(fuzz::one_line(error.reason));
  // "fuzz.toml:LINE: reason", LINE within the input (the loader's promise: file, line, reason).
  std::string_view rest = error.reason;
  FUZZ_CHECK(rest.starts_with(kSource) && rest.substr(kSource.size()).starts_with(':'));
  rest.remove_prefix(kSource.size() + 1);
  std::size_t line = 0;
  const auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), line);
  FUZZ_CHECK(ec == std::errc{});
  const auto lines = static_cast<std::size_t>(std::count(input.begin(), input.end(), '\n')) + 1;
  FUZZ_CHECK(line >= 1 && line <= lines);
  rest.remove_prefix(static_cast<std::size_t>(end - rest.data()));
  FUZZ_CHECK(rest.starts_with(": ") && rest.size() > 2);
}

void check_config(const Config& config) {
  constexpr std::int64_t kDay = 86400;
  FUZZ_CHECK(!config.cache_path.empty() && no_nul(config.cache_path));
  for (const std::string& resolver : config.resolvers) {
    FUZZ_CHECK(no_nul(resolver) && parse_resolver_address(resolver));
  }
  FUZZ_CHECK(no_nul(config.trust_anchor_file) && no_nul(config.ca_file));
  FUZZ_CHECK(config.https_port >= 1);
  FUZZ_CHECK(within(config.dns_timeout.count(), 100, 60'000));
  FUZZ_CHECK(within(config.fetch_timeout.count(), 100, 300'000));
  FUZZ_CHECK(within(config.lookup_timeout.count(), 100, 600'000));
  FUZZ_CHECK(within(config.max_policy_bytes, 1024, 1 << 20));
  FUZZ_CHECK(within(config.max_map_bytes, std::int64_t{1} << 24, std::int64_t{1} << 40));
  const Timing& timing = config.timing;
  FUZZ_CHECK(within(timing.txt_max_ttl, 1, 365 * kDay));
  FUZZ_CHECK(within(timing.txt_min_ttl, 1, timing.txt_max_ttl));
  FUZZ_CHECK(within(timing.negative_ttl, 60, 30 * kDay));
  FUZZ_CHECK(within(timing.dns_retry, 10, kDay));
  // STS-23: never retry a failed fetch sooner than five minutes.
  FUZZ_CHECK(within(timing.fetch_backoff_min, 300, kDay));
  FUZZ_CHECK(within(timing.fetch_backoff_max, timing.fetch_backoff_min, 7 * kDay));
  static const std::set<std::string, std::less<>> kLevels = {"trace",   "debug", "info",
                                                             "warning", "error", "off"};
  FUZZ_CHECK(kLevels.contains(config.log_level));
  FUZZ_CHECK(config.log_target == "stderr" || config.log_target == "syslog");

  const DaemonConfig& d = config.daemon;
  FUZZ_CHECK(socket_path_ok(d.exim_socket) && socket_path_ok(d.socketmap_socket));
  FUZZ_CHECK(std::ranges::all_of(d.exim_listen, listen_ok));
  FUZZ_CHECK(std::ranges::all_of(d.socketmap_listen, listen_ok));
  FUZZ_CHECK(no_nul(d.socket_owner) && no_nul(d.socket_group));
  FUZZ_CHECK(no_nul(d.user) && no_nul(d.group));
  FUZZ_CHECK(d.socket_mode <= 0777);
  FUZZ_CHECK(within(d.read_timeout.count(), 100, 600'000));
  FUZZ_CHECK(within(d.write_timeout.count(), 100, 600'000));
  FUZZ_CHECK(within(d.idle_timeout.count(), 100, 3'600'000));
  FUZZ_CHECK(within(d.shutdown_timeout.count(), 0, 600'000));
  FUZZ_CHECK(within(d.max_request_line, 64, 65536));
  FUZZ_CHECK(within(d.max_netstring, 64, 65536));
  FUZZ_CHECK(within(d.max_connections, 1, 1'000'000));
  FUZZ_CHECK(within(d.refresh_concurrency, 1, 1024));
  FUZZ_CHECK(within(d.refresh_scan_interval, 1, kDay));
  FUZZ_CHECK(within(d.refresh_timing.ahead, 0, kDay));
  FUZZ_CHECK(within(d.refresh_timing.retry_max, 10, kDay));
  FUZZ_CHECK(within(d.refresh_timing.ttl_window, 0, 3650 * kDay));
  FUZZ_CHECK(d.refresh_timing.drop_unused_after == 0 ||
             within(d.refresh_timing.drop_unused_after, 60, 3650 * kDay));
  FUZZ_CHECK(no_nul(d.cdb_export));
  FUZZ_CHECK(d.cdb_export.empty() ||
             (d.cdb_export.starts_with('/') && !d.cdb_export.ends_with('/')));
  FUZZ_CHECK(within(d.cdb_export_interval, 1, 3600));
  FUZZ_CHECK(d.metrics_listen.empty() || listen_ok(d.metrics_listen));
  // Postfix names the map in each request: a non-empty word of [A-Za-z0-9._-].
  FUZZ_CHECK(!d.socketmaps.empty());
  for (const auto& [name, options] : d.socketmaps) {
    FUZZ_CHECK(!name.empty() && name.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                                       "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") ==
                                    std::string::npos);
    FUZZ_CHECK(!options.report_testing || options.tlsrpt);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input = fuzz::as_text(data, size);
  // No try: an exception escaping parse_config reaches std::terminate, which libFuzzer reports.
  const auto config = parse_config(input, kSource);
  if (!config) {
    check_error(input, config.error());
    return 0;
  }
  check_config(*config);
  // The same text gives the same settings (a reload of an unchanged file changes nothing).
  const auto again = parse_config(input, kSource);
  FUZZ_CHECK(again && again->daemon == config->daemon && again->cache_path == config->cache_path &&
             again->resolvers == config->resolvers && again->log_level == config->log_level);
  return 0;
}
