// mtasts: the command-line front-end. Parses arguments, asks the engine, prints answers.
// Exit codes (documented in docs/cli.md):
//   0 answer printed · 64 usage error · 65 invalid domain · 74 cache unusable ·
//   78 configuration error · 70 internal error · `warm`: 66 input unreadable, 75 some domains
//   not warmed (cli/warm_command.hpp)
//   `check` (check_command.hpp): 0 all ok · 1 warnings only · 2 errors found
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <exception>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/check_command.hpp"
#include "cli/tlsrpt_commands.hpp"
#include "cli/warm_command.hpp"
#include "core/domain.hpp"
#include "core/exim_answers.hpp"
#include "core/text_quote.hpp"
#include "service/answer_service.hpp"
#include "service/config.hpp"
#include "service/engine.hpp"
#include "service/logging.hpp"

namespace mtasts {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 64;
constexpr int kExitBadInput = 65;
constexpr int kExitInternal = 70;
constexpr int kExitCache = 74;
constexpr int kExitConfig = 78;

struct GlobalOptions {
  std::string config_file;
  std::string cache;
  std::vector<std::string> resolvers;
  std::string ca_file;
  std::optional<int> https_port;
  bool strict = false;
  bool verbose = false;
};

int fail(int code, std::string_view message) {
  fmt::print(stderr, "mtasts: {}\n", message);
  return code;
}

// Exim's ${run} keeps the output verbatim, so answers carry no newline unless a person is
// looking at a terminal.
void print_answer(std::string_view text) {
  if (isatty(STDOUT_FILENO) != 0) {
    fmt::print("{}\n", text);
  } else {
    fmt::print("{}", text);
  }
}

std::string format_time(UnixTime t) {
  if (t <= 0) return "-";
  std::time_t time = t;
  std::tm tm{};
  gmtime_r(&time, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::string_view kind_name(AnswerKind kind) {
  switch (kind) {
    case AnswerKind::policy:
      return "policy";
    case AnswerKind::no_policy:
      return "no_policy";
    case AnswerKind::fail:
      return "fail";
  }
  return "fail";
}

nlohmann::json entry_json(const CacheEntry& entry) {
  nlohmann::json json;
  if (entry.policy) {
    const CachedPolicy& p = *entry.policy;
    json["policy"] = {{"mode", std::string(to_string(p.policy.mode))},
                      {"mx", p.policy.mx},
                      {"max_age", p.policy.max_age},
                      {"id", p.id},
                      {"fetched_at", p.fetched_at},
                      {"expires_at", p.expires_at},
                      {"text", p.text}};
  } else {
    json["policy"] = nullptr;
  }
  json["checked_at"] = entry.checked_at;
  json["next_check"] = entry.next_check;
  json["txt_expires_at"] = entry.txt_expires_at;
  json["unavailable"] = entry.unavailable;
  json["failed_id"] = entry.failed_id;
  json["failures"] = entry.failures;
  json["retry_fetch_at"] = entry.retry_fetch_at;
  json["last_error"] = entry.last_error;
  json["tlsrpt_rua"] = entry.report;
  json["dnssec"] = entry.txt_dnssec;
  if (entry.dane) {
    const DaneState& dane = *entry.dane;
    nlohmann::json hosts = nlohmann::json::array();
    for (const DaneHost& host : dane.hosts) {
      hosts.push_back({{"preference", host.preference},
                       {"host", host.name},
                       {"state", std::string(to_string(host.state))},
                       {"why", host.why}});
    }
    json["dane"] = {{"verdict", std::string(to_string(dane.verdict))},
                    {"reason", dane.reason},
                    {"required", dane.required},
                    {"checked_at", dane.checked_at},
                    {"expires_at", dane.expires_at},
                    {"hosts", std::move(hosts)}};
  } else {
    json["dane"] = nullptr;
  }
  return json;
}

nlohmann::json result_json(const LookupResult& result) {
  nlohmann::json json;
  json["domain"] = result.domain;
  json["getmta"] = getmta_answer(result.answer);
  json["answer"] = {
      {"kind", std::string(kind_name(result.answer.kind))},
      {"mode", result.answer.kind == AnswerKind::policy ? std::string(to_string(result.answer.mode))
                                                        : std::string()},
      {"mx", result.answer.mx},
      {"id", result.answer.id},
      {"expires_at", result.answer.expires_at},
      {"reason", result.answer.reason},
      {"dane", std::string(to_string(result.answer.dane))},
      {"dane_required", result.answer.dane_required},
      {"dane_reason", result.answer.dane_reason}};
  json["source"] = to_string(result.source);
  json["entry"] = result.entry ? entry_json(*result.entry) : nlohmann::json(nullptr);
  return json;
}

void print_entry_lines(const CacheEntry& entry) {
  if (entry.policy) {
    const CachedPolicy& p = *entry.policy;
    fmt::print("  policy id:   {}\n", p.id);
    fmt::print("  mode:        {}\n", to_string(p.policy.mode));
    fmt::print("  mx:          {}\n", fmt::join(p.policy.mx, ", "));
    fmt::print("  max_age:     {}\n", p.policy.max_age);
    fmt::print("  fetched:     {}\n", format_time(p.fetched_at));
    fmt::print("  expires:     {}\n", format_time(p.expires_at));
  } else {
    fmt::print("  policy:      (none cached)\n");
  }
  fmt::print("  checked:     {}\n", format_time(entry.checked_at));
  fmt::print("  next check:  {}\n", format_time(entry.next_check));
  if (entry.txt_expires_at != 0) {
    fmt::print("  id current:  until {} (the _mta-sts TXT record's TTL)\n",
               format_time(entry.txt_expires_at));
  }
  fmt::print("  dnssec:      {}\n", entry.txt_dnssec.empty() ? "-" : entry.txt_dnssec);
  fmt::print("  tlsrpt rua:  {}\n", entry.report.empty() ? "-" : entry.report);
  if (!entry.last_error.empty()) fmt::print("  last error:  {}\n", entry.last_error);
  if (!entry.failed_id.empty()) {
    fmt::print("  backoff:     id {} failed {} time(s), next fetch after {}\n", entry.failed_id,
               entry.failures, format_time(entry.retry_fetch_at));
  }
  if (entry.dane) {
    const DaneState& dane = *entry.dane;
    fmt::print("  dane:        {}{} ({})\n", to_string(dane.verdict),
               dane.required ? ", required by configuration" : "", dane.reason);
    fmt::print("  dane checked: {}, re-check from {}\n", format_time(dane.checked_at),
               format_time(dane.expires_at));
    for (const DaneHost& host : dane.hosts) {
      fmt::print("    mx {} {}: {} ({})\n", host.preference, host.name, to_string(host.state),
                 host.why);
    }
  } else {
    fmt::print("  dane:        - (not checked: needs trust_anchor, dane = true)\n");
  }
}

void print_result(const LookupResult& result) {
  fmt::print("{}\n", result.domain);
  fmt::print("  answer:      {}{}\n", getmta_answer(result.answer),
             result.answer.reason.empty() ? "" : fmt::format(" ({})", result.answer.reason));
  fmt::print("  source:      {}\n", to_string(result.source));
  if (result.entry) print_entry_lines(*result.entry);
}

class Cli {
 public:
  int run(int argc, char** argv);

 private:
  std::expected<Config, int> make_config() const;
  std::expected<std::unique_ptr<Engine>, int> open_engine() const;
  std::expected<std::string, int> domain_argument(const std::string& text) const;

  GlobalOptions options_;
  bool answer_for_program_ = false;  // getmta/getmx/ignorelist with stdout not a terminal
};

std::expected<Config, int> Cli::make_config() const {
  const bool named = !options_.config_file.empty();
  auto config = load_config(named ? options_.config_file : default_config_path(),
                            named || config_path_is_explicit());
  if (!config) return std::unexpected(fail(kExitConfig, config.error().reason));
  if (!options_.cache.empty()) config->cache_path = options_.cache;
  if (!options_.resolvers.empty()) {
    for (const std::string& resolver : options_.resolvers) {
      if (auto parsed = parse_resolver_address(resolver); !parsed) {
        return std::unexpected(fail(kExitUsage, parsed.error().reason));
      }
    }
    config->resolvers = options_.resolvers;
  }
  if (!options_.ca_file.empty()) config->ca_file = options_.ca_file;
  if (options_.https_port) config->https_port = static_cast<std::uint16_t>(*options_.https_port);
  if (options_.strict) config->strict = true;
  if (options_.verbose) config->log_level = "debug";
  return std::move(*config);
}

std::expected<std::unique_ptr<Engine>, int> Cli::open_engine() const {
  auto config = make_config();
  if (!config) return std::unexpected(config.error());
  // Exim's ${run} reads the command's standard error together with its standard output, so a
  // log line there would become part of the answer ("warning: ...\nenforce" is not
  // "enforce"). Answers for a program therefore log to syslog, like the Exim module.
  const bool quiet_stderr = answer_for_program_ && !options_.verbose;
  auto logger =
      make_logger("mtasts", quiet_stderr ? "syslog" : "stderr",
                  config->log_level == "info" && !quiet_stderr ? "warning" : config->log_level);
  auto engine = Engine::open(std::move(*config), std::move(logger));
  if (!engine) {
    return std::unexpected(
        fail(engine.error().category == ErrorCategory::config ? kExitConfig : kExitCache,
             engine.error().reason));
  }
  return std::move(*engine);
}

std::expected<std::string, int> Cli::domain_argument(const std::string& text) const {
  auto domain = normalize_domain(text);
  if (!domain) return std::unexpected(fail(kExitBadInput, domain.error().reason));
  return *domain;
}

int Cli::run(int argc, char** argv) {
  CLI::App app{"mtasts: MTA-STS (RFC 8461) policy answers for mail servers"};
  app.set_version_flag("--version", "mtasts 0.1.0");
  app.require_subcommand(1);
  app.add_option("--config", options_.config_file,
                 "config file (default: $MTASTS_CONFIG or " + default_config_path() + ")");
  app.add_option("--cache", options_.cache, "cache file (LMDB), overrides the config");
  app.add_option("--resolver", options_.resolvers, "DNS server ADDR[:PORT] (repeatable)");
  app.add_option("--ca-file", options_.ca_file, "extra CA certificates (PEM) for policy hosts");
  app.add_option("--https-port", options_.https_port, "policy host port (test worlds only)")
      ->check(CLI::Range(1, 65535));
  app.add_flag("--strict", options_.strict,
               "answer fail when a published policy cannot be fetched and nothing is cached");
  app.add_flag("-v,--verbose", options_.verbose, "log what happens to stderr");

  std::string domain_text;
  std::string host_text;
  bool json = false;

  auto* getmta = app.add_subcommand("getmta",
                                    "enforce|testing|none|fail; with HOST: 0 when the "
                                    "enforce policy does not allow that MX host");
  getmta->add_option("domain", domain_text, "recipient domain")->required();
  // RFC 8461 §4.1: HOST comes from an MX record someone else published; it is matched whatever
  // its form and never refused (an empty HOST given as "" is a HOST too).
  auto* host_option = getmta->add_option("host", host_text, "MX host name (never refused)");
  auto* getmx = app.add_subcommand("getmx", "the policy's mx patterns as an Exim colon list");
  getmx->add_option("domain", domain_text)->required();
  auto* ignorelist =
      app.add_subcommand("ignorelist", "Exim ignore_target_hosts list for an enforce policy");
  ignorelist->add_option("domain", domain_text)->required();
  auto* query = app.add_subcommand("query", "everything known about a domain");
  query->add_option("domain", domain_text)->required();
  query->add_flag("--json", json, "JSON output");
  auto* refresh = app.add_subcommand("refresh", "check DNS (and fetch if needed) now");
  refresh->add_option("domain", domain_text)->required();
  refresh->add_flag("--json", json, "JSON output");
  auto* dump = app.add_subcommand("dump", "every cached domain");
  dump->add_flag("--json", json, "JSON output");
  auto* purge = app.add_subcommand("purge", "forget a domain");
  purge->add_option("domain", domain_text)->required();
  cli::TlsrptArguments tlsrpt_arguments;
  const cli::TlsrptCommand tlsrpt = cli::add_tlsrpt_command(app, tlsrpt_arguments);
  cli::CheckArguments check_arguments;
  const cli::CheckCommand check = cli::add_check_command(app, check_arguments);
  cli::WarmArguments warm_arguments;
  const cli::WarmCommand warm = cli::add_warm_command(app, warm_arguments);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    if (error.get_exit_code() == 0) return app.exit(error);
    app.exit(error);
    return kExitUsage;
  }

  if (warm.warm->parsed()) {
    return cli::run_warm_command(
        warm_arguments, [this] { return make_config(); }, options_.verbose);
  }
  if (check.check->parsed()) {
    auto config = make_config();
    if (!config) return config.error();
    return cli::run_check_command(check_arguments, *config);
  }
  if (tlsrpt.tlsrpt->parsed()) {
    auto config = make_config();
    if (!config) return config.error();
    auto logger = make_logger("mtasts", "stderr", options_.verbose ? "debug" : "warning");
    return cli::run_tlsrpt_command(tlsrpt, tlsrpt_arguments, std::move(*config), std::move(logger));
  }

  const bool with_host = getmta->parsed() && host_option->count() > 0;
  const bool for_exim = getmta->parsed() || getmx->parsed() || ignorelist->parsed();
  // getmta, getmx and ignorelist print what Exim's ${dlfunc} would return.
  auto print_for_exim = [&](const Answer& answer) {
    if (getmta->parsed()) {
      print_answer(with_host ? getmta_host_answer(answer, host_text) : getmta_answer(answer));
    } else if (getmx->parsed()) {
      print_answer(getmx_answer(answer));
    } else {
      print_answer(ignorelist_answer(answer));
    }
  };
  if (dump->parsed()) {
    auto engine = open_engine();
    if (!engine) return engine.error();
    auto entries = (*engine)->store().list();
    if (!entries) return fail(kExitCache, entries.error().reason);
    if (json) {
      nlohmann::json all = nlohmann::json::object();
      for (const auto& [name, entry] : *entries) all[name] = entry_json(entry);
      fmt::print("{}\n", all.dump(2));
    } else {
      for (const auto& [name, entry] : *entries) {
        fmt::print("{}\n", name);
        print_entry_lines(entry);
      }
    }
    return kExitOk;
  }

  answer_for_program_ = for_exim && isatty(STDOUT_FILENO) == 0;
  if (for_exim) {
    // As Exim's ${dlfunc} would, through the service's answer(). Its first step comes before
    // the cache is opened: a bad DOMAIN is refused and an address literal answered (STS-30)
    // without touching any file. HOST is not checked at all.
    auto asked = ask(domain_text);
    if (!asked) return fail(kExitBadInput, asked.error().reason);
    if (asked->answered) {
      print_for_exim(asked->answered->result.answer);
      return kExitOk;
    }
    auto engine = open_engine();
    if (!engine) return engine.error();
    print_for_exim((*engine)->lookup(asked->domain).answer);
    return kExitOk;
  }
  // A bad DOMAIN is refused (it names what is looked up).
  auto domain = domain_argument(domain_text);
  if (!domain) return domain.error();

  auto engine = open_engine();
  if (!engine) return engine.error();

  if (purge->parsed()) {
    auto erased = (*engine)->store().erase(*domain);
    if (!erased) return fail(kExitCache, erased.error().reason);
    fmt::print(stderr, "{}: {}\n", *domain, *erased ? "purged" : "was not cached");
    return kExitOk;
  }

  LookupResult result =
      refresh->parsed() ? (*engine)->refresh(*domain) : (*engine)->lookup(*domain);
  if (json) {
    fmt::print("{}\n", result_json(result).dump(2));
  } else {
    print_result(result);
  }
  return kExitOk;
}

}  // namespace
}  // namespace mtasts

int main(int argc, char** argv) {
  try {
    mtasts::Cli cli;
    return cli.run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "mtasts: internal error: %s\n", error.what());
    return mtasts::kExitInternal;
  }
}
