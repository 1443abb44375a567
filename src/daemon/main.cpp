// mtastsd: the daemon front-end. Parses arguments, reads the config, runs the Daemon.
//
//   mtastsd [--config FILE] [--check-config]
//
// Exit statuses: 0 stopped normally (or config valid with --check-config) · 64 usage ·
// 70 internal error · 71 a socket could not be set up or privileges not dropped · 74 cache
// unusable · 78 configuration error. See docs/mtastsd.toml.5 for the configuration.
#include <cstdio>
#include <exception>
#include <string>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "daemon/daemon.hpp"
#include "service/config.hpp"
#include "service/logging.hpp"

int main(int argc, char** argv) {
  using namespace mtasts;
  std::string config_path;
  bool check_only = false;
  CLI::App app{"mtastsd: MTA-STS policy daemon for Exim (${readsocket}) and Postfix (socketmap)"};
  app.add_option("-c,--config", config_path,
                 "config file (default: $MTASTS_CONFIG, else " MTASTS_DEFAULT_CONFIG ")");
  app.add_flag("-t,--check-config", check_only, "check the config file and exit");
  app.set_version_flag("--version", "mtastsd " MTASTS_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int status = app.exit(error);
    return status == 0 ? 0 : daemon::kExitUsage;
  }

  const bool named = !config_path.empty();
  if (!named) config_path = default_config_path();
  auto config = load_config(config_path, named);
  if (!config) {
    fmt::print(stderr, "mtastsd: {}\n", config.error().reason);
    return daemon::kExitConfig;
  }
  if (check_only) {
    fmt::print("mtastsd: {}: configuration is valid\n", config_path);
    return daemon::kExitOk;
  }
  try {
    auto logger = make_logger("mtastsd", config->log_target, config->log_level);
    daemon::Daemon instance(config_path, std::move(*config), std::move(logger));
    return instance.run();
  } catch (const std::exception& e) {
    fmt::print(stderr, "mtastsd: internal error: {}\n", e.what());
    return daemon::kExitSoftware;
  }
}
