#include "service/answer_service.hpp"

#include <exception>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace mtasts {

std::expected<Asked, Error> ask(std::string_view raw_domain) {
  auto target = target_of(raw_domain);
  if (!target) return std::unexpected(std::move(target.error()));
  if (!target->answer) return Asked{std::move(target->domain), std::nullopt};
  return Asked{
      {},
      Answered{LookupResult{{}, std::move(*target->answer), std::nullopt, AnswerSource::cache},
               AnswerPath::literal}};
}

// One caller waiting for a lookup in its own coroutine: `done` fires at the caller's deadline or
// is cancelled when the result is in.
struct AnswerService::Pending {
  Pending(asio::any_io_executor executor, std::chrono::milliseconds timeout)
      : done(std::move(executor), timeout) {}
  asio::steady_timer done;
  std::optional<LookupResult> result;
  std::string failure;
};

AnswerService::AnswerService(asio::any_io_executor executor, store::PolicyStore& store,
                             Network network, Clock clock, AnswerOptions options,
                             std::shared_ptr<spdlog::logger> logger, AnswerEvents& events)
    : executor_(executor),
      store_(store),
      network_(std::move(network)),
      clock_(std::move(clock)),
      options_(std::move(options)),
      logger_(logger),
      events_(events),
      policy_(
          executor, store, *network_.resolver, *network_.fetcher, clock_, options_.service,
          std::move(logger), [&events](std::string_view outcome) { events.fetched(outcome); },
          network_.shared.get()) {}

AnswerService::~AnswerService() = default;

std::optional<Answered> AnswerService::answer_at_once(const std::string& domain) {
  auto hit =
      answer_from_cache(store_, domain, clock_(), options_.service, options_.serve_stale, *logger_);
  if (!hit) return std::nullopt;
  if (hit->hit == CacheHit::stale) {
    // RFC 8461 §8.1: the cached policy holds until a re-check shows a new id; the re-check runs
    // in the background, so a TTL passing never costs a delivery a DNS round trip.
    revalidate(domain);
    return Answered{std::move(hit->result), AnswerPath::stale};
  }
  return Answered{std::move(hit->result), AnswerPath::hit};
}

asio::awaitable<std::expected<Answered, Error>> AnswerService::answer(std::string_view raw_domain) {
  const auto started = std::chrono::steady_clock::now();
  auto asked = ask(raw_domain);
  if (!asked) co_return std::unexpected(std::move(asked.error()));
  if (asked->answered) co_return std::move(*asked->answered);
  std::optional<Answered> answered = answer_at_once(asked->domain);
  if (!answered) answered = co_await answer_from_network(std::move(asked->domain));
  events_.answered(*answered, std::chrono::steady_clock::now() - started);
  co_return std::move(*answered);
}

asio::awaitable<Answered> AnswerService::answer_from_network(std::string domain, bool force) {
  // The lookup runs in its own coroutine, so it can finish (and be cached for the next caller)
  // after this caller's deadline.
  auto pending = std::make_shared<Pending>(executor_, options_.service.lookup_timeout);
  std::shared_ptr<void> keep = events_.background_started();
  asio::co_spawn(executor_, look_up(*this, domain, force, pending),
                 [this, pending, keep](std::exception_ptr error) {
                   if (error) {
                     pending->failure = "lookup failed: " + exception_text(error);
                     logger_->error("{}", pending->failure);
                   }
                   pending->done.cancel();
                   events_.background_finished();
                 });
  co_await pending->done.async_wait(asio::as_tuple(asio::use_awaitable));
  if (pending->result) co_return Answered{std::move(*pending->result), AnswerPath::miss};

  // Timed out or failed: answer from what is cached, exactly as the decision would for a
  // temporary failure (never a silent downgrade of a valid policy).
  std::string failure = pending->failure;
  if (failure.empty()) {
    failure = fmt::format(
        "lookup did not finish within {} ms; answering from the cache, the lookup goes on in the "
        "background",
        options_.service.lookup_timeout.count());
  }
  co_return Answered{
      answer_after_failure(store_, domain, failure, clock_(), options_.service, *logger_),
      AnswerPath::timeout};
}

asio::awaitable<void> AnswerService::look_up(AnswerService& self, std::string domain, bool force,
                                             std::shared_ptr<Pending> pending) {
  // Two statements, not a conditional expression: g++ 12 destroys the temporary awaitable of
  // `co_await (c ? a() : b())` twice.
  LookupResult result;
  if (force) {
    result = co_await self.policy_.refresh(std::move(domain));
  } else {
    result = co_await self.policy_.lookup(std::move(domain));
  }
  if (result.source != AnswerSource::cache) co_await self.events_.stored(result);
  pending->result = std::move(result);
}

void AnswerService::revalidate(const std::string& domain) {
  if (!revalidating_.insert(domain).second) return;
  // Nobody waits for this one: its timer only has to exist for look_up().
  auto pending = std::make_shared<Pending>(executor_, options_.service.lookup_timeout);
  std::shared_ptr<void> keep = events_.background_started();
  asio::co_spawn(executor_, look_up(*this, domain, false, pending),
                 [this, domain, keep](std::exception_ptr error) {
                   if (error) {
                     logger_->error("{}: background re-check failed: {}", domain,
                                    exception_text(error));
                   }
                   revalidating_.erase(domain);
                   events_.background_finished();
                 });
}

asio::awaitable<LookupResult> AnswerService::refresh(std::string domain) {
  co_return co_await policy_.refresh(std::move(domain));
}

}  // namespace mtasts
