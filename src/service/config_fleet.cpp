#include "service/config_fleet.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "adapters/redis/redis_target.hpp"
#include "service/toml_reading.hpp"

namespace mtasts::detail {
namespace {

// Key prefixes share a Redis with other programs: printable ASCII without spaces, short.
bool is_prefix(std::string_view prefix) {
  return !prefix.empty() && prefix.size() <= 64 &&
         std::all_of(prefix.begin(), prefix.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

}  // namespace

std::optional<Error> read_shared_cache(const toml::table& root, std::string_view source,
                                       SharedCacheConfig& shared) {
  std::int64_t timeout_ms = shared.timeout.count();
  const std::optional<Error> errors[] = {
      read_string(root, source, "shared_cache", shared.url),
      read_string(root, source, "shared_cache_password_file", shared.password_file),
      read_string(root, source, "shared_cache_user", shared.user),
      read_string(root, source, "shared_cache_ca_file", shared.ca_file),
      read_string(root, source, "shared_cache_prefix", shared.prefix),
      read_integer(root, source, "shared_cache_timeout_ms", 1, 10'000, timeout_ms),
  };
  for (const auto& error : errors) {
    if (error) return error;
  }
  shared.timeout = std::chrono::milliseconds(timeout_ms);
  if (!shared.url.empty()) {
    if (auto target = redis::parse_target(shared.url); !target) {
      return config_error(source, root.get("shared_cache")->source(), "shared_cache",
                          target.error().reason);
    }
  }
  if (const toml::node* node = root.get("shared_cache_prefix"); node && !is_prefix(shared.prefix)) {
    return config_error(source, node->source(), "shared_cache_prefix",
                        "must be 1-64 printable ASCII characters without spaces");
  }
  if (const toml::node* node = root.get("shared_cache_password_file");
      node && !shared.password_file.starts_with('/')) {
    return config_error(source, node->source(), "shared_cache_password_file",
                        "must be an absolute path");
  }
  return std::nullopt;
}

}  // namespace mtasts::detail
