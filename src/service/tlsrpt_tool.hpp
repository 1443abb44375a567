// TLSRPT for the command line (`mtasts tlsrpt show|report|send`): the counts file read and
// reports built or sent from a process of its own, beside a running mtastsd (LMDB allows many
// readers and one writer at a time across processes).
#pragma once

#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "core/tlsrpt_report.hpp"
#include "core/tlsrpt_session.hpp"
#include "service/config.hpp"
#include "service/tlsrpt_reporter.hpp"
#include "service/wiring.hpp"

namespace mtasts {

class TlsrptTool {
 public:
  // Opens the counts file named by the config (tlsrpt_store_path). Errors: store, config.
  [[nodiscard]] static std::expected<std::unique_ptr<TlsrptTool>, Error> open(
      Config config, std::shared_ptr<spdlog::logger> logger, Wiring& wiring = system_wiring());
  ~TlsrptTool();

  [[nodiscard]] std::expected<std::vector<tlsrpt::Day>, Error> days();
  [[nodiscard]] std::expected<std::vector<std::string>, Error> domains(tlsrpt::Day day);
  [[nodiscard]] std::expected<std::vector<tlsrpt::PolicyTally>, Error> tallies(
      tlsrpt::Day day, const std::string& domain);
  // The report as it would be sent (no network); nullopt when nothing was counted.
  [[nodiscard]] std::expected<std::optional<tlsrpt::Report>, Error> report(
      tlsrpt::Day day, const std::string& domain);
  // Sends what is due now, ignoring the send window and backoff (never the at-most-once rule);
  // `day` limits it to one closed day.
  TlsrptSendSummary send(std::optional<tlsrpt::Day> day);

 private:
  struct Parts;
  explicit TlsrptTool(std::unique_ptr<Parts> parts);
  std::unique_ptr<Parts> parts_;
};

}  // namespace mtasts
