// The [tlsrpt] table of the config file, read into TlsrptConfig; internal to parse_config
// (service/config.cpp).
#pragma once

#include <optional>
#include <string_view>

#include <toml++/toml.h>

#include "core/error.hpp"
#include "service/config.hpp"

namespace mtasts::detail {

// [tlsrpt]; absent: `tlsrpt` keeps its values (disabled).
std::optional<Error> read_tlsrpt(const toml::table& root, std::string_view source,
                                 TlsrptConfig& tlsrpt);

}  // namespace mtasts::detail
