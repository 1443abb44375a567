#include "daemon/refresher.hpp"

#include <cerrno>
#include <cstring>
#include <exception>
#include <random>
#include <utility>

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "daemon/atomic_file.hpp"
#include "service/engine.hpp"

namespace mtasts::daemon {
namespace {

constexpr std::size_t kMaxUsageFile = std::size_t{256} << 20;
constexpr std::size_t kNamesInLog = 10;

std::string format_time(UnixTime t) {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(static_cast<std::time_t>(t)));
}

std::string some_names(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < kNamesInLog; ++i) {
    if (i > 0) out += ", ";
    out += names[i];
  }
  if (names.size() > kNamesInLog) out += fmt::format(" and {} more", names.size() - kNamesInLog);
  return out;
}

// The jitter's source: std::function copies it, so the generator lives inside.
RefreshSchedule::Random seeded_random() {
  return [generator = std::mt19937_64(std::random_device{}())]() mutable {
    return std::uniform_real_distribution<double>(0.0, 1.0)(generator);
  };
}

}  // namespace

Refresher::Refresher(asio::any_io_executor executor, State& state, Worker& worker,
                     std::shared_ptr<Counter> background, Activity& activity)
    : executor_(executor),
      state_(state),
      worker_(worker),
      background_(std::move(background)),
      activity_(activity),
      schedule_(&system_now, seeded_random(), state.config->timing,
                state.config->daemon.refresh_timing),
      wake_(executor),
      scan_timer_(executor),
      usage_saved_at_(std::chrono::steady_clock::now()) {}

std::string Refresher::usage_path(const std::string& cache_path) {
  return cache_path + "-usage";
}

void Refresher::start() {
  if (started_) return;
  started_ = true;
  // Last use from the previous run, before the first request is counted.
  adopt_cache(state_.backend->store()->path());
  auto log_end = [logger = state_.logger](std::exception_ptr error) {
    if (error) logger->error("refresh: internal error: {}", exception_text(error));
  };
  asio::co_spawn(executor_, scan_loop(), log_end);
  asio::co_spawn(executor_, dispatch_loop(), log_end);
}

void Refresher::stop() {
  if (stopping_) return;
  stopping_ = true;
  schedule_.close();
  wake_.cancel();
  scan_timer_.cancel();
  if (!cache_path_.empty()) save_usage_now();
}

RefreshSchedule& Refresher::schedule() {
  const Config& config = *state_.config;
  schedule_.set_timing(config.timing, config.daemon.refresh_timing);
  return schedule_;
}

void Refresher::used(const std::string& domain) {
  if (stopping_) return;
  schedule_.used(domain);  // on every answer: a use needs no timing
}

void Refresher::learn(const std::string& domain, const CacheEntry& entry) {
  if (stopping_) return;
  if (schedule().learn(domain, entry)) wake();
}

asio::awaitable<void> Refresher::dispatch_loop() {
  while (!stopping_) {
    const std::shared_ptr<const Config> config = state_.config;
    const DaemonConfig& settings = config->daemon;
    if (settings.refresh) {
      const std::vector<RefreshSchedule::Due> due =
          schedule().take_due(settings.refresh_concurrency);
      std::size_t running = schedule_.running() - due.size();
      for (const RefreshSchedule::Due& item : due) start_refresh(item, ++running);
    }
    // Due times are whole seconds of the wall clock, which may step: look again every second,
    // or at once when a refresh finishes or something falls due.
    wake_.expires_after(std::chrono::seconds(1));
    co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void Refresher::start_refresh(const RefreshSchedule::Due& due, std::size_t running) {
  background_->add();
  std::shared_ptr<Backend> backend = state_.backend;
  state_.logger->debug("refresh: {}: starting ({} running)", due.domain, running);
  asio::co_spawn(executor_, backend->refresh(due.domain),
                 [this, due](std::exception_ptr error, LookupResult result) {
                   std::string failure;
                   if (error) failure = "internal error: " + exception_text(error);
                   finish(due.domain, due.started, error ? nullptr : &result, failure);
                   background_->remove();
                   wake();
                 });
}

void Refresher::finish(const std::string& domain, UnixTime started, const LookupResult* result,
                       const std::string& failure) {
  const CacheEntry* stored = result != nullptr && result->entry ? &*result->entry : nullptr;
  const RefreshSchedule::Outcome outcome = schedule().finish(domain, started, stored);
  std::string why = stored != nullptr ? stored->last_error : failure;
  if (stored == nullptr && why.empty()) why = "the cache could not be written";
  activity_.metrics.refresh(!outcome.failed);
  activity_.cache_written();
  if (stopping_) return;
  spdlog::logger& log = *state_.logger;
  const RefreshPlan& next = outcome.next;
  const std::string next_text = next.action == RefreshAction::refresh
                                    ? fmt::format("next refresh at {}", format_time(next.at))
                                    : "no further refresh planned";
  const CacheEntry& entry = outcome.entry;
  if (!outcome.failed) {
    if (entry.policy) {
      log.debug("refresh: {}: policy id {} mode {} valid until {}; {}", domain, entry.policy->id,
                to_string(entry.policy->policy.mode), format_time(entry.policy->expires_at),
                next_text);
    } else {
      log.info("refresh: {}: no MTA-STS policy any more; no further refresh", domain);
    }
    return;
  }
  if (outcome.matters) {
    // STS-28: said long before the cached policy would lapse.
    log.warn(
        "refresh: {}: failed ({} in a row): {}; the cached {} policy (id {}) stays in force "
        "until {}; {}",
        domain, outcome.failures, why, to_string(entry.policy->policy.mode), entry.policy->id,
        format_time(entry.policy->expires_at), next_text);
  } else {
    log.info("refresh: {}: failed ({} in a row): {}; {}", domain, outcome.failures, why, next_text);
  }
}

asio::awaitable<void> Refresher::scan_loop() {
  while (!stopping_) {
    co_await scan();
    if (stopping_) break;
    const std::int64_t interval = state_.config->daemon.refresh_scan_interval;
    scan_timer_.expires_after(std::chrono::seconds(interval));
    co_await scan_timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void Refresher::adopt_cache(const std::string& cache_path) {
  if (cache_path == cache_path_) return;
  if (!cache_path_.empty()) save_usage_now();
  schedule_.clear();
  cache_path_ = cache_path;
  const std::string path = usage_path(cache_path);
  auto text = read_file(path, kMaxUsageFile);
  if (!text) {
    if (text.error() != ENOENT) {
      state_.logger->warn("refresh: cannot read {}: {}; last use starts afresh", path,
                          std::strerror(text.error()));
    }
    return;
  }
  for (const std::string& problem : schedule_.restore_usage(*text)) {
    state_.logger->warn("refresh: {}: {}", path, problem);
  }
}

asio::awaitable<void> Refresher::scan() {
  const std::shared_ptr<const Config> config = state_.config;
  if (!config->daemon.refresh) co_return;
  std::shared_ptr<store::SharedStore> store = state_.backend->store();
  adopt_cache(store->path());
  const auto began = std::chrono::steady_clock::now();
  // Jobs are named locals: g++ 12 destroys a lambda temporary inside a co_await expression
  // twice (its captured shared_ptr was released one time too many).
  auto walk = [store] { return store->list(); };
  auto listed = co_await worker_.run(std::move(walk));
  if (stopping_ || store->path() != cache_path_) co_return;
  if (!listed) {
    state_.logger->error("refresh: cannot walk the cache {}: {}", store->path(),
                         listed.error().reason);
    co_return;
  }
  RefreshSchedule::ScanOutcome outcome = schedule().scan(*listed);
  if (outcome.due_now) wake();
  const auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - began);
  state_.logger->debug("refresh: scanned {} cached domain(s) in {:.3f} s; {} to drop",
                       listed->size(), took.count(), outcome.drops.size());
  if (!outcome.drops.empty()) co_await drop(store, std::move(outcome.drops));
  if (!stopping_ && std::chrono::steady_clock::now() - usage_saved_at_ >= kUsageSaveInterval) {
    const std::string path = usage_path(cache_path_);
    std::string text = schedule_.usage_text();
    usage_saved_at_ = std::chrono::steady_clock::now();
    auto save = [path, text = std::move(text)] { return replace_file(path, 0640, text); };
    auto saved = co_await worker_.run(std::move(save));
    if (!saved) state_.logger->warn("refresh: cannot save last use: {}", saved.error());
  }
}

asio::awaitable<void> Refresher::drop(std::shared_ptr<store::SharedStore> store,
                                      std::vector<std::string> domains) {
  struct Outcome {
    std::vector<std::string> erased;
    std::vector<std::string> errors;
  };
  auto erase = [store, domains] {
    Outcome out;
    for (const std::string& domain : domains) {
      auto erased = store->erase(domain);
      if (erased) {
        out.erased.push_back(domain);
      } else {
        out.errors.push_back(fmt::format("{}: {}", domain, erased.error().reason));
      }
    }
    return out;
  };
  Outcome outcome = co_await worker_.run(std::move(erase));
  schedule_.forget(outcome.erased);
  for (const std::string& error : outcome.errors) {
    state_.logger->error("refresh: cannot drop {}", error);
  }
  if (outcome.erased.empty()) co_return;
  state_.logger->info("refresh: dropped {} cache entr{} unused for {} s: {}", outcome.erased.size(),
                      outcome.erased.size() == 1 ? "y" : "ies",
                      state_.config->daemon.refresh_timing.drop_unused_after,
                      some_names(outcome.erased));
  activity_.metrics.dropped(outcome.erased.size());
  activity_.cache_written();
}

void Refresher::save_usage_now() {
  const std::string path = usage_path(cache_path_);
  if (auto saved = replace_file(path, 0640, schedule_.usage_text()); !saved) {
    state_.logger->warn("refresh: cannot save last use: {}", saved.error());
  }
  usage_saved_at_ = std::chrono::steady_clock::now();
}

void Refresher::fill(Gauges& gauges) const {
  gauges.refresh_running = schedule_.running();
  gauges.refresh_tracked = schedule_.tracked();
  gauges.refresh_queued = schedule_.queued();
}

}  // namespace mtasts::daemon
