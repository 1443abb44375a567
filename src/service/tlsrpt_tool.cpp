#include "service/tlsrpt_tool.hpp"

#include <chrono>
#include <exception>
#include <utility>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include "service/engine.hpp"

namespace mtasts {

struct TlsrptTool::Parts {
  Config config;
  std::shared_ptr<spdlog::logger> logger;
  Wiring& wiring;
  std::unique_ptr<store::TlsrptStore> store;
};

std::expected<std::unique_ptr<TlsrptTool>, Error> TlsrptTool::open(
    Config config, std::shared_ptr<spdlog::logger> logger, Wiring& wiring) {
  auto store = wiring.open_tlsrpt_store(config);
  if (!store) return std::unexpected(store.error());
  auto parts = std::make_unique<Parts>(
      Parts{std::move(config), std::move(logger), wiring, std::move(*store)});
  return std::unique_ptr<TlsrptTool>(new TlsrptTool(std::move(parts)));
}

TlsrptTool::TlsrptTool(std::unique_ptr<Parts> parts) : parts_(std::move(parts)) {}
TlsrptTool::~TlsrptTool() = default;

std::expected<std::vector<tlsrpt::Day>, Error> TlsrptTool::days() {
  return parts_->store->days();
}

std::expected<std::vector<std::string>, Error> TlsrptTool::domains(tlsrpt::Day day) {
  return parts_->store->domains(day);
}

std::expected<std::vector<tlsrpt::PolicyTally>, Error> TlsrptTool::tallies(
    tlsrpt::Day day, const std::string& domain) {
  return parts_->store->tallies(day, domain);
}

std::expected<std::optional<tlsrpt::Report>, Error> TlsrptTool::report(tlsrpt::Day day,
                                                                       const std::string& domain) {
  auto tallies = parts_->store->tallies(day, domain);
  if (!tallies) return std::unexpected(tallies.error());
  if (tallies->empty()) return std::nullopt;
  return tlsrpt::build_report(reporter_options(parts_->config).meta, day, domain, *tallies);
}

TlsrptSendSummary TlsrptTool::send(std::optional<tlsrpt::Day> day) {
  const Config& config = parts_->config;
  asio::io_context io;
  Network network = parts_->wiring.network(io.get_executor(), config, Concurrency::one_lookup);
  ReportSenders senders =
      parts_->wiring.report_senders(io.get_executor(), *network.resolver, config);
  TlsrptReporter reporter(*parts_->store, *network.resolver, *senders.mail, *senders.https,
                          reporter_options(config), parts_->logger);
  const UnixTime now = system_now();
  TlsrptSendSummary summary;
  std::exception_ptr failure;
  asio::co_spawn(io, reporter.send_due(now, day, true),
                 [&](std::exception_ptr error, TlsrptSendSummary result) {
                   failure = error;
                   summary = std::move(result);
                 });
  io.run();
  if (failure) std::rethrow_exception(failure);
  return summary;
}

}  // namespace mtasts
