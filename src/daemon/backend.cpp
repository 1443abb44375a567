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
#include "daemon/metrics.hpp"
#include "service/engine.hpp"

namespace mtasts::daemon {
namespace {

using namespace boost::asio::experimental::awaitable_operators;

Network with_shared_cache(Network network, std::unique_ptr<store::SharedCache> shared) {
  network.shared = std::move(shared);
  return network;
}

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

Backend::Backend(asio::any_io_executor executor, const Config& config,
                 std::shared_ptr<store::SharedStore> store,
                 std::unique_ptr<store::SharedCache> shared_cache, Wiring& wiring,
                 std::shared_ptr<spdlog::logger> logger, std::shared_ptr<Counter> lookups,
                 std::shared_ptr<Activity> activity)
    : executor_(executor),
      store_(std::move(store)),
      logger_(logger),
      lookups_(std::move(lookups)),
      activity_(std::move(activity)),
      service_(executor, *store_,
               with_shared_cache(wiring.network(executor, config, Concurrency::many_lookups),
                                 std::move(shared_cache)),
               system_now, AnswerOptions{service_options(config), true}, std::move(logger), *this) {
}

std::shared_ptr<void> Backend::background_started() {
  lookups_->add();
  return shared_from_this();  // the lookup's frame refers to this Backend's service
}

void Backend::background_finished() {
  lookups_->remove();
}

asio::awaitable<void> Backend::stored(const LookupResult& result) {
  // The client hears the answer once it is in the file (CLI and Exim see it then too).
  co_await committed();
  activity_->stored(result);
}

void Backend::fetched(std::string_view outcome) {
  activity_->metrics.fetch(outcome);
}

void Backend::answered(const Answered& answered, std::chrono::steady_clock::duration took) {
  activity_->answered(answered.result, answered.path, took);
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
  const dns::Answer<dns::MxRecord> answer = co_await service_.resolver().mx(domain);
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

std::string Backend::fleet_metrics() const {
  const FleetTier* fleet = service_.fleet();
  if (fleet == nullptr) return {};
  return render_fleet_metrics(fleet->stats(), fleet->shared_stats());
}

asio::awaitable<LookupResult> Backend::refresh(std::string domain) {
  // The frame keeps this Backend alive for the refresh, as background lookups do.
  std::shared_ptr<Backend> self = shared_from_this();
  co_return co_await service_.refresh(std::move(domain));
}

}  // namespace mtasts::daemon
