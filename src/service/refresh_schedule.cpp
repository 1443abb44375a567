#include "service/refresh_schedule.hpp"

#include <algorithm>

namespace mtasts {
namespace {

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

}  // namespace

RefreshSchedule::RefreshSchedule(Clock clock, Random random, const Timing& timing,
                                 const RefreshTiming& refresh)
    : clock_(std::move(clock)), random_(std::move(random)), timing_(timing), refresh_(refresh) {}

void RefreshSchedule::set_timing(const Timing& timing, const RefreshTiming& refresh) {
  timing_ = timing;
  refresh_ = refresh;
}

RefreshSchedule::Tracked& RefreshSchedule::track(const std::string& domain) {
  auto [it, inserted] = tracked_.try_emplace(domain);
  if (inserted) {
    it->second.draw = random_();
    if (auto saved = saved_.find(domain); saved != saved_.end()) {
      it->second.state.last_used = saved->second.last_used;
      it->second.state.own_check = saved->second.own_check;
      saved_.erase(saved);
    }
  }
  return it->second;
}

void RefreshSchedule::used(const std::string& domain) {
  if (closed_) return;
  Tracked& tracked = track(domain);
  tracked.state.last_used = std::max(tracked.state.last_used, clock_());
}

bool RefreshSchedule::learn(const std::string& domain, const CacheEntry& entry) {
  if (closed_) return false;
  Tracked& tracked = track(domain);
  const UnixTime now = clock_();
  tracked.state.last_used = std::max(tracked.state.last_used, now);
  if (tracked.running) return false;  // the refresh's own result is planned when it finishes
  tracked.entry = trimmed(entry);
  tracked.has_entry = true;
  bool due_now = false;
  plan(domain, tracked, now, &due_now);
  return due_now;
}

RefreshPlan RefreshSchedule::plan(const std::string& domain, Tracked& tracked, UnixTime now,
                                  bool* due_now) {
  const RefreshPlan planned =
      plan_refresh(tracked.entry, tracked.state, now, timing_, refresh_, tracked.draw);
  if (planned.action != RefreshAction::refresh) {
    tracked.ticket = 0;
    return planned;
  }
  if (tracked.ticket != 0 && tracked.planned_at == planned.at) return planned;  // queued as is
  tracked.ticket = ++next_ticket_;
  tracked.planned_at = planned.at;
  // Superseded items stay in the heap until they come up; rebuild it when they dominate.
  if (queue_.size() > 2 * tracked_.size() + 1024) {
    Queue fresh;
    for (const auto& [name, other] : tracked_) {
      if (other.ticket != 0 && &other != &tracked) {
        fresh.push(Item{other.planned_at, other.ticket, name});
      }
    }
    queue_ = std::move(fresh);
  }
  queue_.push(Item{planned.at, tracked.ticket, domain});
  if (due_now != nullptr && planned.at <= now) *due_now = true;
  return planned;
}

RefreshSchedule::ScanOutcome RefreshSchedule::scan(const Listing& listed) {
  ScanOutcome out;
  if (closed_) return out;
  const UnixTime now = clock_();
  const std::uint64_t scan = ++scans_;
  for (const auto& [domain, entry] : listed) {
    Tracked& tracked = track(domain);
    tracked.seen = scan;
    tracked.state.last_used = observed_last_use(entry, tracked.state);
    if (tracked.running) continue;
    tracked.entry = trimmed(entry);
    tracked.has_entry = true;
    if (plan(domain, tracked, now, &out.due_now).action == RefreshAction::drop) {
      out.drops.push_back(domain);
    }
  }
  // What the usage file said about domains no longer cached is of no use any more.
  saved_.clear();
  // Gone from the file (mtasts purge, or a corrupt file replaced): forget them. Domains only
  // used so far (no entry yet) stay: their lookup may not have stored anything yet.
  std::erase_if(tracked_, [scan](const auto& item) {
    return item.second.seen != scan && !item.second.running && item.second.has_entry;
  });
  return out;
}

void RefreshSchedule::forget(const std::vector<std::string>& domains) {
  for (const std::string& domain : domains) tracked_.erase(domain);
}

std::vector<RefreshSchedule::Due> RefreshSchedule::take_due(std::size_t limit) {
  std::vector<Due> out;
  if (closed_) return out;
  const UnixTime now = clock_();
  while (running_ < limit && !queue_.empty() && queue_.top().at <= now) {
    Item item = queue_.top();
    queue_.pop();
    auto it = tracked_.find(item.domain);
    if (it == tracked_.end() || it->second.ticket != item.ticket || it->second.running) continue;
    Tracked& tracked = it->second;
    tracked.ticket = 0;
    // Planned a while ago: the domain may have become unused since (the scan drops it), or a
    // lookup may have made it due later.
    const RefreshPlan current =
        plan_refresh(tracked.entry, tracked.state, now, timing_, refresh_, tracked.draw);
    if (current.action == RefreshAction::refresh && current.at <= now) {
      tracked.running = true;
      ++running_;
      out.push_back(Due{item.domain, now});
    } else {
      plan(item.domain, tracked, now);
    }
  }
  return out;
}

RefreshSchedule::Outcome RefreshSchedule::finish(const std::string& domain, UnixTime started,
                                                 const CacheEntry* entry) {
  // A clear() since take_due() forgot the domain: it is tracked anew.
  Tracked& tracked = track(domain);
  tracked.running = false;
  if (running_ > 0) --running_;
  tracked.state.last_attempt = started;
  tracked.draw = random_();
  const UnixTime now = clock_();
  bool failed = true;  // no entry: the refresh did not even write the cache
  if (entry != nullptr) {
    tracked.state.own_check = entry->checked_at;
    tracked.entry = trimmed(*entry);
    tracked.has_entry = true;
    failed = refresh_failed(*entry);
  }
  tracked.state.failures = failed ? tracked.state.failures + 1 : 0;
  Outcome out;
  out.failed = failed;
  out.failures = tracked.state.failures;
  out.entry = tracked.entry;
  out.matters = failed && refresh_failure_matters(tracked.entry, now);
  if (!closed_) out.next = plan(domain, tracked, now);
  return out;
}

void RefreshSchedule::close() {
  closed_ = true;
}

void RefreshSchedule::clear() {
  tracked_.clear();
  queue_ = {};
  saved_.clear();
}

std::vector<std::string> RefreshSchedule::restore_usage(std::string_view text) {
  ParsedUsage parsed = parse_usage_file(text);
  saved_ = std::move(parsed.records);
  return std::move(parsed.problems);
}

std::string RefreshSchedule::usage_text() const {
  std::map<std::string, UsageRecord> records = saved_;
  for (const auto& [domain, tracked] : tracked_) {
    if (!tracked.has_entry && tracked.state.last_used == 0) continue;
    records[domain] = UsageRecord{tracked.state.last_used, tracked.state.own_check};
  }
  return format_usage_file(records);
}

std::size_t RefreshSchedule::queued() const {
  return static_cast<std::size_t>(std::count_if(
      tracked_.begin(), tracked_.end(), [](const auto& item) { return item.second.ticket != 0; }));
}

std::optional<UnixTime> RefreshSchedule::planned_at(const std::string& domain) const {
  auto it = tracked_.find(domain);
  if (it == tracked_.end() || it->second.ticket == 0) return std::nullopt;
  return it->second.planned_at;
}

}  // namespace mtasts
