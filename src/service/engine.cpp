#include "service/engine.hpp"

#include <chrono>
#include <exception>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "service/cached_answers.hpp"

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
struct Engine::Network final : AnswerEvents {
  Network(const Config& config, store::PolicyStore& store, Wiring& wiring,
          std::shared_ptr<spdlog::logger> logger)
      : service(io.get_executor(), store,
                wiring.network(io.get_executor(), config, Concurrency::one_lookup), system_now,
                AnswerOptions{service_options(config), false}, std::move(logger), *this) {}

  ~Network() override { io.drop_pending_work(); }
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  std::shared_ptr<void> background_started() override {
    ++running;
    return nullptr;
  }
  void background_finished() override { --running; }

  NetworkIo io{1};
  int running = 0;  // lookups still going on in io
  AnswerService service;
};

std::expected<std::unique_ptr<Engine>, Error> Engine::open(Config config,
                                                           std::shared_ptr<spdlog::logger> logger,
                                                           Wiring& wiring) {
  auto store = wiring.open_store(
      config, [&logger](const std::string& notice) { logger->warn("{}", notice); });
  if (!store) return std::unexpected(store.error());
  return std::unique_ptr<Engine>(
      new Engine(std::move(config), std::move(logger), std::move(*store), wiring));
}

Engine::Engine(Config config, std::shared_ptr<spdlog::logger> logger,
               std::unique_ptr<store::PolicyStore> store, Wiring& wiring)
    : config_(std::move(config)),
      options_(service_options(config_)),
      logger_(std::move(logger)),
      store_(std::move(store)),
      wiring_(wiring) {}

Engine::~Engine() = default;

store::PolicyStore& Engine::store() {
  return *store_;
}
const Config& Engine::config() const {
  return config_;
}

Engine::Network& Engine::network() {
  if (!network_) network_ = std::make_unique<Network>(config_, *store_, wiring_, logger_);
  return *network_;
}

std::optional<LookupResult> Engine::cached(const std::string& domain) {
  // The CLI and the module re-check a stale entry inline (no background to do it in).
  auto hit = answer_from_cache(*store_, domain, system_now(), options_, false, *logger_);
  if (!hit) return std::nullopt;
  return std::move(hit->result);
}

std::expected<Answered, Error> Engine::answer(std::string_view raw_domain) {
  auto asked = ask(raw_domain);
  if (!asked) return std::unexpected(std::move(asked.error()));
  if (asked->answered) return std::move(*asked->answered);
  return answer_domain(asked->domain);
}

LookupResult Engine::lookup(const std::string& domain) {
  return answer_domain(domain).result;
}

Answered Engine::answer_domain(const std::string& domain) {
  if (auto hit = cached(domain)) return Answered{std::move(*hit), AnswerPath::hit};
  return run(domain, false);
}

LookupResult Engine::refresh(const std::string& domain) {
  return run(domain, true).result;
}

Answered Engine::run(const std::string& domain, bool force) {
  Network& net = network();
  std::optional<Answered> result;
  std::string failure;
  asio::co_spawn(
      net.io,
      [&]() -> asio::awaitable<void> {
        result = co_await net.service.answer_from_network(domain, force);
      },
      [&](std::exception_ptr error) {
        if (error) failure = exception_text(error);
        net.io.stop();
      });
  net.io.restart();
  // The service answers within lookup_timeout by itself; the margin only guards against a bug.
  net.io.run_for(config_.lookup_timeout + std::chrono::seconds(1));
  // A lookup that outlasted the deadline is abandoned with its half-done work: this process
  // has no background to finish it in.
  const bool abandoned = net.running > 0;
  if (abandoned) network_.reset();
  if (result) return std::move(*result);
  if (failure.empty()) {
    failure = fmt::format("lookup did not finish within {} ms", config_.lookup_timeout.count());
  }
  if (!abandoned) network_.reset();
  return Answered{answer_after_failure(*store_, domain, failure, system_now(), options_, *logger_),
                  AnswerPath::timeout};
}

}  // namespace mtasts
