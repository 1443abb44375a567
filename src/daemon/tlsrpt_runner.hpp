// mtastsd's TLSRPT side (design §7): the datagram socket Postfix reports to, the `tlsrpt`
// requests of Exim's event_action, the collector that counts both into the TLSRPT file, and the
// reporter that sends each closed day's reports (docs/tlsrpt.md).
#pragma once

#include <atomic>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/logger.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "daemon/datagram_receiver.hpp"
#include "service/config.hpp"
#include "service/tlsrpt_collector.hpp"
#include "service/tlsrpt_reporter.hpp"
#include "service/wiring.hpp"

namespace mtasts::daemon {

class TlsrptRunner {
 public:
  // Binds the datagram socket (before privileges are dropped). Nothing else is opened yet.
  static std::expected<std::unique_ptr<TlsrptRunner>, std::string> bind(asio::io_context& io,
                                                                        const Config& config,
                                                                        Wiring& wiring);
  ~TlsrptRunner();
  TlsrptRunner(const TlsrptRunner&) = delete;
  TlsrptRunner& operator=(const TlsrptRunner&) = delete;

  // Opens the counts file and starts collecting and (tlsrpt.send) reporting. After privileges
  // are dropped, so the file belongs to the daemon's user.
  std::expected<void, std::string> start(std::shared_ptr<spdlog::logger> logger);
  // Stops receiving, commits what was collected, stops reporting.
  void stop();

  // The cache entry of a domain, if there is one (the daemon's store).
  using CachedEntry = std::function<std::optional<CacheEntry>(const std::string& domain)>;
  // An Exim `tlsrpt …` request line: "ok", or an "error: …" answer. `cached` completes the
  // session with the policy that applied to the parsed domain.
  std::string mta_report(std::string_view line, const CachedEntry& cached);

  // Prometheus lines of the collector and the reporter.
  [[nodiscard]] std::string metrics() const;

 private:
  TlsrptRunner(asio::io_context& io, Config config, Wiring& wiring,
               std::unique_ptr<DatagramReceiver> receiver);
  asio::awaitable<void> report_loop();
  asio::awaitable<void> complete_tlsa(tlsrpt::Session session);

  asio::io_context& io_;
  Config config_;
  Wiring& wiring_;
  std::shared_ptr<spdlog::logger> logger_;
  std::unique_ptr<DatagramReceiver> receiver_;
  std::unique_ptr<store::TlsrptStore> store_;
  std::unique_ptr<TlsrptCollector> collector_;
  Network network_;  // the reporter's resolver
  ReportSenders senders_;
  std::unique_ptr<TlsrptReporter> reporter_;
  std::unique_ptr<asio::steady_timer> timer_;
  bool stopping_ = false;
  std::atomic<std::uint64_t> oversized_{0};
  std::atomic<std::uint64_t> rejected_requests_{0};
  std::uint64_t sent_ = 0;
  std::uint64_t failed_ = 0;
  std::uint64_t given_up_ = 0;
};

}  // namespace mtasts::daemon
