#include "service/tlsrpt_reporter.hpp"

#include <algorithm>
#include <chrono>
#include <utility>

#include <fmt/format.h>

#include "core/gzip.hpp"
#include "core/tlsrpt_mail.hpp"
#include "core/tlsrpt_record.hpp"

namespace mtasts {
namespace {

using store::ReportDelivery;

constexpr std::int64_t kDay = 86400;
constexpr std::int64_t kFirstBackoff = 300;
constexpr std::int64_t kMaxBackoff = 4 * 3600;
// The per-domain marker row: the domain's _smtp._tls answer was dealt with for this day (every
// rua finished, or the domain publishes none), so later passes skip its DNS lookup.
constexpr std::string_view kDomainDone = "";

std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t hash = 14695981039346656037ULL;
  for (char c : text) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ULL;
  }
  return hash;
}

UnixTime day_start(tlsrpt::Day day) {
  return std::chrono::duration_cast<std::chrono::seconds>(day.time_since_epoch()).count();
}

std::int64_t backoff_after(std::uint32_t attempts) {
  std::int64_t pause = kFirstBackoff;
  for (std::uint32_t i = 1; i < attempts && pause < kMaxBackoff; ++i) pause *= 2;
  return std::min(pause, kMaxBackoff);
}

bool finished(const ReportDelivery& state) {
  return state.status != ReportDelivery::Status::pending;
}

}  // namespace

TlsrptReporterOptions reporter_options(const Config& config) {
  const TlsrptConfig& settings = config.tlsrpt;
  return TlsrptReporterOptions{.meta = {.organization_name = settings.organization_name,
                                        .contact_info = settings.contact_info,
                                        .submitter = settings.submitter},
                               .mail_from = settings.mail_from,
                               .send_window = settings.send_window,
                               .retry_for = settings.retry_for,
                               .retention_days = settings.retention_days};
}

UnixTime report_due_at(tlsrpt::Day day, std::string_view domain, std::int64_t send_window) {
  const UnixTime midnight = day_start(day) + kDay;
  if (send_window <= 0) return midnight;
  const std::string key = fmt::format("{}/{}", tlsrpt::format_day(day), domain);
  return midnight +
         static_cast<std::int64_t>(fnv1a(key) % static_cast<std::uint64_t>(send_window + 1));
}

TlsrptReporter::TlsrptReporter(store::TlsrptStore& store, dns::Resolver& resolver,
                               report::MailSubmitter& mail, report::HttpsPoster& https,
                               TlsrptReporterOptions options,
                               std::shared_ptr<spdlog::logger> logger)
    : store_(store),
      resolver_(resolver),
      mail_(mail),
      https_(https),
      options_(std::move(options)),
      logger_(std::move(logger)) {}

std::expected<std::optional<tlsrpt::Report>, Error> TlsrptReporter::build(
    tlsrpt::Day day, const std::string& domain) {
  auto tallies = store_.tallies(day, domain);
  if (!tallies) return std::unexpected(tallies.error());
  if (tallies->empty()) return std::nullopt;
  return tlsrpt::build_report(options_.meta, day, domain, *tallies);
}

std::expected<std::size_t, Error> TlsrptReporter::prune(UnixTime now) {
  return store_.prune(tlsrpt::day_of(now) - std::chrono::days(options_.retention_days));
}

asio::awaitable<TlsrptSendSummary> TlsrptReporter::send_due(UnixTime now,
                                                            std::optional<tlsrpt::Day> only_day,
                                                            bool force) {
  TlsrptSendSummary summary;
  const tlsrpt::Day today = tlsrpt::day_of(now);
  auto days = store_.days();
  if (!days) {
    logger_->error("tlsrpt: cannot list days: {}", days.error().reason);
    co_return summary;
  }
  for (const tlsrpt::Day day : *days) {
    if (day >= today) continue;  // a day is reported once it is over (RPT-15)
    if (only_day && day != *only_day) continue;
    auto domains = store_.domains(day);
    if (!domains) {
      logger_->error("tlsrpt: cannot list domains of {}: {}", tlsrpt::format_day(day),
                     domains.error().reason);
      continue;
    }
    for (const std::string& domain : *domains) {
      if (!force && now < report_due_at(day, domain, options_.send_window)) continue;
      co_await send_domain(day, domain, now, force, summary);
    }
  }
  co_return summary;
}

asio::awaitable<void> TlsrptReporter::send_domain(tlsrpt::Day day, const std::string& domain,
                                                  UnixTime now, bool force,
                                                  TlsrptSendSummary& summary) {
  const std::string day_text = tlsrpt::format_day(day);
  auto marker = store_.delivery(day, domain, kDomainDone);
  if (!marker) {
    logger_->error("tlsrpt: {}: {}", domain, marker.error().reason);
    co_return;
  }
  if (*marker && finished(**marker)) co_return;
  // Nothing is retried past retry_for after the day's sending began: the RFC's 24 hours.
  const UnixTime last_try = report_due_at(day, domain, options_.send_window) + options_.retry_for;

  const auto answer = co_await resolver_.txt("_smtp._tls." + domain);
  std::vector<std::string> rua;
  if (answer.status == dns::Status::ok || answer.status == dns::Status::nxdomain ||
      answer.status == dns::Status::nodata) {
    auto record = select_tlsrpt_record(answer.records);
    if (record) rua = record->rua;
    if (rua.empty()) {
      ++summary.no_record;
      summary.lines.push_back(fmt::format("{} {}: no TLSRPT record ({}), nothing sent", day_text,
                                          domain,
                                          record ? "no usable rua" : record.error().reason));
      (void)store_.set_delivery(
          day, domain, kDomainDone,
          ReportDelivery{.status = ReportDelivery::Status::sent, .last_error = "no TLSRPT record"});
      co_return;
    }
  } else {
    // Temporary: ask again on a later pass (until the day's retry period is over).
    summary.lines.push_back(fmt::format("{} {}: _smtp._tls lookup failed ({}), retried later",
                                        day_text, domain, dns::to_string(answer.status)));
    if (now > last_try) {
      (void)store_.set_delivery(day, domain, kDomainDone,
                                ReportDelivery{.status = ReportDelivery::Status::given_up,
                                               .last_error = "TLSRPT record lookup kept failing"});
    }
    co_return;
  }

  auto built = build(day, domain);
  if (!built || !*built) {
    logger_->error("tlsrpt: {} {}: cannot build the report: {}", day_text, domain,
                   built ? "no counts" : built.error().reason);
    co_return;
  }
  const tlsrpt::Report& report = **built;
  const std::string gzipped = gzip_compress(report.json);

  bool all_finished = true;
  for (const std::string& uri : rua) {
    auto stored = store_.delivery(day, domain, uri);
    if (!stored) {
      logger_->error("tlsrpt: {}: {}", domain, stored.error().reason);
      all_finished = false;
      continue;
    }
    ReportDelivery state = stored->value_or(ReportDelivery{});
    if (finished(state)) {
      if (state.status == ReportDelivery::Status::in_flight) {
        // Cut off by a crash or kill: it may have arrived. At most once: never again.
        summary.lines.push_back(
            fmt::format("{} {} -> {}: an attempt was interrupted; not repeated (at most once)",
                        day_text, domain, uri));
      }
      continue;
    }
    if (now > last_try && state.attempts > 0) {
      state.status = ReportDelivery::Status::given_up;
      (void)store_.set_delivery(day, domain, uri, state);
      ++summary.given_up;
      logger_->warn("tlsrpt: {} {} -> {}: given up after {} attempts: {}", day_text, domain, uri,
                    state.attempts, state.last_error);
      continue;
    }
    if (!force && state.next_attempt > now) {
      all_finished = false;
      continue;
    }
    state.status = ReportDelivery::Status::in_flight;
    state.attempts += 1;
    if (state.first_attempt == 0) state.first_attempt = now;
    if (auto saved = store_.set_delivery(day, domain, uri, state); !saved) {
      // Without the in-flight mark a crash could send twice: do not send.
      logger_->error("tlsrpt: {} {} -> {}: not sent: {}", day_text, domain, uri,
                     saved.error().reason);
      all_finished = false;
      continue;
    }
    auto delivered = co_await deliver(uri, domain, report, gzipped, now);
    if (delivered) {
      state.status = ReportDelivery::Status::sent;
      state.last_error.clear();
      ++summary.sent;
      logger_->info("tlsrpt: report {} sent to {}", report.report_id, uri);
      summary.lines.push_back(fmt::format("{} {} -> {}: sent", day_text, domain, uri));
    } else {
      state.last_error = delivered.error().reason;
      ++summary.failed;
      const bool give_up = now + backoff_after(state.attempts) > last_try;
      state.status = give_up ? ReportDelivery::Status::given_up : ReportDelivery::Status::pending;
      state.next_attempt = now + backoff_after(state.attempts);
      if (give_up) ++summary.given_up;
      all_finished = all_finished && give_up;
      logger_->warn("tlsrpt: report {} to {} failed (attempt {}{}): {}", report.report_id, uri,
                    state.attempts, give_up ? ", given up" : "", state.last_error);
      summary.lines.push_back(
          fmt::format("{} {} -> {}: failed: {}", day_text, domain, uri, state.last_error));
    }
    if (auto saved = store_.set_delivery(day, domain, uri, state); !saved) {
      logger_->error("tlsrpt: {} {} -> {}: {}", day_text, domain, uri, saved.error().reason);
    }
  }
  if (all_finished) {
    (void)store_.set_delivery(
        day, domain, kDomainDone,
        ReportDelivery{.status = ReportDelivery::Status::sent, .last_error = {}});
  }
}

asio::awaitable<std::expected<void, Error>> TlsrptReporter::deliver(const std::string& rua,
                                                                    const std::string& domain,
                                                                    const tlsrpt::Report& report,
                                                                    const std::string& gzipped,
                                                                    UnixTime now) {
  constexpr std::string_view kMailto = "mailto:";
  if (rua.starts_with(kMailto)) {
    const std::string to = rua.substr(kMailto.size());
    const tlsrpt::MailEnvelope envelope{.from = options_.mail_from,
                                        .to = to,
                                        .date = now,
                                        .message_id_domain = options_.meta.submitter};
    std::string message =
        tlsrpt::build_report_mail(report, gzipped, domain, options_.meta.submitter, envelope);
    co_return co_await mail_.submit(options_.mail_from, to, std::move(message));
  }
  co_return co_await https_.post(rua, "application/tlsrpt+gzip", gzipped);
}

}  // namespace mtasts
