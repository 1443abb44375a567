#include "daemon/daemon.hpp"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <exception>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "daemon/privileges.hpp"
#include "daemon/sessions.hpp"
#include "daemon/systemd.hpp"
#include "service/logging.hpp"

namespace mtasts::daemon {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kLogName = "mtastsd";

// The cache behind a write-behind queue: a commit's sync never blocks the event loop.
std::expected<std::shared_ptr<store::SharedStore>, Error> open_store(
    Wiring& wiring, const Config& config, std::shared_ptr<spdlog::logger> logger) {
  return wiring.open_shared_store(config, [logger = std::move(logger)](const std::string& failure) {
    logger->error("{}", failure);
  });
}

void log_notices(store::SharedStore& store, spdlog::logger& logger) {
  for (const std::string& notice : store.take_notices()) logger.warn("{}", notice);
}

// Logs an exception that ended a detached coroutine (none is expected).
auto log_exception(std::shared_ptr<spdlog::logger> logger, std::string what) {
  return [logger = std::move(logger), what = std::move(what)](std::exception_ptr error) {
    if (error) logger->error("{}: internal error: {}", what, exception_text(error));
  };
}

template <class Acceptor>
asio::awaitable<void> accept_loop(Acceptor& acceptor, Protocol protocol, std::string description,
                                  State& state) {
  for (;;) {
    while (state.connections.size() >= state.config->daemon.max_connections && !state.stopping) {
      co_await state.connections.counter().wait_change(Clock::now() + std::chrono::seconds(1));
    }
    if (state.stopping) co_return;
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (state.stopping || ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      // EMFILE and friends: say so, breathe, go on.
      state.logger->error("{}: accept: {}", description, ec.message());
      asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    const auto executor = acceptor.get_executor();
    if (protocol == Protocol::exim) {
      asio::co_spawn(executor, serve_exim(std::move(socket), state),
                     log_exception(state.logger, "exim session"));
    } else {
      asio::co_spawn(executor, serve_socketmap(std::move(socket), state),
                     log_exception(state.logger, "socketmap session"));
    }
  }
}

}  // namespace

Daemon::Daemon(std::string config_path, Config config, std::shared_ptr<spdlog::logger> logger,
               Wiring& wiring)
    : config_path_(std::move(config_path)),
      state_(io_.get_executor()),
      lookups_(std::make_shared<Counter>(io_.get_executor())),
      wiring_(wiring),
      activity_(std::make_shared<Activity>()),
      start_time_(std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
                      .count()) {
  state_.config = std::make_shared<const Config>(std::move(config));
  state_.logger = std::move(logger);
}

std::string Daemon::render_metrics() const {
  Gauges gauges;
  gauges.open_connections = state_.connections.size();
  gauges.background_lookups = lookups_->value();
  gauges.start_time = start_time_;
  if (refresher_) refresher_->fill(gauges);
  std::string text = activity_->metrics.render(gauges);
  if (state_.backend) text += state_.backend->fleet_metrics();
  if (tlsrpt_) text += tlsrpt_->metrics();
  return text;
}

Daemon::~Daemon() {
  // Backends (and their lookups) may outlive the refresher and the exporter by a moment.
  activity_->listen({});
}

void Daemon::spawn_accept_loop(Listener& listener) {
  auto done = log_exception(state_.logger, listener.description);
  if (listener.unix_acceptor) {
    asio::co_spawn(
        io_, accept_loop(*listener.unix_acceptor, listener.protocol, listener.description, state_),
        std::move(done));
  } else {
    asio::co_spawn(
        io_, accept_loop(*listener.tcp_acceptor, listener.protocol, listener.description, state_),
        std::move(done));
  }
}

int Daemon::run() {
  // Both valid until io_.run(): a reload replaces them.
  spdlog::logger& log = *state_.logger;
  const Config& config = *state_.config;
  // A client that goes away mid-answer must not kill the daemon.
  ::signal(SIGPIPE, SIG_IGN);

  const std::vector<InheritedSocket> inherited = inherited_sockets();
  auto listeners = open_listeners(io_, config.daemon, inherited);
  if (!listeners) {
    log.critical("{}", listeners.error());
    return kExitOsError;
  }
  listeners_ = std::move(*listeners);
  // However run() ends from here on, the socket files it created go (a failed start must not
  // leave a dead socket behind for the MTA to connect to); those systemd passed stay.
  struct SocketCleanup {
    Daemon& daemon;
    ~SocketCleanup() { daemon.remove_created_sockets(); }
  } cleanup{*this};
  if (!config.daemon.metrics_listen.empty()) {
    auto opened = MetricsServer::open(io_, config.daemon.metrics_listen);
    if (!opened) {
      log.critical("{}", opened.error());
      return kExitOsError;
    }
    metrics_server_ = std::move(*opened);
  }

  if (config.tlsrpt.enabled) {
    auto bound = TlsrptRunner::bind(io_, config, wiring_);
    if (!bound) {
      log.critical("{}", bound.error());
      return kExitOsError;
    }
    tlsrpt_ = std::move(*bound);
  }

  if (!config.daemon.user.empty()) {
    if (auto dropped = drop_privileges(config.daemon.user, config.daemon.group); !dropped) {
      log.critical("{}", dropped.error());
      return kExitOsError;
    }
  }

  auto store = open_store(wiring_, config, state_.logger);
  if (!store) {
    log.critical("cache {}: {}", config.cache_path, store.error().reason);
    return kExitCache;
  }
  log_notices(**store, log);
  auto shared = wiring_.shared_cache(io_.get_executor(), config, state_.logger);
  if (!shared) {
    log.critical("{}", shared.error().reason);
    return kExitConfig;
  }
  if (*shared)
    log.info("shared cache: {} (the fleet tier, docs/fleet.md)", config.shared_cache.url);
  state_.backend =
      std::make_shared<Backend>(io_.get_executor(), config, std::move(*store), std::move(*shared),
                                wiring_, state_.logger, lookups_, activity_);
  if (tlsrpt_) {
    if (auto started = tlsrpt_->start(state_.logger); !started) {
      log.critical("{}", started.error());
      return kExitCache;
    }
    state_.tlsrpt = tlsrpt_.get();
  }
  worker_ = std::make_unique<Worker>();
  refresher_ =
      std::make_unique<Refresher>(io_.get_executor(), state_, *worker_, lookups_, *activity_);
  exporter_ = std::make_unique<CdbExporter>(io_.get_executor(), state_, *worker_, *activity_);
  activity_->listen(Activity::Listeners{
      [refresher = refresher_.get()](const std::string& domain) { refresher->used(domain); },
      [refresher = refresher_.get()](const std::string& domain, const CacheEntry& entry) {
        refresher->learn(domain, entry);
      },
      [exporter = exporter_.get()] { exporter->changed(); }});
  refresher_->start();
  exporter_->start();
  if (metrics_server_) {
    metrics_server_->start([this] { return render_metrics(); },
                           [this](const std::string& error) { state_.logger->error("{}", error); });
    log.info("serving metrics on {}/metrics", metrics_server_->description());
  }
  if (config.daemon.refresh) {
    const std::int64_t unused = config.daemon.refresh_timing.drop_unused_after;
    log.info("refresh: on, {} at a time, cache walked every {} s, {}",
             config.daemon.refresh_concurrency, config.daemon.refresh_scan_interval,
             unused == 0 ? std::string("unused entries kept")
                         : fmt::format("entries unused for {} s dropped", unused));
  } else {
    log.info("refresh: off (refresh = false)");
  }
  if (!config.daemon.cdb_export.empty()) {
    log.info("cdb export: {} (rewritten at most every {} s)", config.daemon.cdb_export,
             config.daemon.cdb_export_interval);
  }

  signals_ = std::make_unique<asio::signal_set>(io_, SIGTERM, SIGINT, SIGHUP);
  asio::co_spawn(io_, handle_signals(), log_exception(state_.logger, "signal handler"));
  for (Listener& listener : listeners_) {
    spawn_accept_loop(listener);
    log.info("listening on {} ({} protocol)", listener.description, to_string(listener.protocol));
  }
  log.info("ready: cache {}, {} listener(s), pid {}", config.cache_path, listeners_.size(),
           ::getpid());
  notify("READY=1\nSTATUS=serving");

  io_.run();

  if (tlsrpt_) tlsrpt_->stop();  // collected sessions are committed before the exit
  // What the write-behind queue holds is committed before the exit (also on the _Exit below).
  state_.backend->store()->flush();
  remove_created_sockets();  // now: the _Exit below skips destructors
  // Not `log`: a reload may have replaced the logger.
  state_.logger->info("stopped");
  state_.logger->flush();
  if (abandoned_) {
    // Lookups still running hold frames that reference the backend; leave without running
    // their destructors (every cache write is already committed and synced).
    std::_Exit(kExitOk);
  }
  return kExitOk;
}

void Daemon::remove_created_sockets() {
  for (Listener& listener : listeners_) {
    if (!listener.created_path.empty()) ::unlink(listener.created_path.c_str());
    listener.created_path.clear();
  }
}

asio::awaitable<void> Daemon::handle_signals() {
  for (;;) {
    auto [ec, number] = co_await signals_->async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    if (number == SIGHUP) {
      reload();
      continue;
    }
    state_.logger->info("{} received: stopping", number == SIGTERM ? "SIGTERM" : "SIGINT");
    co_await stop();
    co_return;
  }
}

asio::awaitable<void> Daemon::stop() {
  notify("STOPPING=1");
  state_.stopping = true;
  for (Listener& listener : listeners_) {
    boost::system::error_code ignored;
    if (listener.unix_acceptor) listener.unix_acceptor->close(ignored);
    if (listener.tcp_acceptor) listener.tcp_acceptor->close(ignored);
  }
  state_.connections.close_idle();
  if (refresher_) refresher_->stop();
  if (exporter_) exporter_->stop();
  if (tlsrpt_) tlsrpt_->stop();
  if (metrics_server_) metrics_server_->stop();
  const auto& settings = state_.config->daemon;
  const auto drained_by = Clock::now() + settings.shutdown_timeout;
  if (!co_await state_.connections.counter().wait_zero(drained_by)) {
    state_.logger->warn("{} connection(s) still busy after {} ms; closing them",
                        state_.connections.size(), settings.shutdown_timeout.count());
    state_.connections.close_all();
  }
  // Lookups a client gave up on finish in the background (their results are cached); each is
  // bounded by its DNS and fetch deadlines.
  const auto lookups_by = Clock::now() + state_.config->lookup_timeout + std::chrono::seconds(5);
  if (!co_await lookups_->wait_zero(lookups_by)) {
    state_.logger->warn("{} lookup(s) still running; leaving them", lookups_->value());
    abandoned_ = true;
    io_.stop();
  }
  // The shared cache's client reconnects for ever: stopped last, once no lookup needs it.
  if (state_.backend) state_.backend->service().stop_shared_cache();
  boost::system::error_code ignored;
  signals_->cancel(ignored);
}

void Daemon::reload() {
  notify("RELOADING=1");
  auto loaded = load_config(config_path_, true);
  if (!loaded) {
    state_.logger->error("reload: {}; keeping the running configuration", loaded.error().reason);
    notify("READY=1");
    return;
  }
  auto next = std::make_shared<const Config>(std::move(*loaded));
  const Config& current = *state_.config;
  std::shared_ptr<spdlog::logger> logger = state_.logger;
  if (next->log_level != current.log_level || next->log_target != current.log_target) {
    logger = make_logger(kLogName, next->log_target, next->log_level);
  }
  std::shared_ptr<store::SharedStore> store = state_.backend->store();
  if (next->cache_path != current.cache_path || next->max_map_bytes != current.max_map_bytes) {
    // One LMDB environment per file per process (style §2.7): a new one only for a new file.
    if (next->cache_path == current.cache_path) {
      logger->warn("reload: max_cache_bytes takes effect at the next start");
    } else {
      auto opened = open_store(wiring_, *next, logger);
      if (!opened) {
        logger->error("reload: cache {}: {}; keeping the running configuration", next->cache_path,
                      opened.error().reason);
        notify("READY=1");
        return;
      }
      store = std::move(*opened);
      log_notices(*store, *logger);
    }
  }
  if (next->tlsrpt != current.tlsrpt) {
    logger->warn("reload: [tlsrpt] settings take effect at the next start");
  }
  if (listener_settings_differ(current.daemon, next->daemon)) {
    logger->warn(
        "reload: socket, listener, ownership and user settings take effect at the next "
        "start");
  }
  auto shared = wiring_.shared_cache(io_.get_executor(), *next, logger);
  if (!shared) {
    logger->error("reload: {}; keeping the running configuration", shared.error().reason);
    notify("READY=1");
    return;
  }
  state_.backend =
      std::make_shared<Backend>(io_.get_executor(), *next, std::move(store), std::move(*shared),
                                wiring_, logger, lookups_, activity_);
  state_.logger = std::move(logger);
  state_.config = std::move(next);
  state_.logger->info("reloaded {}", config_path_);
  notify("READY=1\nSTATUS=serving");
}

}  // namespace mtasts::daemon
