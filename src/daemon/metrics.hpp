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
#include "service/answer_service.hpp"

namespace mtasts::daemon {

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

  // Not for AnswerPath::literal (no lookup).
  void lookup(const Answer& answer, AnswerPath path, double seconds);
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
  std::array<std::uint64_t, 4> paths_{};  // by AnswerPath (literal excluded)
  std::map<std::string, std::uint64_t, std::less<>> fetches_;
  std::uint64_t refresh_ok_ = 0;
  std::uint64_t refresh_failed_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t cdb_writes_ = 0;
  std::uint64_t cdb_errors_ = 0;
  std::size_t cdb_domains_ = 0;
  prometheus::Histogram latency_;
};

// The fleet tier's families (shared_cache configured): what the shared cache gave, and its
// connection. Counters start again from zero when a reload builds a new backend.
[[nodiscard]] std::string render_fleet_metrics(const FleetStats& fleet,
                                               const store::SharedCacheStats& shared);

}  // namespace mtasts::daemon
