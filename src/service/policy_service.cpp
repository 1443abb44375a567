#include "service/policy_service.hpp"

#include <algorithm>
#include <exception>
#include <limits>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/policy.hpp"
#include "core/text_quote.hpp"
#include "service/cached_answers.hpp"
#include "service/dns_result.hpp"

namespace mtasts {
namespace {

using namespace boost::asio::experimental::awaitable_operators;

// The admin made DANE mandatory for this domain (dane_required, DANE-15).
bool is_dane_required(const ServiceOptions& options, std::string_view domain) {
  return std::find(options.dane_required.begin(), options.dane_required.end(), domain) !=
         options.dane_required.end();
}

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
                             ServiceOptions options, std::shared_ptr<spdlog::logger> logger,
                             FetchListener on_fetch, store::SharedCache* shared)
    : executor_(std::move(executor)),
      store_(store),
      resolver_(resolver),
      fetcher_(fetcher),
      clock_(std::move(clock)),
      options_(options),
      logger_(std::move(logger)),
      on_fetch_(std::move(on_fetch)) {
  if (shared) {
    fleet_ = std::make_unique<FleetTier>(executor_, *shared, options_.timing, clock_, logger_);
  }
}

std::string_view to_string(AnswerSource source) {
  switch (source) {
    case AnswerSource::cache:
      return "cache";
    case AnswerSource::network:
      return "network";
    case AnswerSource::shared:
      return "shared";
  }
  return "cache";
}

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
  if (!force) {
    if (auto hit = usable_answer(cached, domain, now, options_, false)) {
      co_return std::move(hit->result);
    }
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

  // A fleet member asks the shared cache before the network (design §8).
  FleetStep fleet;
  if (fleet_ && (force || !is_fresh(cached, now))) {
    fleet = co_await fleet_->before_network(domain, cached, force);
    if (fleet.adopted) {
      std::optional<DaneState> dane = cached ? cached->dane : std::nullopt;
      cached = std::move(*fleet.adopted);
      cached->dane = std::move(dane);  // never from the shared cache
    } else {
      cached = std::move(fleet.local);  // with a shared fetch backoff folded in
    }
  }
  const bool adopted = fleet.adopted.has_value();
  const bool sts_needed = !adopted && (force || !is_fresh(cached, now));
  const bool dane_needed =
      options_.dane && (force || !dane_is_fresh(cached, now, options_, domain));
  CacheEntry entry = cached ? *cached : CacheEntry{};
  std::optional<Answer> sts_answer;
  if (sts_needed && dane_needed) {
    auto [decision, dane] =
        co_await (check_sts(domain, cached, fleet.candidate) && check_dane(domain));
    entry = std::move(decision.entry);
    sts_answer = apply_strict(decision.answer, entry, options_.strict);
    entry.dane = std::move(dane);
  } else if (sts_needed) {
    Decision decision = co_await check_sts(domain, cached, fleet.candidate);
    entry = std::move(decision.entry);
    sts_answer = apply_strict(decision.answer, entry, options_.strict);
    if (!options_.dane) entry.dane.reset();
  } else if (dane_needed) {
    entry.dane = co_await check_dane(domain);
  } else if (!options_.dane) {
    // DANE is off: a state cached while it was on must not answer any more (dane_is_fresh).
    entry.dane.reset();
  }
  if (entry.dane && entry.dane->verdict == DaneVerdict::failed) {
    logger_->warn("{}: DANE lookup failed, holding mail: {}", domain, entry.dane->reason);
  }

  std::optional<CacheEntry> stored = entry;
  if (auto saved = store_.save(domain, entry); !saved) {
    logger_->error("cache write for {} failed, answering without caching: {}", domain,
                   saved.error().reason);
  }
  if (fleet_ && sts_needed) fleet_->after_network(domain, entry, fleet);
  Answer answer = sts_answer ? apply_dane(std::move(*sts_answer), entry)
                             : answer_from_entry(entry, clock_(), options_.strict);
  const AnswerSource source =
      adopted && !dane_needed ? AnswerSource::shared : AnswerSource::network;
  LookupResult result{domain, std::move(answer), std::move(stored), source};
  flight->result = result;
  co_return result;
}

asio::awaitable<Decision> PolicyService::check_sts(std::string domain,
                                                   std::optional<CacheEntry> cached,
                                                   std::optional<CachedPolicy> candidate) {
  auto [sts_answer, tlsrpt_answer] =
      co_await (resolver_.txt("_mta-sts." + domain) && resolver_.txt("_smtp._tls." + domain));
  const UnixTime checked = clock_();
  TxtOutcome txt = sts_outcome(sts_answer, domain);
  TlsrptOutcome tlsrpt = tlsrpt_outcome(tlsrpt_answer, domain);

  FetchOutcome fetch;
  const bool fetch_needed = should_fetch(cached, txt, checked, options_.timing);
  // The shared cache's policy under the id our own TXT lookup shows: another member fetched it.
  const bool from_shared = fetch_needed && candidate && txt && txt->id == candidate->id;
  if (from_shared) {
    fetch = FetchedPolicy{candidate->policy, candidate->text};
  } else if (fetch_needed) {
    auto body = co_await fetcher_.fetch(domain);
    std::string_view outcome = "ok";
    if (!body) {
      outcome = to_string(body.error().category);
      fetch = std::expected<FetchedPolicy, Error>(std::unexpected(body.error()));
    } else if (auto policy = parse_policy(*body)) {
      fetch = FetchedPolicy{std::move(*policy), std::move(*body)};
    } else {
      // A body that is not a valid policy counts as policy_syntax, whatever the parser's reason.
      outcome = to_string(ErrorCategory::policy_syntax);
      Error error = policy.error();
      error.reason = fmt::format("policy from mta-sts.{}: {}", domain, error.reason);
      fetch = std::expected<FetchedPolicy, Error>(std::unexpected(std::move(error)));
    }
    if (on_fetch_) on_fetch_(outcome);
  }

  const UnixTime decided = clock_();
  // The id stays current for the TXT answer's TTL (RFC 8461 §8.1); the resolver's cache
  // counts it down, so a re-check served from there keeps the record's own expiry.
  const std::optional<std::uint32_t> txt_ttl =
      sts_answer.status == dns::Status::ok ? std::optional(sts_answer.ttl) : std::nullopt;
  Decision decision = decide(cached, txt, tlsrpt, fetch, decided, options_.timing, txt_ttl);
  decision.entry.txt_dnssec = dns::to_string(sts_answer.security);
  if (from_shared && decision.entry.policy && decision.entry.policy->id == candidate->id) {
    // Its life runs from when it was fetched, not from when it reached us.
    decision.entry.policy->fetched_at = candidate->fetched_at;
    decision.entry.policy->expires_at = candidate->expires_at;
    decision.entry.next_check = std::min(decision.entry.next_check, candidate->expires_at);
    if (fleet_) fleet_->confirmed();
    logger_->info("{}: policy id {} mode {} taken from the shared cache: our TXT lookup shows it",
                  domain, candidate->id, to_string(candidate->policy.mode));
  }
  for (const std::string& warning : decision.warnings) logger_->warn("{}: {}", domain, warning);
  if (fetch && !from_shared) {
    if (fetch->has_value()) {
      logger_->info("{}: fetched policy id {} mode {} max_age {}", domain, txt->id,
                    to_string((*fetch)->policy.mode), (*fetch)->policy.max_age);
    } else {
      logger_->info("{}: policy fetch failed: {}", domain, fetch->error().reason);
    }
  }
  co_return decision;
}

// The hosts of one domain are examined concurrently; `done` is cancelled when the last is in.
struct DaneHostChecks {
  DaneHostChecks(asio::any_io_executor executor, std::size_t count)
      : done(executor, asio::steady_timer::time_point::max()), hosts(count), left(count) {}
  asio::steady_timer done;
  std::vector<DaneHost> hosts;
  std::uint32_t ttl = std::numeric_limits<std::uint32_t>::max();
  std::size_t left;
};

namespace {

asio::awaitable<void> check_dane_host(dns::Resolver& resolver, MxHostName host,
                                      std::shared_ptr<DaneHostChecks> checks, std::size_t index) {
  // RFC 7672 §2.2.2: the address records first; TLSA only for a host whose addresses are secure.
  auto addresses = co_await resolver.addresses(host.name);
  std::uint32_t ttl = addresses.ttl;
  std::optional<DaneHost> result = dane_address_step(host, dns_result(addresses));
  if (!result) {
    auto tlsa = co_await resolver.tlsa("_25._tcp." + host.name);
    std::vector<TlsaParams> records;
    for (const dns::TlsaRecord& record : tlsa.records) {
      records.push_back(
          TlsaParams{record.usage, record.selector, record.matching_type, record.data.size()});
    }
    result = dane_tlsa_step(host, dns_result(tlsa), records);
    ttl = std::min(ttl, tlsa.ttl);
  }
  checks->hosts[index] = std::move(*result);
  checks->ttl = std::min(checks->ttl, ttl);
}

}  // namespace

asio::awaitable<DaneState> PolicyService::check_dane(std::string domain) {
  const bool required = is_dane_required(options_, domain);
  auto mx = co_await resolver_.mx(domain);
  std::vector<MxHostName> names;
  for (const dns::MxRecord& record : mx.records) {
    names.push_back(MxHostName{record.preference, record.host});
  }
  DaneMxStep step =
      dane_mx_step(domain, dns_result(mx), std::move(names), clock_(), options_.dane_timing);
  if (step.final_state) {
    step.final_state->required = required;
    co_return std::move(*step.final_state);
  }

  auto checks = std::make_shared<DaneHostChecks>(executor_, step.hosts.size());
  for (std::size_t i = 0; i < step.hosts.size(); ++i) {
    checks->hosts[i] = DaneHost{step.hosts[i].preference, step.hosts[i].name, DaneHostState::failed,
                                "the lookup did not finish"};
    asio::co_spawn(executor_, check_dane_host(resolver_, step.hosts[i], checks, i),
                   [checks](std::exception_ptr) {
                     // A host whose check threw keeps its "failed" state: never "no DANE".
                     if (--checks->left == 0) checks->done.cancel();
                   });
  }
  co_await checks->done.async_wait(asio::as_tuple(asio::use_awaitable));
  DaneState state = dane_verdict(std::move(checks->hosts), step.truncated,
                                 std::min(checks->ttl, mx.ttl), clock_(), options_.dane_timing);
  state.required = required;
  co_return state;
}

std::optional<DaneState> dane_fallback(const CacheEntry& entry, UnixTime now,
                                       const ServiceOptions& options, std::string_view domain,
                                       std::string_view failure) {
  if (!options.dane) return std::nullopt;
  if (dane_is_fresh(entry, now, options, domain)) return entry.dane;
  DaneState state;
  state.verdict = DaneVerdict::failed;
  state.reason = fmt::format("DANE check did not finish: {}", failure);
  state.checked_at = now;
  state.expires_at = now;  // never answers by itself: the next lookup tries again
  state.required = is_dane_required(options, domain);
  return state;
}

bool dane_is_fresh(const std::optional<CacheEntry>& cached, UnixTime now,
                   const ServiceOptions& options, std::string_view domain) {
  // DANE off: only an entry still holding a state from when it was on needs looking at (the
  // lookup drops the state without any DNS query).
  if (!options.dane) return !cached || !cached->dane;
  if (!cached || !cached->dane || now >= cached->dane->expires_at) return false;
  const bool required = is_dane_required(options, domain);
  return cached->dane->required == required;
}

}  // namespace mtasts
