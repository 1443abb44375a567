// `mtasts warm [FILE|-] [--from-exim-log F] [--from-postfix-log F]` (docs/cli.md): fills the
// cache for a list of domains, through mtastsd when it runs.
#pragma once

#include <cstddef>
#include <expected>
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "service/config.hpp"

namespace mtasts::cli {

struct WarmArguments {
  std::string file;         // FILE, or "-" for standard input; "" = none
  std::string exim_log;     // --from-exim-log
  std::string postfix_log;  // --from-postfix-log
  std::size_t concurrency = 8;
  bool list = false;    // --list: print the domains, look nothing up
  bool direct = false;  // --direct: never through mtastsd
};

struct WarmCommand {
  CLI::App* warm = nullptr;
};
WarmCommand add_warm_command(CLI::App& app, WarmArguments& arguments);

// Runs the parsed command; `config` is asked only when something is looked up (it returns an
// exit status on failure, having said why). Returns the exit status: 0 every domain warmed,
// 65 some input lines were not domains, 66 an input file cannot be read, 74 the cache,
// 75 some domains could not be warmed now (listed).
int run_warm_command(const WarmArguments& arguments,
                     const std::function<std::expected<Config, int>()>& config, bool verbose);

}  // namespace mtasts::cli
