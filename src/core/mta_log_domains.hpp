// The recipient domains of an MTA's recent outbound deliveries, read from its own log
// (`mtasts warm --from-exim-log / --from-postfix-log`), so a new install starts with a warm
// cache. Pure: lines in, domains out; the caller reads the file.
//
// A line counts when it records a delivery (or a deferral, whose mail is still queued for the
// domain) to a remote host over SMTP:
//   Exim mainlog: `=>` / `->` / `==` lines whose transport named a host (`H=`);
//   Postfix: `postfix*/smtp[pid]: QUEUEID: to=<a@b>, relay=HOST[ADDR]:PORT, ... status=sent|
//   deferred` lines with a relay other than `none`.
// Skipped: local deliveries (no host; pipes, files, lmtp/local/virtual agents), hand-offs to a
// loopback host (content filters see inbound mail too), bounces (Exim `**`, Postfix
// status=bounced) and the deliveries of bounce messages (sender `<>`: the recipients are other
// people's envelope senders, often forged), and address literals (`user@[192.0.2.1]`: no policy
// can apply, STS-30).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace mtasts {

enum class MtaLogFormat { exim, postfix };

// What the lines held, for the admin's summary.
struct MtaLogCounts {
  std::size_t lines = 0;       // lines given
  std::size_t remote = 0;      // remote SMTP deliveries taken (before de-duplication)
  std::size_t local = 0;       // deliveries skipped as local or to a loopback host
  std::size_t bounce = 0;      // bounce lines and deliveries of bounce messages skipped
  std::size_t literal = 0;     // deliveries to address literals skipped
  std::size_t invalid = 0;     // deliveries whose domain is not a hostname
  std::size_t over_limit = 0;  // new domains dropped because max_domains was reached
};

class MtaLogDomains {
 public:
  // At most `max_domains` distinct domains are kept; at most `max_bounce_ids` bounce message ids
  // are remembered (then the oldest knowledge is dropped all at once: a bound, not an LRU).
  explicit MtaLogDomains(MtaLogFormat format, std::size_t max_domains = 1'000'000,
                         std::size_t max_bounce_ids = 100'000);

  // One log line, without its line end.
  void add_line(std::string_view line);

  // The normalized recipient domains, each once, in the order first seen.
  [[nodiscard]] const std::vector<std::string>& domains() const { return domains_; }
  [[nodiscard]] const MtaLogCounts& counts() const { return counts_; }

 private:
  void add_exim(std::string_view line);
  void add_postfix(std::string_view line);
  void take(std::string_view address);
  void remember_bounce(std::string_view id);

  MtaLogFormat format_;
  std::size_t max_domains_;
  std::size_t max_bounce_ids_;
  std::vector<std::string> domains_;
  std::unordered_set<std::string> seen_;
  std::unordered_set<std::string> bounce_ids_;  // messages with the null sender
  MtaLogCounts counts_;
};

// Every line of `text` (LF or CRLF line ends) through MtaLogDomains.
[[nodiscard]] std::vector<std::string> mta_log_domains(MtaLogFormat format, std::string_view text);

}  // namespace mtasts
