#include "cli/check_command.hpp"

#include <unistd.h>

#include <cstdint>

#include <fmt/format.h>

#include "core/check_report.hpp"
#include "core/domain.hpp"
#include "service/domain_check.hpp"

namespace mtasts::cli {
namespace {

constexpr int kExitBadInput = 65;

}  // namespace

CheckCommand add_check_command(CLI::App& app, CheckArguments& arguments) {
  CheckCommand command;
  command.check = app.add_subcommand(
      "check", "diagnose a domain's MTA-STS, TLSRPT and DANE setup (writes nothing)");
  command.check->add_option("domain", arguments.domain, "the domain to check")->required();
  command.check->add_flag("--json", arguments.json, "JSON output");
  command.check->add_flag("--smtp", arguments.smtp,
                          "also connect to each MX host and try STARTTLS (never sends mail)");
  command.check->add_option("--smtp-port", arguments.smtp_port, "SMTP port (test worlds only)")
      ->check(CLI::Range(1, 65535));
  return command;
}

int run_check_command(const CheckArguments& arguments, const Config& config) {
  auto domain = normalize_domain(arguments.domain);
  if (!domain) {
    fmt::print(stderr, "mtasts: {}\n", domain.error().reason);
    return kExitBadInput;
  }
  DomainCheckOptions options;
  options.smtp = arguments.smtp;
  options.smtp_port = static_cast<std::uint16_t>(arguments.smtp_port);
  const CheckReport report = check_domain(config, *domain, options);
  if (arguments.json) {
    fmt::print("{}", render_check_json(report));
  } else {
    const bool terminal = isatty(STDOUT_FILENO) != 0;
    fmt::print("{}",
               render_check_text(report, terminal ? CheckStyle::terminal : CheckStyle::plain));
  }
  switch (report.status()) {
    case CheckStatus::ok:
      return kCheckExitOk;
    case CheckStatus::warning:
      return kCheckExitWarnings;
    case CheckStatus::error:
      return kCheckExitErrors;
  }
  return kCheckExitErrors;
}

}  // namespace mtasts::cli
