// The daemon's tables of the config file, [daemon] and [socketmap.NAME], read into DaemonConfig;
// internal to parse_config (service/config.cpp).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <toml++/toml.h>

#include "core/error.hpp"
#include "service/config.hpp"

namespace mtasts::detail {

// [daemon]; absent: `daemon` keeps its values.
std::optional<Error> read_daemon(const toml::table& root, std::string_view source,
                                 DaemonConfig& daemon);

// [socketmap.NAME] tables; NAME is what Postfix sends as the first word of each request. None
// (or a bare [socketmap]): `out` keeps its values.
std::optional<Error> read_socketmaps(const toml::table& root, std::string_view source,
                                     std::map<std::string, SocketmapMapOptions>& out);

}  // namespace mtasts::detail
