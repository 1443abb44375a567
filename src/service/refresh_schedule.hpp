// The bookkeeping of mtastsd's proactive refresh (RFC 8461 §3.3; STS-23, STS-27, STS-28): what
// is known of each cached domain, which refresh is due when, the outcome of each refresh, which
// entries to drop, and the last use kept across restarts (core/usage_file.hpp). No I/O, no
// timers: the clock and the jitter's random source are passed in, so tests run it on a fake
// clock; core/refresh_plan.hpp holds the rules. The daemon's Refresher walks the cache, runs the
// refreshes and erases what this says to drop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/decide.hpp"
#include "core/refresh_plan.hpp"
#include "core/usage_file.hpp"

namespace mtasts {

class RefreshSchedule {
 public:
  using Clock = std::function<UnixTime()>;
  // Uniform in [0, 1): the jitter that spreads refreshes (plan_refresh()'s `draw`).
  using Random = std::function<double()>;
  using Listing = std::vector<std::pair<std::string, CacheEntry>>;

  // A refresh to start now (take_due()); `started` goes back to finish().
  struct Due {
    std::string domain;
    UnixTime started = 0;
    friend bool operator==(const Due&, const Due&) = default;
  };
  struct ScanOutcome {
    std::vector<std::string> drops;  // to erase from the cache, then forget()
    bool due_now = false;            // a refresh fell due at once: dispatch
  };
  struct Outcome {
    bool failed = false;
    int failures = 0;      // in a row, this one included; 0 after a success
    CacheEntry entry;      // as now known (without policy text and mx), for the log
    bool matters = false;  // refresh_failure_matters(): an unexpired policy is at stake
    RefreshPlan next;      // idle after close()
  };

  RefreshSchedule(Clock clock, Random random, const Timing& timing, const RefreshTiming& refresh);

  // A reload may change them; the next plan uses them.
  void set_timing(const Timing& timing, const RefreshTiming& refresh);

  // A front-end needed `domain` now.
  void used(const std::string& domain);
  // A lookup (not a refresh) stored `entry` now: a use, and the entry is planned anew (unless a
  // refresh of it runs: its result is planned when it finishes). True when it is due at once.
  [[nodiscard]] bool learn(const std::string& domain, const CacheEntry& entry);
  // A walk of the cache listed these entries: each is planned; uses by other programs are
  // learnt from checked_at; domains no longer listed are forgotten.
  [[nodiscard]] ScanOutcome scan(const Listing& listed);
  // These were erased from the cache.
  void forget(const std::vector<std::string>& domains);

  // The refreshes due now, at most `limit` running at once (those already running count); each
  // is marked running until finish().
  [[nodiscard]] std::vector<Due> take_due(std::size_t limit);
  // A refresh from take_due() ended: with the entry it stored, or none (`nullptr`: it failed
  // before writing the cache). A failure backs the next one off (refresh_retry_pause()).
  Outcome finish(const std::string& domain, UnixTime started, const CacheEntry* entry);

  // Stop: uses and lookups are no longer counted, nothing more is planned or taken.
  void close();
  // Another cache file: everything known is forgotten (running refreshes still count).
  void clear();

  // Adopts the last use saved by a previous run (replacing what an earlier call gave) for
  // domains not yet known; returns the problems found in the text, for the log.
  std::vector<std::string> restore_usage(std::string_view text);
  // The usage file to save: every known domain, and saved ones no scan has yet passed on.
  [[nodiscard]] std::string usage_text() const;

  [[nodiscard]] std::size_t running() const { return running_; }
  [[nodiscard]] std::size_t tracked() const { return tracked_.size(); }
  [[nodiscard]] std::size_t queued() const;  // domains with a refresh planned
  // When a refresh of `domain` is planned; nullopt when none is.
  [[nodiscard]] std::optional<UnixTime> planned_at(const std::string& domain) const;

 private:
  struct Tracked {
    CacheEntry entry;  // what the plan needs (no policy text or mx list)
    bool has_entry = false;
    RefreshState state;
    double draw = 0;           // this domain's jitter, drawn anew after each refresh
    std::uint64_t ticket = 0;  // of the queued item that is current; 0: nothing planned
    UnixTime planned_at = 0;
    bool running = false;
    std::uint64_t seen = 0;  // the scan that last listed it
  };
  struct Item {
    UnixTime at;
    std::uint64_t ticket;
    std::string domain;
    friend bool operator>(const Item& a, const Item& b) { return a.at > b.at; }
  };
  using Queue = std::priority_queue<Item, std::vector<Item>, std::greater<>>;  // earliest first

  Tracked& track(const std::string& domain);
  // Plans `tracked` at `now`; `due_now` is set when a new item is due at once.
  RefreshPlan plan(const std::string& domain, Tracked& tracked, UnixTime now,
                   bool* due_now = nullptr);

  Clock clock_;
  Random random_;
  Timing timing_;
  RefreshTiming refresh_;
  std::unordered_map<std::string, Tracked> tracked_;
  Queue queue_;
  std::uint64_t next_ticket_ = 0;
  std::uint64_t scans_ = 0;
  std::size_t running_ = 0;
  bool closed_ = false;
  std::map<std::string, UsageRecord> saved_;  // from the usage file, for domains not yet seen
};

}  // namespace mtasts
