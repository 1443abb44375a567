// What the daemon's background parts learn from the lookups it answers: the metrics, the last
// use of each domain (the refresh scheduler) and that the cache changed (the cdb export). One
// per daemon, shared by every Backend (a reload builds a new Backend, not a new Activity).
#pragma once

#include <chrono>
#include <string>

#include "daemon/metrics.hpp"
#include "service/policy_service.hpp"

namespace mtasts::daemon {

class Refresher;
class CdbExporter;

class Activity {
 public:
  // A request's lookup was answered (from the cache, by a lookup, or after its deadline).
  void answered(const LookupResult& result, LookupPath path,
                std::chrono::steady_clock::duration took);
  // A lookup (not a refresh) consulted DNS and stored `result.entry`.
  void stored(const LookupResult& result);
  // Something wrote the cache (the cdb export looks again).
  void cache_written();

  Metrics metrics;
  // Set by the daemon while they run; null otherwise.
  Refresher* refresher = nullptr;
  CdbExporter* exporter = nullptr;
};

}  // namespace mtasts::daemon
