// Loggers for the front-ends: stderr for the CLI, syslog (mail facility) for the Exim module and
// the daemon. Untrusted text is quoted by the caller (core/text_quote.hpp) before it gets here.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

namespace mtasts {

// target: "stderr" or "syslog"; level: trace|debug|info|warning|error|off. Unknown values fall
// back to stderr / info (config validation rejects them earlier).
[[nodiscard]] std::shared_ptr<spdlog::logger> make_logger(std::string_view name,
                                                          std::string_view target,
                                                          std::string_view level);

}  // namespace mtasts
