#include "service/fleet_tier.hpp"

#include <algorithm>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/shared_entry.hpp"

namespace mtasts {
namespace {

// How often a member waiting for another's result looks again: soon at first (most lookups end
// in tens of milliseconds), then less often.
constexpr std::chrono::milliseconds kFirstPoll{10};
constexpr std::chrono::milliseconds kLongestPoll{200};

}  // namespace

FleetTier::FleetTier(asio::any_io_executor executor, store::SharedCache& shared, Timing timing,
                     Clock clock, std::shared_ptr<spdlog::logger> logger)
    : executor_(std::move(executor)),
      shared_(shared),
      timing_(timing),
      clock_(std::move(clock)),
      logger_(std::move(logger)) {}

FleetTier::Verdict FleetTier::consider(const std::string& domain, const store::SharedRead& read,
                                       bool force, FleetStep& step) {
  if (read.status == store::SharedRead::Status::invalid) {
    ++stats_.invalid;
    const auto admission = invalid_log_.admit(std::chrono::steady_clock::now());
    if (admission.log) {
      logger_->warn("{}: shared cache value ignored (it is overwritten by our own lookup): {}{}",
                    domain, read.problem, admission.left_out());
    }
    return Verdict::keep_looking;
  }
  if (read.status != store::SharedRead::Status::found || !read.entry) return Verdict::keep_looking;

  const UnixTime now = clock_();
  std::string why;
  std::optional<CacheEntry> shared = sanitize_shared(*read.entry, now, timing_, why);
  if (!shared) {
    ++stats_.invalid;
    logger_->warn("{}: shared cache value ignored: {}", domain, why);
    return Verdict::keep_looking;
  }
  const SharedJudgement judgement = judge_shared(step.local, *shared, now, timing_, force);
  switch (judgement.use) {
    case SharedUse::adopt:
      ++stats_.adopted;
      logger_->debug("{}: answered from the shared cache (checked at {})", domain,
                     shared->checked_at);
      step.adopted = std::move(*shared);
      return Verdict::use;
    case SharedUse::confirm:
      // Kept as the candidate; the lock still decides who looks the domain up.
      logger_->debug("{}: shared cache offers {}; taken only if our own TXT lookup shows that id",
                     domain, judgement.reason);
      step.candidate_is_fresh = is_fresh(shared, now);
      step.candidate = std::move(shared->policy);
      step.local = with_shared_backoff(std::move(step.local), *shared, now);
      return Verdict::keep_looking;
    case SharedUse::ignore:
      if (judgement.reason.starts_with("it would weaken")) {
        ++stats_.refused;
        logger_->warn("{}: shared cache entry refused: {}", domain, judgement.reason);
      }
      step.local = with_shared_backoff(std::move(step.local), *shared, now);
      return Verdict::keep_looking;
  }
  return Verdict::keep_looking;
}

asio::awaitable<FleetStep> FleetTier::before_network(std::string domain,
                                                     std::optional<CacheEntry> local, bool force) {
  FleetStep step;
  step.local = std::move(local);
  const store::SharedRead first = co_await shared_.read(domain);
  if (first.status == store::SharedRead::Status::unavailable) {
    alone(domain, first.problem);
    co_return step;
  }
  if (consider(domain, first, force, step) == Verdict::use) co_return step;

  // Nothing usable: take the domain's lock, or wait for the member that holds it.
  const auto deadline = std::chrono::steady_clock::now() + shared_.lock_ttl();
  auto pause = kFirstPoll;
  bool waited = false;
  for (;;) {
    const store::SharedRead read = co_await shared_.lock_and_read(domain);
    if (read.status == store::SharedRead::Status::unavailable) {
      alone(domain, read.problem);
      co_return step;
    }
    if (consider(domain, read, force, step) == Verdict::use) {
      if (read.lock_acquired) shared_.release(domain);
      co_return step;
    }
    if (read.lock_acquired) co_return step;  // ours to look up; after_network() releases it
    // Every member sets its lock with an expiry no longer than its fetch timeout: one that never
    // expires, or would outlive ours by far, is not a member's and nothing to wait for.
    if (read.lock_left_ms == -1 || read.lock_left_ms > 2 * shared_.lock_ttl().count()) {
      alone(domain,
            read.lock_left_ms == -1
                ? std::string("its lock never expires (not set by mtasts)")
                : fmt::format("its lock lives {} ms more (not set by mtasts)", read.lock_left_ms));
      co_return step;
    }
    if (!waited) {
      waited = true;
      ++stats_.lock_waits;
    }
    if (std::chrono::steady_clock::now() + pause >= deadline) {
      alone(domain, "another member held the lookup's lock for its whole life");
      co_return step;
    }
    asio::steady_timer timer(executor_, pause);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    pause = std::min(pause * 2, kLongestPoll);
  }
}

void FleetTier::alone(const std::string& domain, const std::string& why) {
  ++stats_.went_alone;
  const auto admission = alone_log_.admit(std::chrono::steady_clock::now());
  if (!admission.log) return;
  logger_->warn("{}: looked up without the shared cache: {}{}", domain, why, admission.left_out());
}

void FleetTier::after_network(const std::string& domain, const CacheEntry& entry,
                              const FleetStep& step) {
  const bool disagrees = step.candidate && step.candidate_is_fresh &&
                         !(entry.policy && entry.policy->id == step.candidate->id);
  if (disagrees) {
    logger_->debug(
        "{}: not shared: our TXT lookup does not show policy id {}, which another "
        "member's recent check found",
        domain, step.candidate->id);
    shared_.release(domain);
    return;
  }
  ++stats_.published;
  shared_.write(domain, entry, std::chrono::seconds(shared_ttl(entry, clock_())));
}

}  // namespace mtasts
