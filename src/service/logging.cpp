#include "service/logging.hpp"

#include <syslog.h>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

namespace mtasts {

std::shared_ptr<spdlog::logger> make_logger(std::string_view name, std::string_view target,
                                            std::string_view level) {
  spdlog::sink_ptr sink;
  if (target == "syslog") {
    sink = std::make_shared<spdlog::sinks::syslog_sink_mt>(std::string(name), LOG_PID, LOG_MAIL,
                                                           false);
  } else {
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  }
  auto logger = std::make_shared<spdlog::logger>(std::string(name), std::move(sink));
  logger->set_pattern(target == "syslog" ? "%v" : "%n: %l: %v");
  auto parsed = spdlog::level::from_str(std::string(level == "warning" ? "warn" : level));
  logger->set_level(parsed);
  return logger;
}

}  // namespace mtasts
