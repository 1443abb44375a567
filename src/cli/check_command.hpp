// `mtasts check DOMAIN [--json] [--smtp [--smtp-port N]]` (docs/cli.md): a diagnosis of a
// domain's published MTA-STS, TLSRPT and DANE setup. Writes nothing to the cache.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "service/config.hpp"

namespace mtasts::cli {

// Exit codes of `check` (the usage, input and configuration codes are main.cpp's).
inline constexpr int kCheckExitOk = 0;
inline constexpr int kCheckExitWarnings = 1;
inline constexpr int kCheckExitErrors = 2;

struct CheckArguments {
  std::string domain;
  bool json = false;
  bool smtp = false;
  int smtp_port = 25;
};

struct CheckCommand {
  CLI::App* check = nullptr;
};
CheckCommand add_check_command(CLI::App& app, CheckArguments& arguments);

// Runs the parsed command: 0 all ok, 1 warnings only, 2 errors, 65 DOMAIN is not a domain.
int run_check_command(const CheckArguments& arguments, const Config& config);

}  // namespace mtasts::cli
