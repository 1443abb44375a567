// The proactive refresh of cached policies (RFC 8461 §3.3; issue item 4), on the daemon's event
// loop. A scan walks the cache file every refresh_scan_interval (on the worker thread) to learn
// of entries other programs wrote and of uses they made; the daemon's own lookups are learnt at
// once. service/refresh_schedule.hpp keeps the books and decides (core/refresh_plan.hpp) when
// each entry is refreshed or dropped; this file only runs timers and coroutines. A dispatcher
// starts due refreshes, at most refresh_concurrency at a time, each its own coroutine (a lookup
// never waits for one; one of the same domain shares the PolicyService's flight).
//
// Last use: the daemon's answers count at once (in memory); the Exim module's and the CLI's
// show when they consult DNS for a stale entry (observed_last_use). Last use is saved to
// "<cache>-usage" (core/usage_file.hpp) every kUsageSaveInterval and at stop, so a restart does
// not make every entry look used.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "core/decide.hpp"
#include "daemon/activity.hpp"
#include "daemon/state.hpp"
#include "daemon/worker.hpp"
#include "service/refresh_schedule.hpp"

namespace mtasts::daemon {

class Refresher {
 public:
  static constexpr std::chrono::minutes kUsageSaveInterval{15};

  // `background` counts running refreshes (the daemon's stop waits for them, like for lookups).
  Refresher(asio::any_io_executor executor, State& state, Worker& worker,
            std::shared_ptr<Counter> background, Activity& activity);
  Refresher(const Refresher&) = delete;
  Refresher& operator=(const Refresher&) = delete;

  // Starts the scan and dispatch coroutines (the first scan at once).
  void start();
  // Starts nothing new; running refreshes finish on their own. Saves the usage file.
  void stop();

  // A request for `domain` was answered now.
  void used(const std::string& domain);
  // A lookup for a request stored `entry` (a use as well).
  void learn(const std::string& domain, const CacheEntry& entry);

  void fill(Gauges& gauges) const;
  // "<cache>-usage": where last use is kept for the cache file `cache_path`.
  [[nodiscard]] static std::string usage_path(const std::string& cache_path);

 private:
  asio::awaitable<void> scan_loop();
  asio::awaitable<void> dispatch_loop();
  asio::awaitable<void> scan();
  asio::awaitable<void> drop(std::shared_ptr<store::SharedStore> store,
                             std::vector<std::string> domains);
  void start_refresh(const RefreshSchedule::Due& due, std::size_t running);
  void finish(const std::string& domain, UnixTime started, const LookupResult* result,
              const std::string& failure);
  // The schedule, with the timing of the running configuration (a reload may change it).
  RefreshSchedule& schedule();
  void adopt_cache(const std::string& cache_path);
  void save_usage_now();
  void wake() { wake_.cancel(); }

  asio::any_io_executor executor_;
  State& state_;
  Worker& worker_;
  std::shared_ptr<Counter> background_;
  Activity& activity_;
  RefreshSchedule schedule_;
  bool started_ = false;
  bool stopping_ = false;
  asio::steady_timer wake_;        // the dispatcher sleeps on it
  asio::steady_timer scan_timer_;  // the scan loop sleeps on it
  std::string cache_path_;         // the cache file the tracking belongs to
  std::chrono::steady_clock::time_point usage_saved_at_;
};

}  // namespace mtasts::daemon
