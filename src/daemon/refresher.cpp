#include "daemon/refresher.hpp"

#include <cerrno>
#include <cstring>
#include <exception>
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

// What plan_refresh() reads, without the bulk (policy text, mx list) of every cached domain.
CacheEntry trimmed(const CacheEntry& entry) {
  CacheEntry out;
  if (entry.policy) {
    out.policy = CachedPolicy{};
    out.policy->policy.mode = entry.policy->policy.mode;
    out.policy->id = entry.policy->id;
    out.policy->fetched_at = entry.policy->fetched_at;
    out.policy->expires_at = entry.policy->expires_at;
  }
  out.checked_at = entry.checked_at;
  out.next_check = entry.next_check;
  out.unavailable = entry.unavailable;
  out.failed_id = entry.failed_id;
  out.failures = entry.failures;
  out.retry_fetch_at = entry.retry_fetch_at;
  out.last_error = entry.last_error;
  return out;
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

}  // namespace

Refresher::Refresher(asio::any_io_executor executor, State& state, Worker& worker,
                     std::shared_ptr<Counter> background, Activity& activity)
    : executor_(executor),
      state_(state),
      worker_(worker),
      background_(std::move(background)),
      activity_(activity),
      wake_(executor),
      scan_timer_(executor),
      random_(std::random_device{}()),
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
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      logger->error("refresh: internal error: {}", e.what());
    } catch (...) {
      logger->error("refresh: internal error");
    }
  };
  asio::co_spawn(executor_, scan_loop(), log_end);
  asio::co_spawn(executor_, dispatch_loop(), log_end);
}

void Refresher::stop() {
  if (stopping_) return;
  stopping_ = true;
  wake_.cancel();
  scan_timer_.cancel();
  if (!cache_path_.empty()) save_usage_now();
}

double Refresher::draw() {
  return std::uniform_real_distribution<double>(0.0, 1.0)(random_);
}

Refresher::Tracked& Refresher::track(const std::string& domain) {
  auto [it, inserted] = tracked_.try_emplace(domain);
  if (inserted) {
    it->second.draw = draw();
    if (auto saved = saved_.find(domain); saved != saved_.end()) {
      it->second.state.last_used = saved->second.last_used;
      it->second.state.own_check = saved->second.own_check;
      saved_.erase(saved);
    }
  }
  return it->second;
}

void Refresher::used(const std::string& domain) {
  if (stopping_) return;
  Tracked& tracked = track(domain);
  tracked.state.last_used = std::max(tracked.state.last_used, system_now());
}

void Refresher::learn(const std::string& domain, const CacheEntry& entry) {
  if (stopping_) return;
  Tracked& tracked = track(domain);
  const UnixTime now = system_now();
  tracked.state.last_used = std::max(tracked.state.last_used, now);
  if (tracked.running) return;  // the refresh's own result is planned when it finishes
  tracked.entry = trimmed(entry);
  tracked.has_entry = true;
  plan(domain, tracked, now);
}

RefreshPlan Refresher::plan(const std::string& domain, Tracked& tracked, UnixTime now) {
  const Config& config = *state_.config;
  const RefreshPlan planned = plan_refresh(tracked.entry, tracked.state, now, config.timing,
                                           config.daemon.refresh_timing, tracked.draw);
  if (planned.action != RefreshAction::refresh) {
    tracked.ticket = 0;
    return planned;
  }
  if (tracked.ticket != 0 && tracked.planned_at == planned.at) return planned;  // queued as is
  tracked.ticket = ++next_ticket_;
  tracked.planned_at = planned.at;
  // Superseded items stay in the heap until they come up; rebuild it when they dominate.
  if (queue_.size() > 2 * tracked_.size() + 1024) {
    std::priority_queue<Item, std::vector<Item>, std::greater<>> fresh;
    for (const auto& [name, other] : tracked_) {
      if (other.ticket != 0 && &other != &tracked) {
        fresh.push(Item{other.planned_at, other.ticket, name});
      }
    }
    queue_ = std::move(fresh);
  }
  queue_.push(Item{planned.at, tracked.ticket, domain});
  if (planned.at <= now) wake();
  return planned;
}

asio::awaitable<void> Refresher::dispatch_loop() {
  while (!stopping_) {
    const std::shared_ptr<const Config> config = state_.config;
    const DaemonConfig& settings = config->daemon;
    const UnixTime now = system_now();
    while (settings.refresh && running_ < settings.refresh_concurrency && !queue_.empty() &&
           queue_.top().at <= now) {
      Item item = queue_.top();
      queue_.pop();
      auto it = tracked_.find(item.domain);
      if (it == tracked_.end() || it->second.ticket != item.ticket || it->second.running) continue;
      Tracked& tracked = it->second;
      // Planned a while ago: the domain may have become unused since (the scan drops it), or a
      // lookup may have made it due later.
      const RefreshPlan current = plan_refresh(tracked.entry, tracked.state, now, config->timing,
                                               settings.refresh_timing, tracked.draw);
      if (current.action == RefreshAction::refresh && current.at <= now) {
        tracked.ticket = 0;
        start_refresh(item.domain, tracked, now);
      } else {
        tracked.ticket = 0;
        plan(item.domain, tracked, now);
      }
    }
    // Due times are whole seconds of the wall clock, which may step: look again every second,
    // or at once when a refresh finishes or something falls due.
    wake_.expires_after(std::chrono::seconds(1));
    co_await wake_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

void Refresher::start_refresh(const std::string& domain, Tracked& tracked, UnixTime now) {
  tracked.running = true;
  ++running_;
  background_->add();
  std::shared_ptr<Backend> backend = state_.backend;
  state_.logger->debug("refresh: {}: starting ({} running)", domain, running_);
  asio::co_spawn(executor_, backend->refresh(domain),
                 [this, domain, now](std::exception_ptr error, LookupResult result) {
                   std::string failure;
                   if (error) {
                     try {
                       std::rethrow_exception(error);
                     } catch (const std::exception& e) {
                       failure = fmt::format("internal error: {}", e.what());
                     } catch (...) {
                       failure = "internal error";
                     }
                   }
                   finish(domain, now, error ? nullptr : &result, failure);
                   --running_;
                   background_->remove();
                   wake();
                 });
}

void Refresher::finish(const std::string& domain, UnixTime started, const LookupResult* result,
                       const std::string& failure) {
  Tracked& tracked = track(domain);
  tracked.running = false;
  tracked.state.last_attempt = started;
  tracked.draw = draw();
  spdlog::logger& log = *state_.logger;
  const UnixTime now = system_now();
  bool failed = true;
  std::string why = failure;
  if (result != nullptr && result->entry) {
    const CacheEntry& entry = *result->entry;
    tracked.state.own_check = entry.checked_at;
    tracked.entry = trimmed(entry);
    tracked.has_entry = true;
    failed = refresh_failed(entry);
    why = entry.last_error;
  } else if (why.empty()) {
    why = "the cache could not be written";
  }
  tracked.state.failures = failed ? tracked.state.failures + 1 : 0;
  activity_.metrics.refresh(!failed);
  activity_.cache_written();
  if (stopping_) return;
  const RefreshPlan next = plan(domain, tracked, now);
  const std::string next_text = next.action == RefreshAction::refresh
                                    ? fmt::format("next refresh at {}", format_time(next.at))
                                    : "no further refresh planned";
  const CacheEntry& entry = tracked.entry;
  if (!failed) {
    if (entry.policy) {
      log.debug("refresh: {}: policy id {} mode {} valid until {}; {}", domain, entry.policy->id,
                to_string(entry.policy->policy.mode), format_time(entry.policy->expires_at),
                next_text);
    } else {
      log.info("refresh: {}: no MTA-STS policy any more; no further refresh", domain);
    }
    return;
  }
  if (refresh_failure_matters(entry, now)) {
    // STS-28: said long before the cached policy would lapse.
    log.warn(
        "refresh: {}: failed ({} in a row): {}; the cached {} policy (id {}) stays in force "
        "until {}; {}",
        domain, tracked.state.failures, why, to_string(entry.policy->policy.mode), entry.policy->id,
        format_time(entry.policy->expires_at), next_text);
  } else {
    log.info("refresh: {}: failed ({} in a row): {}; {}", domain, tracked.state.failures, why,
             next_text);
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
  tracked_.clear();
  queue_ = {};
  saved_.clear();
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
  ParsedUsage parsed = parse_usage_file(*text);
  for (const std::string& problem : parsed.problems) {
    state_.logger->warn("refresh: {}: {}", path, problem);
  }
  saved_ = std::move(parsed.records);
}

asio::awaitable<void> Refresher::scan() {
  const std::shared_ptr<const Config> config = state_.config;
  if (!config->daemon.refresh) co_return;
  std::shared_ptr<store::WriteBehindStore> store = state_.backend->store();
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
  const UnixTime now = system_now();
  const std::uint64_t scan = ++scans_;
  std::vector<std::string> drops;
  for (const auto& [domain, entry] : *listed) {
    Tracked& tracked = track(domain);
    tracked.seen = scan;
    tracked.state.last_used = observed_last_use(entry, tracked.state);
    if (tracked.running) continue;
    tracked.entry = trimmed(entry);
    tracked.has_entry = true;
    if (plan(domain, tracked, now).action == RefreshAction::drop) drops.push_back(domain);
  }
  // What the usage file said about domains no longer cached is of no use any more.
  saved_.clear();
  // Gone from the file (mtasts purge, or a corrupt file replaced): forget them.
  std::erase_if(tracked_, [scan](const auto& item) {
    return item.second.seen != scan && !item.second.running && item.second.has_entry;
  });
  const auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - began);
  state_.logger->debug("refresh: scanned {} cached domain(s) in {:.3f} s; {} to drop",
                       listed->size(), took.count(), drops.size());
  if (!drops.empty()) co_await drop(store, std::move(drops));
  if (!stopping_ && std::chrono::steady_clock::now() - usage_saved_at_ >= kUsageSaveInterval) {
    const std::string path = usage_path(cache_path_);
    std::string text = usage_text();
    usage_saved_at_ = std::chrono::steady_clock::now();
    auto save = [path, text = std::move(text)] { return replace_file(path, 0640, text); };
    auto saved = co_await worker_.run(std::move(save));
    if (!saved) state_.logger->warn("refresh: cannot save last use: {}", saved.error());
  }
}

asio::awaitable<void> Refresher::drop(std::shared_ptr<store::WriteBehindStore> store,
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
  for (const std::string& domain : outcome.erased) tracked_.erase(domain);
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

std::string Refresher::usage_text() const {
  std::map<std::string, UsageRecord> records = saved_;
  for (const auto& [domain, tracked] : tracked_) {
    if (!tracked.has_entry && tracked.state.last_used == 0) continue;
    records[domain] = UsageRecord{tracked.state.last_used, tracked.state.own_check};
  }
  return format_usage_file(records);
}

void Refresher::save_usage_now() {
  const std::string path = usage_path(cache_path_);
  if (auto saved = replace_file(path, 0640, usage_text()); !saved) {
    state_.logger->warn("refresh: cannot save last use: {}", saved.error());
  }
  usage_saved_at_ = std::chrono::steady_clock::now();
}

void Refresher::fill(Gauges& gauges) const {
  gauges.refresh_running = running_;
  gauges.refresh_tracked = tracked_.size();
  std::size_t planned = 0;
  for (const auto& [domain, tracked] : tracked_) planned += tracked.ticket != 0 ? 1 : 0;
  gauges.refresh_queued = planned;
}

}  // namespace mtasts::daemon
