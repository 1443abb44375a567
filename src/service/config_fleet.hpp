// The shared_cache keys of the config file (the fleet's Redis, design §8), read into
// SharedCacheConfig; internal to parse_config (service/config.cpp).
#pragma once

#include <optional>
#include <string_view>

#include <toml++/toml.h>

#include "core/error.hpp"
#include "service/config.hpp"

namespace mtasts::detail {

// shared_cache and shared_cache_*; absent: `shared` keeps its values (no shared cache). The URL
// is checked here, so a typo fails `mtasts config check` and the daemon's start, not a lookup.
std::optional<Error> read_shared_cache(const toml::table& root, std::string_view source,
                                       SharedCacheConfig& shared);

}  // namespace mtasts::detail
