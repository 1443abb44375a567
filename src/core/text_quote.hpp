// Quoting untrusted input inside error messages: cut to a bound, control and non-ASCII bytes
// escaped, so a hostile record can neither flood nor forge a log line.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mtasts {

// Returns `input` in double quotes, at most `max_bytes` of it, "\n" / "\xNN" escapes for
// control and non-ASCII bytes ("\"" and "\\" for quote and backslash), and "..." after the
// closing quote when cut.
[[nodiscard]] std::string quote_input(std::string_view input, std::size_t max_bytes = 100);

}  // namespace mtasts
