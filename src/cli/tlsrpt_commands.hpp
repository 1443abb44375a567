// `mtasts tlsrpt show|report|send` (docs/cli.md, docs/tlsrpt.md).
#pragma once

#include <optional>
#include <string>

#include <spdlog/logger.h>
#include <CLI/CLI.hpp>

#include "service/config.hpp"

namespace mtasts::cli {

struct TlsrptArguments {
  std::string day;     // --day YYYY-MM-DD; "" = every day (show) / yesterday (report)
  std::string domain;  // --domain
  std::string out;     // report --out DIR
  bool json = false;   // show --json
};

// The `tlsrpt` subcommand and its own subcommands, added to `app`.
struct TlsrptCommand {
  CLI::App* tlsrpt = nullptr;
  CLI::App* show = nullptr;
  CLI::App* report = nullptr;
  CLI::App* send = nullptr;
};
TlsrptCommand add_tlsrpt_command(CLI::App& app, TlsrptArguments& arguments);

// Runs the parsed command; returns the exit status (0 ok, 65 bad argument, 73 cannot write,
// 74 the counts file, 75 a report could not be sent).
int run_tlsrpt_command(const TlsrptCommand& command, const TlsrptArguments& arguments,
                       Config config, std::shared_ptr<spdlog::logger> logger);

}  // namespace mtasts::cli
