#include "daemon/metrics.hpp"

#include <fmt/format.h>

namespace mtasts::daemon {
namespace {

using prometheus::append_header;
using prometheus::append_sample;

constexpr std::array<std::string_view, 5> kAnswerLabels = {"enforce", "testing", "none",
                                                           "no_policy", "fail"};
constexpr std::array<std::string_view, 3> kPathLabels = {"hit", "miss", "timeout"};

std::size_t answer_index(const Answer& answer) {
  switch (answer.kind) {
    case AnswerKind::policy:
      return answer.mode == Mode::enforce ? 0 : answer.mode == Mode::testing ? 1 : 2;
    case AnswerKind::no_policy:
      return 3;
    case AnswerKind::fail:
      return 4;
  }
  return 3;
}

}  // namespace

// From a cache hit (a few µs) to a lookup that waits for its deadline (seconds).
Metrics::Metrics()
    : latency_({0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                5, 10}) {}

void Metrics::lookup(const Answer& answer, AnswerPath path, double seconds) {
  ++answers_[answer_index(answer)];
  if (const auto index = static_cast<std::size_t>(path); index < paths_.size()) ++paths_[index];
  latency_.observe(seconds);
}

std::string Metrics::render(const Gauges& gauges) const {
  std::string out;
  out.reserve(4096);
  append_header(out, "mtastsd_lookups_total", "counter",
                "Lookups answered (Exim and socketmap requests), by answer.");
  for (std::size_t i = 0; i < kAnswerLabels.size(); ++i) {
    append_sample(out, "mtastsd_lookups_total", {{"answer", kAnswerLabels[i]}}, answers_[i]);
  }
  append_header(out, "mtastsd_cache_hits_total", "counter",
                "Lookups answered from a fresh cache entry, without the network.");
  append_sample(out, "mtastsd_cache_hits_total", {}, paths_[0]);
  append_header(out, "mtastsd_cache_misses_total", "counter",
                "Lookups that consulted DNS (and fetched when needed); timeout: answered from the "
                "cache after lookup_timeout_ms while the lookup went on.");
  append_sample(out, "mtastsd_cache_misses_total", {{"result", "answered"}}, paths_[1]);
  append_sample(out, "mtastsd_cache_misses_total", {{"result", "timeout"}}, paths_[2]);
  append_header(out, "mtastsd_cache_stale_answers_total", "counter",
                "Lookups answered at once from an unexpired cached policy whose TXT TTL had "
                "passed, while its id was re-checked in the background.");
  append_sample(out, "mtastsd_cache_stale_answers_total", {}, paths_[3]);
  latency_.append(out, "mtastsd_lookup_duration_seconds",
                  "Time from a request's domain to its answer.");
  append_header(out, "mtastsd_policy_fetches_total", "counter",
                "HTTPS policy fetches (lookups and refreshes), by outcome: ok or the error "
                "category.");
  if (fetches_.empty())
    append_sample(out, "mtastsd_policy_fetches_total", {{"outcome", "ok"}}, std::uint64_t{0});
  for (const auto& [outcome, count] : fetches_) {
    append_sample(out, "mtastsd_policy_fetches_total", {{"outcome", outcome}}, count);
  }
  append_header(out, "mtastsd_refreshes_total", "counter",
                "Proactive refreshes of cached policies, by result.");
  append_sample(out, "mtastsd_refreshes_total", {{"result", "ok"}}, refresh_ok_);
  append_sample(out, "mtastsd_refreshes_total", {{"result", "failed"}}, refresh_failed_);
  append_header(out, "mtastsd_refresh_dropped_total", "counter",
                "Cache entries dropped because no front-end used them for drop_unused_after.");
  append_sample(out, "mtastsd_refresh_dropped_total", {}, dropped_);
  append_header(out, "mtastsd_refresh_running", "gauge", "Refreshes running now.");
  append_sample(out, "mtastsd_refresh_running", {}, std::uint64_t{gauges.refresh_running});
  append_header(out, "mtastsd_refresh_tracked_domains", "gauge",
                "Cached domains the refresh scheduler knows, and those with a refresh planned.");
  append_sample(out, "mtastsd_refresh_tracked_domains", {{"state", "known"}},
                std::uint64_t{gauges.refresh_tracked});
  append_sample(out, "mtastsd_refresh_tracked_domains", {{"state", "planned"}},
                std::uint64_t{gauges.refresh_queued});
  append_header(out, "mtastsd_cdb_exports_total", "counter",
                "Rewrites of the cdb_export file, by result.");
  append_sample(out, "mtastsd_cdb_exports_total", {{"result", "ok"}}, cdb_writes_);
  append_sample(out, "mtastsd_cdb_exports_total", {{"result", "failed"}}, cdb_errors_);
  append_header(out, "mtastsd_cdb_domains", "gauge", "Domains in the last cdb file written.");
  append_sample(out, "mtastsd_cdb_domains", {}, std::uint64_t{cdb_domains_});
  append_header(out, "mtastsd_open_connections", "gauge",
                "Exim and socketmap client connections open now.");
  append_sample(out, "mtastsd_open_connections", {}, std::uint64_t{gauges.open_connections});
  append_header(out, "mtastsd_background_lookups", "gauge",
                "Lookups and refreshes running in the background now.");
  append_sample(out, "mtastsd_background_lookups", {}, std::uint64_t{gauges.background_lookups});
  append_header(out, "process_start_time_seconds", "gauge",
                "Start time of the process since the Unix epoch, in seconds.");
  append_sample(out, "process_start_time_seconds", {}, gauges.start_time);
  return out;
}

}  // namespace mtasts::daemon

namespace mtasts::daemon {

std::string render_fleet_metrics(const FleetStats& fleet, const store::SharedCacheStats& shared) {
  std::string out;
  prometheus::append_header(out, "mtasts_shared_cache_up", "gauge",
                            "1 while the connection to the fleet's shared cache (Redis) is up");
  prometheus::append_sample(out, "mtasts_shared_cache_up", {},
                            std::uint64_t{shared.connected ? 1u : 0u});
  prometheus::append_header(out, "mtasts_shared_cache_reads_total", "counter",
                            "Reads of the shared cache, by result");
  const std::pair<std::string_view, std::uint64_t> reads[] = {{"found", shared.found},
                                                              {"absent", shared.absent},
                                                              {"invalid", shared.invalid},
                                                              {"unavailable", shared.unavailable}};
  for (const auto& [result, count] : reads) {
    prometheus::append_sample(out, "mtasts_shared_cache_reads_total", {{"result", result}}, count);
  }
  prometheus::append_header(out, "mtasts_shared_cache_writes_total", "counter",
                            "Entries written to the shared cache, by result");
  prometheus::append_sample(out, "mtasts_shared_cache_writes_total", {{"result", "sent"}},
                            shared.writes);
  prometheus::append_sample(out, "mtasts_shared_cache_writes_total", {{"result", "failed"}},
                            shared.write_failures);
  prometheus::append_header(out, "mtasts_shared_cache_locks_total", "counter",
                            "Lookup locks asked for, by result (busy: another member had it)");
  prometheus::append_sample(out, "mtasts_shared_cache_locks_total", {{"result", "acquired"}},
                            shared.locks_acquired);
  prometheus::append_sample(out, "mtasts_shared_cache_locks_total", {{"result", "busy"}},
                            shared.locks_busy);
  prometheus::append_header(out, "mtasts_shared_cache_connection_events_total", "counter",
                            "Connection events of the shared cache's client");
  const std::pair<std::string_view, std::uint64_t> events[] = {
      {"connected", shared.connects},
      {"connect_failed", shared.connect_failures},
      {"timeout", shared.timeouts},
      {"disconnected", shared.disconnects}};
  for (const auto& [event, count] : events) {
    prometheus::append_sample(out, "mtasts_shared_cache_connection_events_total",
                              {{"event", event}}, count);
  }
  prometheus::append_header(out, "mtasts_fleet_lookups_total", "counter",
                            "Lookups as the fleet tier saw them, by outcome");
  const std::pair<std::string_view, std::uint64_t> outcomes[] = {
      {"adopted", fleet.adopted},    {"confirmed", fleet.confirmed}, {"refused", fleet.refused},
      {"invalid", fleet.invalid},    {"waited", fleet.lock_waits},   {"alone", fleet.went_alone},
      {"published", fleet.published}};
  for (const auto& [outcome, count] : outcomes) {
    prometheus::append_sample(out, "mtasts_fleet_lookups_total", {{"outcome", outcome}}, count);
  }
  return out;
}

}  // namespace mtasts::daemon
