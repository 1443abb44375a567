#include "core/mta_log_domains.hpp"

#include <algorithm>
#include <cctype>
#include <optional>

#include "core/domain.hpp"

namespace mtasts {
namespace {

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

// The line's blank-separated words, at most `limit` of them (the rest of a line is free text).
std::vector<std::string_view> words(std::string_view line, std::size_t limit) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size() && out.size() < limit) {
    while (i < line.size() && is_blank(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

bool all_alnum(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](unsigned char c) { return std::isalnum(c) != 0; });
}

// An Exim message id: 1rPabc-000123-AB (before 4.97) or 1rPabc-0001234567-ABCD (4.97 on).
bool is_exim_id(std::string_view word) {
  const std::size_t first = word.find('-');
  const std::size_t second = first == std::string_view::npos ? first : word.find('-', first + 1);
  if (second == std::string_view::npos) return false;
  const std::string_view a = word.substr(0, first);
  const std::string_view b = word.substr(first + 1, second - first - 1);
  const std::string_view c = word.substr(second + 1);
  return a.size() == 6 && b.size() >= 6 && b.size() <= 11 && c.size() >= 2 && c.size() <= 4 &&
         all_alnum(a) && all_alnum(b) && all_alnum(c);
}

bool is_loopback_address(std::string_view ip) {
  return ip.starts_with("127.") || ip == "::1" || ip == "IPv6:::1";
}

// The text inside the first [...] of `text`, if any.
std::optional<std::string_view> bracketed(std::string_view text) {
  const std::size_t open = text.find('[');
  if (open == std::string_view::npos) return std::nullopt;
  const std::size_t close = text.find(']', open);
  if (close == std::string_view::npos) return std::nullopt;
  return text.substr(open + 1, close - open - 1);
}

// The value of `key` (which includes its "="), preceded by a blank, up to `end` or a blank.
std::optional<std::string_view> field(std::string_view line, std::string_view key, char end) {
  std::size_t at = 0;
  while ((at = line.find(key, at)) != std::string_view::npos) {
    if (at > 0 && is_blank(line[at - 1])) break;
    at += key.size();
  }
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view value = line.substr(at + key.size());
  const std::size_t stop = std::min(value.find(end), std::min(value.find(' '), value.find('\t')));
  return stop == std::string_view::npos ? value : value.substr(0, stop);
}

}  // namespace

MtaLogDomains::MtaLogDomains(MtaLogFormat format, std::size_t max_domains,
                             std::size_t max_bounce_ids)
    : format_(format), max_domains_(max_domains), max_bounce_ids_(max_bounce_ids) {}

void MtaLogDomains::add_line(std::string_view line) {
  ++counts_.lines;
  if (format_ == MtaLogFormat::exim) {
    add_exim(line);
  } else {
    add_postfix(line);
  }
}

void MtaLogDomains::remember_bounce(std::string_view id) {
  if (bounce_ids_.size() >= max_bounce_ids_) bounce_ids_.clear();
  bounce_ids_.emplace(id);
}

void MtaLogDomains::take(std::string_view address) {
  const std::size_t at = address.rfind('@');
  if (at == std::string_view::npos) {
    ++counts_.local;  // a local user, a pipe or a file
    return;
  }
  const std::string_view domain_text = address.substr(at + 1);
  auto domain = normalize_domain(domain_text);
  if (!domain) {
    if (domain.error().category == ErrorCategory::address_literal) {
      ++counts_.literal;
    } else {
      ++counts_.invalid;
    }
    return;
  }
  ++counts_.remote;
  if (seen_.contains(*domain)) return;
  if (domains_.size() >= max_domains_) {
    ++counts_.over_limit;
    return;
  }
  seen_.insert(*domain);
  domains_.push_back(std::move(*domain));
}

// 2024-01-15 10:00:02[.123] [+0000] [[pid]] 1rPabc-000123-AB => user@example.com R=dnslookup
//   T=remote_smtp H=mx.example.com [192.0.2.25] X=TLS1.3:... C="250 OK"
void MtaLogDomains::add_exim(std::string_view line) {
  const std::vector<std::string_view> w = words(line, 8);
  std::size_t i = 0;
  while (i + 1 < w.size() && !is_exim_id(w[i])) ++i;
  if (i + 1 >= w.size()) return;
  const std::string_view id = w[i];
  const std::string_view flag = w[i + 1];
  const std::string_view address = i + 2 < w.size() ? w[i + 2] : std::string_view();
  if (flag == "<=") {
    if (address == "<>") remember_bounce(id);
    return;
  }
  if (flag == "Completed") {
    bounce_ids_.erase(std::string(id));
    return;
  }
  if (flag == "**") {
    ++counts_.bounce;
    return;
  }
  // *> is a suppressed delivery
  if ((flag != "=>" && flag != "->" && flag != "==") || address.empty()) return;
  if (bounce_ids_.contains(std::string(id))) {
    ++counts_.bounce;
    return;
  }
  // The host the smtp transport used: "H=name [ip]" or "H=[ip]". No host: a local delivery (or a
  // deferral before any host was found).
  const std::size_t h = line.find(" H=");
  if (h == std::string_view::npos) {
    ++counts_.local;
    return;
  }
  const std::string_view host = line.substr(h + 3, 300);
  const std::string_view host_name = host.substr(0, host.find(' '));
  const auto ip = bracketed(host.substr(0, host.find(' ', host.find('[') + 1)));
  if (host_name.empty() || host_name == "localhost" || (ip && is_loopback_address(*ip))) {
    ++counts_.local;
    return;
  }
  take(address);
}

// Jan 15 10:00:02 mx postfix/smtp[12345]: 4F2A11C0123: to=<user@example.com>,
//   relay=mx.example.com[192.0.2.25]:25, delay=1.2, ..., dsn=2.0.0, status=sent (250 OK)
void MtaLogDomains::add_postfix(std::string_view line) {
  const std::vector<std::string_view> w = words(line, 12);
  std::size_t i = 0;
  std::string_view agent;
  for (; i + 1 < w.size(); ++i) {
    const std::string_view word = w[i];
    const std::size_t slash = word.find('/');
    if (!word.ends_with(':') || slash == std::string_view::npos || !word.starts_with("postfix")) {
      continue;
    }
    agent = word.substr(slash + 1, word.size() - slash - 2);
    agent = agent.substr(0, agent.find('['));
    break;
  }
  if (agent.empty()) return;
  std::string_view queue_id = w[i + 1];
  if (!queue_id.ends_with(':')) return;
  queue_id.remove_suffix(1);
  const std::string_view rest = line.substr(line.find(w[i + 1]) + w[i + 1].size());

  if (agent == "qmgr") {
    if (auto from = field(rest, "from=<", '>'); from && from->empty()) remember_bounce(queue_id);
    if (rest.find(" removed") == 0) bounce_ids_.erase(std::string(queue_id));
    return;
  }
  const auto to = field(rest, "to=<", '>');
  if (!to) return;
  const auto status = field(rest, "status=", ' ');
  if (status == "bounced") {
    ++counts_.bounce;
    return;
  }
  if (bounce_ids_.contains(std::string(queue_id))) {
    ++counts_.bounce;
    return;
  }
  const auto relay = field(rest, "relay=", ',');
  const auto ip = relay ? bracketed(*relay) : std::nullopt;
  if (agent != "smtp" || !relay || *relay == "none" || (ip && is_loopback_address(*ip)) ||
      relay->starts_with("localhost[")) {
    ++counts_.local;  // lmtp, local, virtual, pipe; no host found; a content filter
    return;
  }
  if (status != "sent" && status != "deferred") return;
  take(*to);
}

std::vector<std::string> mta_log_domains(MtaLogFormat format, std::string_view text) {
  MtaLogDomains log(format);
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    if (line.ends_with('\r')) line.remove_suffix(1);
    log.add_line(line);
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return log.domains();
}

}  // namespace mtasts
