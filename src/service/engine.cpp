#include "service/engine.hpp"

#include <chrono>
#include <exception>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "adapters/dns/unbound_resolver.hpp"
#include "adapters/https/beast_policy_fetcher.hpp"
#include "adapters/store/lmdb_store.hpp"
#include "service/cached_answers.hpp"
#include "service/wiring.hpp"

namespace mtasts {

UnixTime system_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ServiceOptions service_options(const Config& config) {
  ServiceOptions options;
  options.timing = config.timing;
  options.strict = config.strict;
  options.lookup_timeout = config.lookup_timeout;
  options.dane = config.dane && !config.trust_anchor_file.empty();
  options.dane_required = config.dane_required;
  options.dane_timing = config.dane_timing;
  return options;
}

namespace {

// An io_context whose queued work can be dropped before the objects that work refers to.
class NetworkIo : public asio::io_context {
 public:
  using asio::io_context::io_context;
  // Destroys every handler still pending, such as the coroutine frames of a lookup abandoned at
  // its deadline. Their destructors touch the PolicyService (its in-flight table), so this has
  // to happen while the service still exists; the io_context itself is destroyed last.
  void drop_pending_work() { shutdown(); }
};

}  // namespace

// The parts a cache hit never needs: built on the first miss, dropped after a timed-out lookup
// (which abandons its half-done work with it).
struct Engine::Network {
  Network(const Config& config, store::PolicyStore& store, std::shared_ptr<spdlog::logger> logger)
      : resolver(io.get_executor(), resolver_options(config, Concurrency::one_lookup)),
        fetcher(resolver, fetcher_options(config)),
        service(io.get_executor(), store, resolver, fetcher, system_now, service_options(config),
                std::move(logger)) {}

  ~Network() { io.drop_pending_work(); }
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  NetworkIo io{1};
  dns::UnboundResolver resolver;
  https::BeastPolicyFetcher fetcher;
  PolicyService service;
};

std::expected<std::unique_ptr<Engine>, Error> Engine::open(Config config,
                                                           std::shared_ptr<spdlog::logger> logger) {
  store::LmdbStore::Options options;
  options.max_map_size = config.max_map_bytes;
  // Most calls are cache hits that only read; the first write reopens the file read-write.
  options.read_only_until_write = true;
  auto store = store::LmdbStore::open(config.cache_path, options);
  if (!store) return std::unexpected(store.error());
  for (const std::string& notice : (*store)->take_notices()) logger->warn("{}", notice);
  return std::unique_ptr<Engine>(
      new Engine(std::move(config), std::move(logger), std::move(*store)));
}

Engine::Engine(Config config, std::shared_ptr<spdlog::logger> logger,
               std::unique_ptr<store::PolicyStore> store)
    : config_(std::move(config)),
      options_(service_options(config_)),
      logger_(std::move(logger)),
      store_(std::move(store)) {}

Engine::~Engine() = default;

store::PolicyStore& Engine::store() {
  return *store_;
}
const Config& Engine::config() const {
  return config_;
}

Engine::Network& Engine::network() {
  if (!network_) network_ = std::make_unique<Network>(config_, *store_, logger_);
  return *network_;
}

std::optional<LookupResult> Engine::cached(const std::string& domain) {
  // The CLI and the module re-check a stale entry inline (no background to do it in).
  auto hit = answer_from_cache(*store_, domain, system_now(), options_, false, *logger_);
  if (!hit) return std::nullopt;
  return std::move(hit->result);
}

LookupResult Engine::lookup(const std::string& domain) {
  if (auto hit = cached(domain)) return std::move(*hit);
  return run(domain, false);
}

LookupResult Engine::refresh(const std::string& domain) {
  return run(domain, true);
}

LookupResult Engine::run(const std::string& domain, bool force) {
  Network& net = network();
  std::optional<LookupResult> result;
  std::string failure;
  asio::co_spawn(
      net.io,
      [&]() -> asio::awaitable<void> {
        // Two statements, not a conditional expression: g++ 12 destroys the temporary
        // awaitable of `co_await (c ? a() : b())` twice.
        if (force) {
          result = co_await net.service.refresh(domain);
        } else {
          result = co_await net.service.lookup(domain);
        }
      },
      [&](std::exception_ptr error) {
        if (!error) return;
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          failure = e.what();
        }
      });
  net.io.restart();
  net.io.run_for(config_.lookup_timeout);
  if (result) return std::move(*result);

  // Timed out or failed: abandon the half-done lookup and answer from what is cached, exactly
  // as the decision would for a temporary failure (never a silent downgrade of a valid policy).
  if (failure.empty()) {
    failure = fmt::format("lookup did not finish within {} ms", config_.lookup_timeout.count());
  }
  network_.reset();
  return answer_after_failure(*store_, domain, failure, system_now(), options_, *logger_);
}

}  // namespace mtasts
