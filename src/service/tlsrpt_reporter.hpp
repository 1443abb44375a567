// The TLSRPT reporter (RFC 8460 §4, §5; design §7): for each policy domain with sessions on a
// closed UTC day, looks up `_smtp._tls.<domain>` fresh, builds the report from the stored counts
// and delivers it to every rua, by mail through the local MTA or by HTTPS POST.
//
// Delivery rules:
// - a report goes at most once per (day, domain, rua): the attempt is recorded (committed) as
//   in flight before it starts, and an attempt found in flight after a crash is never repeated;
// - a failed rua is retried with exponential backoff for `retry_for` after its first attempt
//   (RPT-31: up to 24 hours), then given up;
// - sending starts after midnight UTC, each domain at its own point in `send_window`
//   (RPT-15: a random-looking delay, stable for a domain and day so restarts keep it).
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "adapters/dns/resolver.hpp"
#include "adapters/report/report_sender.hpp"
#include "adapters/store/tlsrpt_store.hpp"
#include "core/decide.hpp"
#include "core/tlsrpt_report.hpp"
#include "core/tlsrpt_session.hpp"
#include "service/asio.hpp"
#include "service/config.hpp"

namespace mtasts {

struct TlsrptReporterOptions {
  tlsrpt::ReportMeta meta;
  std::string mail_from;  // envelope sender and From: of report mail
  std::int64_t send_window = 14400;
  std::int64_t retry_for = 86400;
  std::int64_t retention_days = 14;
};

// The reporter's options from [tlsrpt] (mtastsd and `mtasts tlsrpt` build it the same way).
[[nodiscard]] TlsrptReporterOptions reporter_options(const Config& config);

// What one pass did, for logs, metrics and the CLI.
struct TlsrptSendSummary {
  std::uint64_t sent = 0;          // deliveries accepted by a rua
  std::uint64_t failed = 0;        // attempts that failed (retried later unless given up)
  std::uint64_t given_up = 0;      // ruas abandoned after retry_for
  std::uint64_t no_record = 0;     // domains without a usable _smtp._tls record (nothing to send)
  std::vector<std::string> lines;  // one line per attempt or decision, for the CLI
};

class TlsrptReporter {
 public:
  // Everything passed must outlive the reporter.
  TlsrptReporter(store::TlsrptStore& store, dns::Resolver& resolver, report::MailSubmitter& mail,
                 report::HttpsPoster& https, TlsrptReporterOptions options,
                 std::shared_ptr<spdlog::logger> logger);

  // The report of `domain` on `day` from the stored counts (no network); nullopt when nothing
  // was counted for it.
  [[nodiscard]] std::expected<std::optional<tlsrpt::Report>, Error> build(
      tlsrpt::Day day, const std::string& domain);

  // Attempts every delivery that is due at `now`: closed days only, each domain after its point
  // in the send window, each failed rua after its backoff. `force` (the CLI's `send`) skips the
  // window and the backoff, never the at-most-once rule. `only_day` limits the pass to one day.
  asio::awaitable<TlsrptSendSummary> send_due(UnixTime now, std::optional<tlsrpt::Day> only_day,
                                              bool force);

  // Removes counts and delivery states older than retention_days before `now`'s day.
  std::expected<std::size_t, Error> prune(UnixTime now);

 private:
  asio::awaitable<void> send_domain(tlsrpt::Day day, const std::string& domain, UnixTime now,
                                    bool force, TlsrptSendSummary& summary);
  asio::awaitable<std::expected<void, Error>> deliver(const std::string& rua,
                                                      const std::string& domain,
                                                      const tlsrpt::Report& report,
                                                      const std::string& gzipped, UnixTime now);

  store::TlsrptStore& store_;
  dns::Resolver& resolver_;
  report::MailSubmitter& mail_;
  report::HttpsPoster& https_;
  TlsrptReporterOptions options_;
  std::shared_ptr<spdlog::logger> logger_;
};

// When `domain`'s report for `day` is first due: midnight UTC after the day plus a stable
// offset within [0, send_window].
[[nodiscard]] UnixTime report_due_at(tlsrpt::Day day, std::string_view domain,
                                     std::int64_t send_window);

}  // namespace mtasts
