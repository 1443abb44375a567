#include "daemon/backend.hpp"

#include <algorithm>
#include <exception>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/domain.hpp"
#include "service/cached_answers.hpp"
#include "service/engine.hpp"
#include "service/wiring.hpp"

namespace mtasts::daemon {
namespace {

using namespace boost::asio::experimental::awaitable_operators;

}  // namespace

asio::awaitable<bool> Counter::wait_zero(std::chrono::steady_clock::time_point deadline) {
  while (count_ > 0) {
    if (std::chrono::steady_clock::now() >= deadline) co_return false;
    co_await wait_change(deadline);
  }
  co_return true;
}

asio::awaitable<void> Counter::wait_change(std::chrono::steady_clock::time_point deadline) {
  asio::steady_timer timer(changed_.get_executor(), deadline);
  co_await (changed_.async_wait(asio::as_tuple(asio::use_awaitable)) ||
            timer.async_wait(asio::as_tuple(asio::use_awaitable)));
}

// One request waiting for a background lookup: `done` fires at the request's deadline or is
// cancelled when the result is in.
struct Backend::Pending {
  Pending(asio::any_io_executor executor, std::chrono::milliseconds timeout)
      : done(std::move(executor), timeout) {}
  asio::steady_timer done;
  std::optional<LookupResult> result;
  std::string failure;
};

Backend::Backend(asio::any_io_executor executor, const Config& config,
                 std::shared_ptr<store::WriteBehindStore> store,
                 std::shared_ptr<spdlog::logger> logger, std::shared_ptr<Counter> lookups,
                 std::shared_ptr<Activity> activity)
    : executor_(executor),
      options_(service_options(config)),
      lookup_timeout_(config.lookup_timeout),
      store_(std::move(store)),
      logger_(logger),
      lookups_(std::move(lookups)),
      activity_(std::move(activity)),
      resolver_(executor, resolver_options(config, Concurrency::many_lookups)),
      fetcher_(resolver_, fetcher_options(config)),
      counting_fetcher_(fetcher_, activity_->metrics),
      service_(executor, *store_, resolver_, counting_fetcher_, system_now, service_options(config),
               std::move(logger)) {}

void Backend::revalidate(const std::string& domain) {
  if (!revalidating_.insert(domain).second) return;
  // Nobody waits for this one: its timer only has to exist for run().
  auto pending = std::make_shared<Pending>(executor_, lookup_timeout_);
  lookups_->add();
  asio::co_spawn(executor_, run(shared_from_this(), domain, pending),
                 [self = shared_from_this(), domain](std::exception_ptr error) {
                   if (error) {
                     try {
                       std::rethrow_exception(error);
                     } catch (const std::exception& e) {
                       self->logger_->error("{}: background re-check failed: {}", domain, e.what());
                     } catch (...) {
                       self->logger_->error("{}: background re-check failed", domain);
                     }
                   }
                   self->revalidating_.erase(domain);
                   self->lookups_->remove();
                 });
}

asio::awaitable<void> Backend::run(std::shared_ptr<Backend> self, std::string domain,
                                   std::shared_ptr<Pending> pending) {
  LookupResult result = co_await self->service_.lookup(std::move(domain));
  if (result.source == AnswerSource::network) {
    // The client hears the answer once it is in the file (CLI and Exim see it then too).
    co_await self->committed();
    self->activity_->stored(result);
  }
  pending->result = std::move(result);
}

asio::awaitable<void> Backend::committed() {
  struct Wait {
    explicit Wait(asio::any_io_executor executor)
        : timer(std::move(executor), asio::steady_timer::time_point::max()) {}
    asio::steady_timer timer;
    bool done = false;
  };
  auto wait = std::make_shared<Wait>(executor_);
  // Called on the store's writer thread: hand over to the event loop.
  store_->when_committed([wait, executor = executor_] {
    asio::post(executor, [wait] {
      wait->done = true;
      wait->timer.cancel();
    });
  });
  if (!wait->done) co_await wait->timer.async_wait(asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<std::vector<std::string>> Backend::mx_hosts(std::string domain) {
  const auto now = std::chrono::steady_clock::now();
  if (const auto found = mx_memo_.find(domain); found != mx_memo_.end()) {
    if (found->second.until > now) co_return found->second.hosts;
    mx_memo_.erase(found);
  }
  std::shared_ptr<Backend> self = shared_from_this();
  const dns::Answer<dns::MxRecord> answer = co_await resolver_.mx(domain);
  std::vector<std::string> hosts;
  // How long the answer is reused: the DNS TTL within bounds for data; a minute for "no MX"; a
  // few seconds for a failure, so a broken zone does not cost a query per request.
  std::chrono::seconds keep{5};
  if (answer.status == dns::Status::ok) {
    keep = std::clamp(std::chrono::seconds(answer.ttl), kMxMemoMinimum, kMxMemoMaximum);
    hosts.reserve(answer.records.size());
    // Only well-formed host names go into the reply: an MX name with a space or ':' in a label
    // would otherwise split Postfix's match list.
    for (const dns::MxRecord& record : answer.records) {
      if (auto host = normalize_domain(record.host)) hosts.push_back(std::move(*host));
    }
  } else if (answer.status == dns::Status::nodata || answer.status == dns::Status::nxdomain) {
    keep = std::chrono::seconds(60);
  } else {
    logger_->warn(
        "MX lookup of {} for the socketmap match list failed ({}{}{}); its \"*.\" "
        "patterns are passed as written, so Postfix defers",
        domain, dns::to_string(answer.status), answer.detail.empty() ? "" : ": ", answer.detail);
  }
  // Bounded: when full, an arbitrary entry goes (it is looked up again when asked for).
  if (mx_memo_.size() >= kMxMemoEntries) mx_memo_.erase(mx_memo_.begin());
  mx_memo_.insert_or_assign(std::move(domain),
                            MxMemo{hosts, std::chrono::steady_clock::now() + keep});
  co_return hosts;
}

asio::awaitable<LookupResult> Backend::refresh(std::string domain) {
  // The frame keeps this Backend alive for the refresh, as run() does for lookups.
  std::shared_ptr<Backend> self = shared_from_this();
  co_return co_await service_.refresh(std::move(domain));
}

asio::awaitable<LookupResult> Backend::lookup(std::string domain) {
  const auto started = std::chrono::steady_clock::now();
  // A stale entry whose policy holds answers at once; its id is re-checked in the background,
  // so a TTL passing never costs a delivery a DNS round trip (RFC 8461 §8.1).
  if (auto hit = answer_from_cache(*store_, domain, system_now(), options_, true, *logger_)) {
    const bool stale = hit->hit == CacheHit::stale;
    if (stale) revalidate(domain);
    activity_->answered(hit->result, stale ? LookupPath::stale : LookupPath::hit,
                        std::chrono::steady_clock::now() - started);
    co_return std::move(hit->result);
  }

  auto pending = std::make_shared<Pending>(executor_, lookup_timeout_);
  lookups_->add();
  asio::co_spawn(executor_, run(shared_from_this(), domain, pending),
                 [pending, lookups = lookups_, logger = logger_](std::exception_ptr error) {
                   if (error) {
                     try {
                       std::rethrow_exception(error);
                     } catch (const std::exception& e) {
                       pending->failure = fmt::format("lookup failed: {}", e.what());
                     } catch (...) {
                       pending->failure = "lookup failed: unknown exception";
                     }
                     logger->error("{}", pending->failure);
                   }
                   pending->done.cancel();
                   lookups->remove();
                 });
  co_await pending->done.async_wait(asio::as_tuple(asio::use_awaitable));
  if (pending->result) {
    activity_->answered(*pending->result, LookupPath::miss,
                        std::chrono::steady_clock::now() - started);
    co_return *pending->result;
  }
  std::string failure = pending->failure;
  if (failure.empty()) {
    failure = fmt::format(
        "lookup did not finish within {} ms; answering from the cache, the "
        "lookup goes on in the background",
        lookup_timeout_.count());
  }
  LookupResult result =
      answer_after_failure(*store_, domain, failure, system_now(), options_, *logger_);
  activity_->answered(result, LookupPath::timeout, std::chrono::steady_clock::now() - started);
  co_return result;
}

}  // namespace mtasts::daemon
