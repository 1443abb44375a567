#include "cli/warm_command.hpp"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/domain.hpp"
#include "core/mta_log_domains.hpp"
#include "service/logging.hpp"
#include "service/warm.hpp"

namespace mtasts::cli {
namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 64;
constexpr int kExitBadInput = 65;
constexpr int kExitNoInput = 66;
constexpr int kExitCache = 74;
constexpr int kExitTempFail = 75;

constexpr std::size_t kMaxLine = 64 * 1024;  // longer lines are skipped, not kept
constexpr std::size_t kShown = 20;           // failures and bad lines listed one by one

using Clock = std::chrono::steady_clock;

// Calls `line` for each line of `file` (LF or CRLF); a line over kMaxLine is passed as empty
// with `too_long` set. Returns errno of a read error, 0 at end of file.
int read_lines(std::FILE* file,
               const std::function<void(std::string_view line, bool too_long)>& line) {
  std::string current;
  bool too_long = false;
  char buffer[16384];
  for (;;) {
    const std::size_t n = std::fread(buffer, 1, sizeof buffer, file);
    for (std::size_t i = 0; i < n; ++i) {
      if (buffer[i] == '\n') {
        if (!current.empty() && current.back() == '\r') current.pop_back();
        line(too_long ? std::string_view() : std::string_view(current), too_long);
        current.clear();
        too_long = false;
      } else if (current.size() < kMaxLine) {
        current.push_back(buffer[i]);
      } else {
        too_long = true;
      }
    }
    if (n < sizeof buffer) break;
  }
  if (std::ferror(file) != 0) return errno == 0 ? EIO : errno;
  if (!current.empty() || too_long) {
    if (!current.empty() && current.back() == '\r') current.pop_back();
    line(too_long ? std::string_view() : std::string_view(current), too_long);
  }
  return 0;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// The domains to warm, each once in first-seen order, and the input lines that were not.
class DomainList {
 public:
  void add(std::string domain) {
    if (seen_.insert(domain).second) domains_.push_back(std::move(domain));
  }
  void bad_line(std::string_view where, std::size_t number, std::string_view why) {
    if (++bad_ <= kShown) fmt::print(stderr, "mtasts: {}:{}: {}\n", where, number, why);
  }
  [[nodiscard]] const std::vector<std::string>& domains() const { return domains_; }
  [[nodiscard]] std::size_t bad() const { return bad_; }

 private:
  std::vector<std::string> domains_;
  std::unordered_set<std::string> seen_;
  std::size_t bad_ = 0;
};

struct OpenedFile {
  std::FILE* file = nullptr;
  bool owned = false;
  ~OpenedFile() {
    if (owned && file != nullptr) std::fclose(file);
  }
};

std::expected<void, int> read_input(const std::string& path,
                                    const std::function<void(std::string_view, bool)>& line) {
  OpenedFile opened;
  if (path == "-") {
    opened.file = stdin;
  } else {
    opened.file = std::fopen(path.c_str(), "rb");
    opened.owned = true;
    if (opened.file == nullptr) {
      fmt::print(stderr, "mtasts: cannot open {}: {}\n", path, std::strerror(errno));
      return std::unexpected(kExitNoInput);
    }
  }
  if (const int error = read_lines(opened.file, line); error != 0) {
    fmt::print(stderr, "mtasts: cannot read {}: {}\n", path == "-" ? "standard input" : path,
               std::strerror(error));
    return std::unexpected(kExitNoInput);
  }
  return {};
}

std::expected<void, int> read_domain_file(const std::string& path, DomainList& list) {
  const std::string where = path == "-" ? "stdin" : path;
  std::size_t number = 0;
  return read_input(path, [&](std::string_view raw, bool too_long) {
    ++number;
    if (too_long) return list.bad_line(where, number, "line too long");
    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == '#') return;
    auto domain = normalize_domain(line);
    if (!domain) return list.bad_line(where, number, domain.error().reason);
    list.add(std::move(*domain));
  });
}

std::expected<void, int> read_mta_log(const std::string& path, MtaLogFormat format,
                                      DomainList& list) {
  MtaLogDomains log(format);
  auto read = read_input(path, [&](std::string_view line, bool too_long) {
    if (!too_long) log.add_line(line);
  });
  if (!read) return read;
  const MtaLogCounts& c = log.counts();
  fmt::print(stderr,
             "mtasts: {} log {}: {} lines, {} remote deliveries to {} domains; skipped {} local, "
             "{} bounce, {} address literal, {} invalid\n",
             format == MtaLogFormat::exim ? "Exim" : "Postfix", path, c.lines, c.remote,
             log.domains().size(), c.local, c.bounce, c.literal, c.invalid);
  if (c.over_limit > 0) {
    fmt::print(stderr, "mtasts: {}: {} more domains not taken (limit reached)\n", path,
               c.over_limit);
  }
  for (const std::string& domain : log.domains()) list.add(domain);
  return {};
}

std::string format_eta(double seconds) {
  const auto s = static_cast<long long>(seconds + 0.5);
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

// One line on a terminal's standard error, redrawn in place.
class ProgressLine {
 public:
  explicit ProgressLine(bool enabled) : enabled_(enabled), started_(Clock::now()) {}

  void update(const WarmProgress& p, bool final = false) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (!final && p.done != p.total && now - drawn_ < std::chrono::milliseconds(100)) return;
    drawn_ = now;
    const double elapsed = std::chrono::duration<double>(now - started_).count();
    const double rate = elapsed > 0 ? static_cast<double>(p.done) / elapsed : 0.0;
    const std::string eta = p.done == p.total ? "0s"
                            : rate > 0 ? format_eta(static_cast<double>(p.total - p.done) / rate)
                                       : "?";
    const unsigned percent = p.total == 0 ? 100 : static_cast<unsigned>(p.done * 100 / p.total);
    fmt::print(stderr, "\rwarm: {}/{}  {}%  {:.1f}/s  failures {}  ETA {}\x1b[K", p.done, p.total,
               percent, rate, p.failed, eta);
    if (final) fmt::print(stderr, "\n");
    std::fflush(stderr);
  }

 private:
  bool enabled_;
  Clock::time_point started_;
  Clock::time_point drawn_{};
};

std::string_view plural(std::size_t n, std::string_view one, std::string_view many) {
  return n == 1 ? one : many;
}

}  // namespace

WarmCommand add_warm_command(CLI::App& app, WarmArguments& arguments) {
  WarmCommand command;
  command.warm = app.add_subcommand(
      "warm", "look up a list of domains now so the cache holds them (through mtastsd if it runs)");
  command.warm->add_option("file", arguments.file,
                           "domains, one per line (# comments); - for standard input");
  command.warm->add_option("--from-exim-log", arguments.exim_log,
                           "also the recipient domains of remote deliveries in an Exim mainlog");
  command.warm->add_option("--from-postfix-log", arguments.postfix_log,
                           "also the recipient domains of remote deliveries in a Postfix log");
  command.warm->add_option("--concurrency", arguments.concurrency, "lookups at once (default 8)")
      ->check(CLI::Range(1, 256));
  command.warm->add_flag("--list", arguments.list, "print the domains and look nothing up");
  command.warm->add_flag("--direct", arguments.direct,
                         "look up in this process even when mtastsd runs");
  return command;
}

int run_warm_command(const WarmArguments& arguments,
                     const std::function<std::expected<Config, int>()>& config, bool verbose) {
  if (arguments.file.empty() && arguments.exim_log.empty() && arguments.postfix_log.empty()) {
    fmt::print(stderr, "mtasts: warm needs FILE, -, --from-exim-log or --from-postfix-log\n");
    return kExitUsage;
  }
  DomainList list;
  if (!arguments.file.empty()) {
    if (auto read = read_domain_file(arguments.file, list); !read) return read.error();
  }
  if (!arguments.exim_log.empty()) {
    if (auto read = read_mta_log(arguments.exim_log, MtaLogFormat::exim, list); !read) {
      return read.error();
    }
  }
  if (!arguments.postfix_log.empty()) {
    if (auto read = read_mta_log(arguments.postfix_log, MtaLogFormat::postfix, list); !read) {
      return read.error();
    }
  }
  const int input_status = list.bad() > 0 ? kExitBadInput : kExitOk;
  if (list.bad() > kShown) {
    fmt::print(stderr, "mtasts: … and {} more lines that are not domains\n", list.bad() - kShown);
  }
  if (arguments.list) {
    for (const std::string& domain : list.domains()) fmt::print("{}\n", domain);
    return input_status;
  }

  auto loaded = config();
  if (!loaded) return loaded.error();
  // Failures are listed at the end; log lines on standard error would tear the progress line.
  auto logger = make_logger("mtasts", "stderr", verbose ? "debug" : "error");
  const auto started = Clock::now();
  ProgressLine progress(isatty(STDERR_FILENO) != 0 && !verbose);
  WarmOptions options;
  options.concurrency = arguments.concurrency;
  options.through_daemon = !arguments.direct;
  auto report = warm_cache(*loaded, logger, list.domains(), options,
                           [&](const WarmProgress& p) { progress.update(p); });
  if (!report) {
    fmt::print(stderr, "mtasts: {}\n", report.error().reason);
    return kExitCache;
  }
  WarmProgress total;
  total.total = report->results.size();
  std::vector<const WarmResult*> failed;
  for (const WarmResult& result : report->results) {
    ++total.done;
    if (result.outcome == WarmOutcome::policy) ++total.policy;
    if (result.outcome == WarmOutcome::no_policy) ++total.no_policy;
    if (result.outcome == WarmOutcome::failed) failed.push_back(&result);
  }
  total.failed = failed.size();
  if (total.total > 0) progress.update(total, true);
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  fmt::print("warmed {} {} in {:.1f} s: {} policy, {} no policy, {} failed", total.total,
             plural(total.total, "domain", "domains"), seconds, total.policy, total.no_policy,
             total.failed);
  if (list.bad() > 0) {
    fmt::print("; {} input {} not a domain", list.bad(), plural(list.bad(), "line", "lines"));
  }
  fmt::print("\n");
  for (std::size_t i = 0; i < failed.size() && i < kShown; ++i) {
    fmt::print("  failed {}: {}\n", failed[i]->domain, failed[i]->reason);
  }
  if (failed.size() > kShown) fmt::print("  … and {} more failed\n", failed.size() - kShown);
  fmt::print("  {}\n", report->how);
  std::fflush(stdout);
  return failed.empty() ? input_status : kExitTempFail;
}

}  // namespace mtasts::cli
