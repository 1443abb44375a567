#include "service/policy_service.hpp"

#include <exception>
#include <limits>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/policy.hpp"
#include "core/text_quote.hpp"

namespace mtasts {
namespace {

using namespace boost::asio::experimental::awaitable_operators;

bool cannot_tell(const dns::Answer<std::string>& answer) {
  return answer.status == dns::Status::servfail || answer.status == dns::Status::timeout ||
         answer.status == dns::Status::error;
}

// Three outcomes, never two (style §2.5): records, definitely none, or cannot tell now.
std::expected<std::vector<std::string>, Error> txt_records(const dns::Answer<std::string>& answer,
                                                           const std::string& name) {
  if (answer.security == dns::Security::bogus) {
    return std::unexpected(
        Error{ErrorCategory::dns_bogus,
              fmt::format("DNSSEC validation of {} TXT failed: {}", name, answer.detail)});
  }
  if (cannot_tell(answer)) {
    return std::unexpected(
        Error{ErrorCategory::dns_temporary,
              fmt::format("{} TXT lookup: {}{}{}", name, dns::to_string(answer.status),
                          answer.detail.empty() ? "" : ": ", answer.detail)});
  }
  if (answer.status != dns::Status::ok) {
    return std::unexpected(
        Error{ErrorCategory::no_record,
              fmt::format("no TXT record at {} ({})", name, dns::to_string(answer.status))});
  }
  return answer.records;
}

TxtOutcome sts_outcome(const dns::Answer<std::string>& answer, const std::string& domain) {
  auto records = txt_records(answer, "_mta-sts." + domain);
  if (!records) return std::unexpected(records.error());
  return select_sts_record(*records);
}

TlsrptOutcome tlsrpt_outcome(const dns::Answer<std::string>& answer, const std::string& domain) {
  auto records = txt_records(answer, "_smtp._tls." + domain);
  if (!records) return std::expected<TlsrptRecord, Error>(std::unexpected(records.error()));
  return select_tlsrpt_record(*records);
}

}  // namespace

// One lookup in flight per domain: later callers wait on `done` (a timer that never expires by
// itself; the owner cancels it when the result is in).
struct PolicyService::InFlight {
  explicit InFlight(asio::any_io_executor executor)
      : done(executor, asio::steady_timer::time_point::max()) {}
  asio::steady_timer done;
  std::optional<LookupResult> result;
};

PolicyService::PolicyService(asio::any_io_executor executor, store::PolicyStore& store,
                             dns::Resolver& resolver, https::PolicyFetcher& fetcher, Clock clock,
                             ServiceOptions options, std::shared_ptr<spdlog::logger> logger)
    : executor_(std::move(executor)),
      store_(store),
      resolver_(resolver),
      fetcher_(fetcher),
      clock_(std::move(clock)),
      options_(options),
      logger_(std::move(logger)) {}

asio::awaitable<LookupResult> PolicyService::lookup(std::string domain) {
  return run_lookup(std::move(domain), false);
}

asio::awaitable<LookupResult> PolicyService::refresh(std::string domain) {
  return run_lookup(std::move(domain), true);
}

asio::awaitable<LookupResult> PolicyService::run_lookup(std::string domain, bool force) {
  if (auto it = in_flight_.find(domain); it != in_flight_.end()) {
    std::shared_ptr<InFlight> flight = it->second;
    co_await flight->done.async_wait(asio::as_tuple(asio::use_awaitable));
    if (flight->result) co_return *flight->result;
    // The owner failed without a result; fall through and try ourselves.
  }

  const UnixTime now = clock_();
  std::optional<CacheEntry> cached;
  if (auto loaded = store_.load(domain)) {
    cached = std::move(*loaded);
  } else {
    logger_->error("cache read for {} failed, looking it up afresh: {}", domain,
                   loaded.error().reason);
  }
  if (!force && is_fresh(cached, now)) {
    co_return LookupResult{domain, answer_from_entry(*cached, now, options_.strict), cached,
                           AnswerSource::cache};
  }

  auto flight = std::make_shared<InFlight>(executor_);
  in_flight_[domain] = flight;
  // Whatever happens below, waiters are released and the slot is freed.
  struct Release {
    PolicyService& service;
    const std::string& domain;
    std::shared_ptr<InFlight> flight;
    ~Release() {
      if (auto it = service.in_flight_.find(domain);
          it != service.in_flight_.end() && it->second == flight) {
        service.in_flight_.erase(it);
      }
      flight->done.cancel();
    }
  } release{*this, domain, flight};

  auto [sts_answer, tlsrpt_answer] =
      co_await (resolver_.txt("_mta-sts." + domain) && resolver_.txt("_smtp._tls." + domain));
  const UnixTime checked = clock_();
  TxtOutcome txt = sts_outcome(sts_answer, domain);
  TlsrptOutcome tlsrpt = tlsrpt_outcome(tlsrpt_answer, domain);

  FetchOutcome fetch;
  if (should_fetch(cached, txt, checked, options_.timing)) {
    auto body = co_await fetcher_.fetch(domain);
    if (!body) {
      fetch = std::expected<FetchedPolicy, Error>(std::unexpected(body.error()));
    } else if (auto policy = parse_policy(*body)) {
      fetch = FetchedPolicy{std::move(*policy), std::move(*body)};
    } else {
      Error error = policy.error();
      error.reason = fmt::format("policy from mta-sts.{}: {}", domain, error.reason);
      fetch = std::expected<FetchedPolicy, Error>(std::unexpected(std::move(error)));
    }
  }

  const UnixTime decided = clock_();
  Decision decision = decide(cached, txt, tlsrpt, fetch, decided, options_.timing);
  decision.entry.txt_dnssec = dns::to_string(sts_answer.security);
  for (const std::string& warning : decision.warnings) logger_->warn("{}: {}", domain, warning);
  if (fetch) {
    if (fetch->has_value()) {
      logger_->info("{}: fetched policy id {} mode {} max_age {}", domain, txt->id,
                    to_string((*fetch)->policy.mode), (*fetch)->policy.max_age);
    } else {
      logger_->info("{}: policy fetch failed: {}", domain, fetch->error().reason);
    }
  }

  std::optional<CacheEntry> stored = decision.entry;
  if (auto saved = store_.save(domain, decision.entry); !saved) {
    logger_->error("cache write for {} failed, answering without caching: {}", domain,
                   saved.error().reason);
  }
  LookupResult result{domain, apply_strict(decision.answer, decision.entry, options_.strict),
                      std::move(stored), AnswerSource::network};
  flight->result = result;
  co_return result;
}

}  // namespace mtasts
