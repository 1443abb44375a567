// mtastsd: one event loop serving the Exim readsocket protocol and the Postfix socketmap
// protocol (design §1, §2.1, §2.3) from the shared engine. Startup order: listeners (as root if
// need be), drop privileges, open the cache, build the backend, READY=1. Signals: SIGTERM and
// SIGINT stop gracefully (stop accepting, close idle connections, let busy ones finish within
// shutdown_timeout_ms, then close the rest); SIGHUP reloads the config file (an invalid file is
// logged and the running configuration kept). Beside the sessions run the proactive refresh
// (refresher.hpp), the cdb export (cdb_export.hpp) and the metrics endpoint (metrics_server.hpp).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include "daemon/activity.hpp"
#include "daemon/cdb_export.hpp"
#include "daemon/listeners.hpp"
#include "daemon/metrics_server.hpp"
#include "daemon/refresher.hpp"
#include "daemon/state.hpp"
#include "daemon/tlsrpt_runner.hpp"
#include "daemon/worker.hpp"
#include "service/config.hpp"
#include "service/wiring.hpp"

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
  // `wiring` builds the store, resolver and fetcher (tests pass fakes); it must outlive this.
  Daemon(std::string config_path, Config config, std::shared_ptr<spdlog::logger> logger,
         Wiring& wiring = system_wiring());
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Binds, drops privileges, serves until stopped. Returns the exit status.
  int run();

 private:
  asio::awaitable<void> handle_signals();
  asio::awaitable<void> stop();
  void reload();
  void remove_created_sockets();
  void spawn_accept_loop(Listener& listener);
  [[nodiscard]] std::string render_metrics() const;

  // Declared first so it is destroyed last: everything below holds I/O objects on it.
  asio::io_context io_{1};
  std::string config_path_;
  State state_;
  std::shared_ptr<Counter> lookups_;  // background lookups and refreshes
  Wiring& wiring_;
  std::shared_ptr<Activity> activity_;
  std::vector<Listener> listeners_;
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<Worker> worker_;  // before its users, so it is joined after them
  std::unique_ptr<Refresher> refresher_;
  std::unique_ptr<CdbExporter> exporter_;
  std::unique_ptr<TlsrptRunner> tlsrpt_;  // [tlsrpt] enabled
  std::unique_ptr<asio::signal_set> signals_;
  double start_time_ = 0;
  bool abandoned_ = false;  // stop gave up on lookups that did not finish
};

}  // namespace mtasts::daemon
