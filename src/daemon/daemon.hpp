// mtastsd: one event loop serving the Exim readsocket protocol and the Postfix socketmap
// protocol (design §1, §2.1, §2.3) from the shared engine. Startup order: listeners (as root if
// need be), drop privileges, open the cache, build the backend, READY=1. Signals: SIGTERM and
// SIGINT stop gracefully (stop accepting, close idle connections, let busy ones finish within
// shutdown_timeout_ms, then close the rest); SIGHUP reloads the config file (an invalid file is
// logged and the running configuration kept).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "daemon/listeners.hpp"
#include "daemon/state.hpp"
#include "service/config.hpp"

namespace mtasts::daemon {

// Exit statuses (sysexits.h, as the CLI uses them).
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;
inline constexpr int kExitSoftware = 70;
inline constexpr int kExitOsError = 71;
inline constexpr int kExitCache = 74;
inline constexpr int kExitConfig = 78;

class Daemon {
 public:
  Daemon(std::string config_path, Config config, std::shared_ptr<spdlog::logger> logger);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Binds, drops privileges, serves until stopped. Returns the exit status.
  int run();

 private:
  asio::awaitable<void> handle_signals();
  asio::awaitable<void> stop();
  void reload();
  void spawn_accept_loop(Listener& listener);

  // Declared first so it is destroyed last: everything below holds I/O objects on it.
  asio::io_context io_{1};
  std::string config_path_;
  State state_;
  std::shared_ptr<Counter> lookups_;
  std::vector<Listener> listeners_;
  std::unique_ptr<asio::signal_set> signals_;
  bool abandoned_ = false;  // stop gave up on lookups that did not finish
};

}  // namespace mtasts::daemon
