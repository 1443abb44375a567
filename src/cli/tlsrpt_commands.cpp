#include "cli/tlsrpt_commands.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/domain.hpp"
#include "core/gzip.hpp"
#include "service/engine.hpp"
#include "service/tlsrpt_tool.hpp"

namespace mtasts::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitBadInput = 65;
constexpr int kExitCantCreate = 73;
constexpr int kExitCache = 74;
constexpr int kExitTempFail = 75;

int fail(int code, std::string_view message) {
  fmt::print(stderr, "mtasts: {}\n", message);
  return code;
}

tlsrpt::Day today() {
  return tlsrpt::day_of(system_now());
}

nlohmann::json tally_json(const tlsrpt::PolicyTally& tally) {
  nlohmann::json failures = nlohmann::json::array();
  for (const auto& [key, count] : tally.failures) {
    failures.push_back({{"result-type", std::string(tlsrpt::to_string(key.result))},
                        {"sending-mta-ip", key.sending_mta_ip},
                        {"receiving-mx-hostname", key.receiving_mx_hostname},
                        {"receiving-ip", key.receiving_ip},
                        {"failure-reason-code", key.failure_reason_code},
                        {"failed-session-count", count}});
  }
  return {{"policy-type", std::string(tlsrpt::to_string(tally.policy.type))},
          {"policy-domain", tally.policy.domain},
          {"policy-string", tally.policy.policy_strings},
          {"mx-host", tally.policy.mx_hosts},
          {"successful", tally.successful},
          {"failed", tally.failed},
          {"failure-details", std::move(failures)}};
}

void print_tally(const tlsrpt::PolicyTally& tally) {
  fmt::print("  {} {}: {} successful, {} failed\n", tlsrpt::to_string(tally.policy.type),
             tally.policy.domain, tally.successful, tally.failed);
  for (const auto& [key, count] : tally.failures) {
    fmt::print("    {} x{}: mx {} ({}) from {}{}\n", tlsrpt::to_string(key.result), count,
               key.receiving_mx_hostname.empty() ? "-" : key.receiving_mx_hostname,
               key.receiving_ip.empty() ? "-" : key.receiving_ip,
               key.sending_mta_ip.empty() ? "-" : key.sending_mta_ip,
               key.failure_reason_code.empty() ? "" : ": " + key.failure_reason_code);
  }
}

int show(TlsrptTool& tool, const std::vector<tlsrpt::Day>& days, const std::string& only_domain,
         bool json) {
  nlohmann::json all = nlohmann::json::object();
  for (const tlsrpt::Day day : days) {
    auto domains = tool.domains(day);
    if (!domains) return fail(kExitCache, domains.error().reason);
    for (const std::string& domain : *domains) {
      if (!only_domain.empty() && domain != only_domain) continue;
      auto tallies = tool.tallies(day, domain);
      if (!tallies) return fail(kExitCache, tallies.error().reason);
      if (json) {
        nlohmann::json policies = nlohmann::json::array();
        for (const auto& tally : *tallies) policies.push_back(tally_json(tally));
        all[tlsrpt::format_day(day)][domain] = std::move(policies);
      } else {
        fmt::print("{} {}\n", tlsrpt::format_day(day), domain);
        for (const auto& tally : *tallies) print_tally(tally);
      }
    }
  }
  if (json) fmt::print("{}\n", all.dump(2));
  return kExitOk;
}

// Writes `data` to DIR/NAME through a temporary file, so a reader never sees half a report.
bool write_file(const std::string& directory, const std::string& name, const std::string& data) {
  const std::string path = directory + "/" + name;
  const std::string temporary = path + ".tmp";
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  std::size_t written = 0;
  while (written < data.size()) {
    const ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n <= 0) {
      ::close(fd);
      ::unlink(temporary.c_str());
      return false;
    }
    written += static_cast<std::size_t>(n);
  }
  const bool ok = ::fsync(fd) == 0 && ::close(fd) == 0;
  return ok && ::rename(temporary.c_str(), path.c_str()) == 0;
}

int write_reports(TlsrptTool& tool, tlsrpt::Day day, const std::string& only_domain,
                  const std::string& out) {
  auto domains = tool.domains(day);
  if (!domains) return fail(kExitCache, domains.error().reason);
  std::size_t written = 0;
  for (const std::string& domain : *domains) {
    if (!only_domain.empty() && domain != only_domain) continue;
    auto report = tool.report(day, domain);
    if (!report) return fail(kExitCache, report.error().reason);
    if (!*report) continue;
    if (!write_file(out, (*report)->filename, gzip_compress((*report)->json))) {
      return fail(kExitCantCreate, fmt::format("cannot write {}/{}: {}", out, (*report)->filename,
                                               std::strerror(errno)));
    }
    fmt::print("{}/{}\n", out, (*report)->filename);
    ++written;
  }
  if (written == 0) {
    fmt::print(stderr, "mtasts: no sessions counted on {}{}\n", tlsrpt::format_day(day),
               only_domain.empty() ? "" : " for " + only_domain);
  }
  return kExitOk;
}

}  // namespace

TlsrptCommand add_tlsrpt_command(CLI::App& app, TlsrptArguments& arguments) {
  TlsrptCommand command;
  command.tlsrpt = app.add_subcommand("tlsrpt", "TLSRPT (RFC 8460): collected sessions, reports");
  command.tlsrpt->require_subcommand(1);
  command.show = command.tlsrpt->add_subcommand("show", "what was collected, per day and domain");
  command.show->add_option("--day", arguments.day, "only this UTC day (YYYY-MM-DD)");
  command.show->add_option("--domain", arguments.domain, "only this policy domain");
  command.show->add_flag("--json", arguments.json, "JSON output");
  command.report =
      command.tlsrpt->add_subcommand("report", "write report files (.json.gz) without sending");
  command.report->add_option("--day", arguments.day, "UTC day (YYYY-MM-DD), default yesterday");
  command.report->add_option("--domain", arguments.domain, "only this policy domain");
  command.report->add_option("--out", arguments.out, "directory to write to")->required();
  command.send = command.tlsrpt->add_subcommand(
      "send", "send due reports now (closed days; each report at most once per rua)");
  command.send->add_option("--day", arguments.day, "only this UTC day (YYYY-MM-DD)");
  return command;
}

int run_tlsrpt_command(const TlsrptCommand& command, const TlsrptArguments& arguments,
                       Config config, std::shared_ptr<spdlog::logger> logger) {
  std::optional<tlsrpt::Day> day;
  if (!arguments.day.empty()) {
    day = tlsrpt::parse_day(arguments.day);
    if (!day) {
      return fail(kExitBadInput,
                  fmt::format("--day {}: expected a date YYYY-MM-DD", arguments.day));
    }
  }
  std::string domain;
  if (!arguments.domain.empty()) {
    auto normalized = normalize_domain(arguments.domain);
    if (!normalized) return fail(kExitBadInput, normalized.error().reason);
    domain = *normalized;
  }
  if (command.send->parsed() &&
      (config.tlsrpt.organization_name.empty() || config.tlsrpt.contact_info.empty())) {
    return fail(kExitBadInput,
                "tlsrpt.organization_name and tlsrpt.contact_info must be set to send reports");
  }
  auto tool = TlsrptTool::open(std::move(config), std::move(logger));
  if (!tool) return fail(kExitCache, tool.error().reason);
  if (command.show->parsed()) {
    std::vector<tlsrpt::Day> days;
    if (day) {
      days.push_back(*day);
    } else {
      auto all = (*tool)->days();
      if (!all) return fail(kExitCache, all.error().reason);
      days = std::move(*all);
    }
    return show(**tool, days, domain, arguments.json);
  }
  if (command.report->parsed()) {
    return write_reports(**tool, day.value_or(today() - std::chrono::days(1)), domain,
                         arguments.out);
  }
  const TlsrptSendSummary summary = (*tool)->send(day);
  for (const std::string& line : summary.lines) fmt::print("{}\n", line);
  fmt::print("{} sent, {} failed, {} given up, {} domain(s) without a TLSRPT record\n",
             summary.sent, summary.failed, summary.given_up, summary.no_record);
  return summary.failed > 0 ? kExitTempFail : kExitOk;
}

}  // namespace mtasts::cli
