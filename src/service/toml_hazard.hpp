// A pre-scan that refuses the bytes toml++ 3.3 would meet with undefined behaviour; internal to
// parse_config (service/config.cpp).
//
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
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace mtasts::detail {

// Where the scan stopped and why, as the config error says it.
struct TomlHazard {
  std::size_t offset = 0;
  std::string_view what;
};

// The first byte of `text` that must not reach toml++, or nullopt when there is none.
[[nodiscard]] std::optional<TomlHazard> find_toml_hazard(std::string_view text);

}  // namespace mtasts::detail
