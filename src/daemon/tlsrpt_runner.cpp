#include "daemon/tlsrpt_runner.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/domain.hpp"
#include "core/exim_request.hpp"
#include "core/tlsrpt_mta_request.hpp"
#include "service/engine.hpp"

namespace mtasts::daemon {
namespace {

// How often the reporter looks for due deliveries (each domain has its own point in the send
// window, failed ones their backoff).
constexpr std::chrono::seconds kReportPass{300};
constexpr std::chrono::seconds kFirstPass{5};

}  // namespace

std::expected<std::unique_ptr<TlsrptRunner>, std::string> TlsrptRunner::bind(asio::io_context& io,
                                                                             const Config& config,
                                                                             Wiring& wiring) {
  std::unique_ptr<DatagramReceiver> receiver;
  if (!config.tlsrpt.socket.empty()) {
    auto bound = DatagramReceiver::bind(config);
    if (!bound) return std::unexpected(bound.error());
    receiver = std::move(*bound);
  }
  return std::unique_ptr<TlsrptRunner>(new TlsrptRunner(io, config, wiring, std::move(receiver)));
}

TlsrptRunner::TlsrptRunner(asio::io_context& io, Config config, Wiring& wiring,
                           std::unique_ptr<DatagramReceiver> receiver)
    : io_(io), config_(std::move(config)), wiring_(wiring), receiver_(std::move(receiver)) {}

TlsrptRunner::~TlsrptRunner() {
  stop();
}

std::expected<void, std::string> TlsrptRunner::start(std::shared_ptr<spdlog::logger> logger) {
  logger_ = std::move(logger);
  auto opened = wiring_.open_tlsrpt_store(config_);
  if (!opened) {
    return std::unexpected(
        fmt::format("tlsrpt store {}: {}", tlsrpt_store_path(config_), opened.error().reason));
  }
  store_ = std::move(*opened);
  collector_ =
      std::make_unique<TlsrptCollector>(*store_, logger_, config_.tlsrpt.queue_limit, system_now);
  collector_->start();
  if (receiver_) {
    receiver_->start([collector = collector_.get()](
                         std::string datagram) { collector->offer_datagram(std::move(datagram)); },
                     [this] { oversized_.fetch_add(1, std::memory_order_relaxed); });
    logger_->info("tlsrpt: collecting from unix-dgram:{} and Exim `tlsrpt` requests into {}",
                  receiver_->path(), store_->path());
  } else {
    logger_->info("tlsrpt: collecting from Exim `tlsrpt` requests into {}", store_->path());
  }
  // The reporter's _smtp._tls lookups, and the TLSA records of DANE sessions from Exim.
  network_ = wiring_.network(io_.get_executor(), config_, Concurrency::one_lookup);
  if (config_.tlsrpt.send) {
    senders_ = wiring_.report_senders(io_.get_executor(), *network_.resolver, config_);
    reporter_ =
        std::make_unique<TlsrptReporter>(*store_, *network_.resolver, *senders_.mail,
                                         *senders_.https, reporter_options(config_), logger_);
    timer_ = std::make_unique<asio::steady_timer>(io_);
    asio::co_spawn(io_, report_loop(), asio::detached);
    logger_->info("tlsrpt: reports of each UTC day sent within {} s after midnight as {}",
                  config_.tlsrpt.send_window, config_.tlsrpt.submitter);
  } else {
    logger_->info("tlsrpt: sending is off (tlsrpt.send = false)");
  }
  return {};
}

void TlsrptRunner::stop() {
  stopping_ = true;
  if (timer_) timer_->cancel();
  if (receiver_) receiver_->stop();
  if (collector_) collector_->stop();
}

asio::awaitable<void> TlsrptRunner::report_loop() {
  std::chrono::seconds pause = kFirstPass;
  while (!stopping_) {
    timer_->expires_after(pause);
    auto [ec] = co_await timer_->async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec || stopping_) co_return;
    pause = kReportPass;
    const UnixTime now = system_now();
    if (auto pruned = reporter_->prune(now); pruned && *pruned > 0) {
      logger_->info("tlsrpt: {} day(s) older than {} days pruned", *pruned,
                    config_.tlsrpt.retention_days);
    } else if (!pruned) {
      logger_->error("tlsrpt: prune: {}", pruned.error().reason);
    }
    const TlsrptSendSummary summary = co_await reporter_->send_due(now, std::nullopt, false);
    sent_ += summary.sent;
    failed_ += summary.failed;
    given_up_ += summary.given_up;
  }
}

std::string TlsrptRunner::mta_report(std::string_view line, const CachedEntry& cached) {
  auto request = parse_tlsrpt_request(line);
  if (!request) {
    rejected_requests_.fetch_add(1, std::memory_order_relaxed);
    return exim_error_answer(request.error());
  }
  tlsrpt::Session session =
      session_from_mta_report(*request, cached(request->domain), system_now());
  if (!collector_) return exim_error_answer("tlsrpt: not started");
  const bool dane = !session.policies.empty() &&
                    session.policies.front().policy.type == tlsrpt::PolicyType::tlsa &&
                    session.policies.front().policy.policy_strings.empty();
  if (dane && !stopping_) {
    // RFC 8460 §4.5: a tlsa policy-string is the TLSA RRset. The cache keeps only each host's
    // DANE state, so the records are looked up (from the resolver's cache, usually) before the
    // session is counted; Exim has its answer already.
    asio::co_spawn(io_, complete_tlsa(std::move(session)), asio::detached);
    return "ok";
  }
  if (!collector_->offer_session(std::move(session))) {
    return exim_error_answer("tlsrpt: the collector's queue is full; session not counted");
  }
  return "ok";
}

asio::awaitable<void> TlsrptRunner::complete_tlsa(tlsrpt::Session session) {
  tlsrpt::PolicyKey& policy = session.policies.front().policy;
  const auto answer = co_await network_.resolver->tlsa("_25._tcp." + policy.domain);
  if (answer.status == dns::Status::ok && answer.security == dns::Security::secure) {
    for (const dns::TlsaRecord& record : answer.records) {
      policy.policy_strings.push_back(
          tlsa_policy_string(record.usage, record.selector, record.matching_type, record.data));
    }
    std::sort(policy.policy_strings.begin(), policy.policy_strings.end());
  }
  if (collector_) collector_->offer_session(std::move(session));
}

std::string TlsrptRunner::metrics() const {
  if (!collector_) return {};
  const TlsrptCollectorStats stats = collector_->stats();
  std::string out;
  auto counter = [&out](std::string_view name, std::string_view help, std::uint64_t value,
                        std::string_view labels = {}) {
    out += fmt::format("# HELP {} {}\n# TYPE {} counter\n{}{} {}\n", name, help, name, name, labels,
                       value);
  };
  counter("mtasts_tlsrpt_datagrams_total", "TLSRPT datagrams received from Postfix",
          stats.datagrams);
  counter("mtasts_tlsrpt_requests_total", "TLSRPT session reports received from Exim",
          stats.requests);
  counter("mtasts_tlsrpt_sessions_stored_total", "TLSRPT sessions committed to the counts",
          stats.stored);
  out += fmt::format(
      "# HELP mtasts_tlsrpt_dropped_total TLSRPT session reports dropped, by reason\n"
      "# TYPE mtasts_tlsrpt_dropped_total counter\n"
      "mtasts_tlsrpt_dropped_total{{reason=\"malformed\"}} {}\n"
      "mtasts_tlsrpt_dropped_total{{reason=\"oversized\"}} {}\n"
      "mtasts_tlsrpt_dropped_total{{reason=\"bad_request\"}} {}\n"
      "mtasts_tlsrpt_dropped_total{{reason=\"queue_full\"}} {}\n"
      "mtasts_tlsrpt_dropped_total{{reason=\"store_failed\"}} {}\n",
      stats.malformed, oversized_.load(), rejected_requests_.load(), stats.queue_full,
      stats.store_failed);
  out += fmt::format(
      "# HELP mtasts_tlsrpt_reports_total TLSRPT report deliveries, by outcome\n"
      "# TYPE mtasts_tlsrpt_reports_total counter\n"
      "mtasts_tlsrpt_reports_total{{outcome=\"sent\"}} {}\n"
      "mtasts_tlsrpt_reports_total{{outcome=\"failed\"}} {}\n"
      "mtasts_tlsrpt_reports_total{{outcome=\"given_up\"}} {}\n",
      sent_, failed_, given_up_);
  return out;
}

}  // namespace mtasts::daemon
