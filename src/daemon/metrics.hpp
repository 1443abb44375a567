// mtastsd's counters and the Prometheus text they are served as (metrics_listen). Everything is
// updated on the event loop's thread; no locks.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "core/decide.hpp"
#include "core/prometheus_text.hpp"

namespace mtasts::daemon {

// How a request's lookup was had.
enum class LookupPath {
  hit,      // a fresh cache entry: no network
  miss,     // a lookup (DNS, maybe a fetch) within lookup_timeout
  timeout,  // the lookup outlasted lookup_timeout; answered from the cache, the lookup goes on
  stale,    // the TXT TTL had passed: answered from the unexpired cached policy at once while
            // the id is re-checked in the background (stale-while-revalidate)
};

// Values read at the moment of a scrape.
struct Gauges {
  std::size_t open_connections = 0;    // Exim and socketmap clients connected now
  std::size_t background_lookups = 0;  // lookups and refreshes running
  std::size_t refresh_running = 0;
  std::size_t refresh_tracked = 0;  // cached domains the refresh scheduler knows
  std::size_t refresh_queued = 0;   // of which a refresh is planned
  double start_time = 0;            // Unix seconds
};

class Metrics {
 public:
  Metrics();

  void lookup(const Answer& answer, LookupPath path, double seconds);
  // `outcome`: "ok" or an error category (fetch_failed, webpki_invalid, policy_syntax, ...).
  void fetch(std::string_view outcome) { ++fetches_[std::string(outcome)]; }
  void refresh(bool ok) { ++(ok ? refresh_ok_ : refresh_failed_); }
  void dropped(std::size_t count) { dropped_ += count; }
  void cdb_written(std::size_t domains) {
    ++cdb_writes_;
    cdb_domains_ = domains;
  }
  void cdb_failed() { ++cdb_errors_; }

  [[nodiscard]] std::string render(const Gauges& gauges) const;

 private:
  // Answers: enforce, testing, none (mode none), no_policy, fail.
  std::array<std::uint64_t, 5> answers_{};
  std::array<std::uint64_t, 4> paths_{};  // by LookupPath
  std::map<std::string, std::uint64_t, std::less<>> fetches_;
  std::uint64_t refresh_ok_ = 0;
  std::uint64_t refresh_failed_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t cdb_writes_ = 0;
  std::uint64_t cdb_errors_ = 0;
  std::size_t cdb_domains_ = 0;
  prometheus::Histogram latency_;
};

}  // namespace mtasts::daemon
