// What the daemon's background parts learn from the lookups it answers: the metrics, the last
// use of each domain (the refresh scheduler) and that the cache changed (the cdb export). One
// per daemon, shared by every Backend (a reload builds a new Backend, not a new Activity). It
// knows its listeners only as callbacks the daemon sets, so no part points back at another.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "daemon/metrics.hpp"
#include "service/answer_service.hpp"

namespace mtasts::daemon {

class Activity {
 public:
  struct Listeners {
    std::function<void(const std::string& domain)> used;
    std::function<void(const std::string& domain, const CacheEntry& entry)> learnt;
    std::function<void()> cache_written;
  };

  // A request's lookup was answered (from the cache, by a lookup, or after its deadline).
  void answered(const LookupResult& result, AnswerPath path,
                std::chrono::steady_clock::duration took);
  // A lookup (not a refresh) consulted DNS and stored `result.entry`.
  void stored(const LookupResult& result);
  // Something wrote the cache (the cdb export looks again).
  void cache_written();

  // Set by the daemon while the background parts run; every callback may be empty.
  void listen(Listeners listeners) { listeners_ = std::move(listeners); }

  Metrics metrics;

 private:
  Listeners listeners_;
};

}  // namespace mtasts::daemon
