#include "service/config_tlsrpt.hpp"

#include <cstdint>
#include <set>
#include <string>

#include <fmt/format.h>

#include "core/domain.hpp"
#include "service/toml_reading.hpp"

namespace mtasts::detail {
namespace {

const std::set<std::string_view> kTlsrptKeys = {
    "enabled",           "socket",         "socket_mode", "store",     "max_store_bytes",
    "organization_name", "contact_info",   "submitter",   "mail_from", "sendmail",
    "send_window",       "retention_days", "retry_for",   "send",      "queue_limit",
};

// An addr-spec as a report's contact-info and a mail header carry it: local@domain, printable
// ASCII, no blanks (they would split a header or a sendmail argument).
bool is_plain_address(std::string_view text) {
  const auto at = text.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == text.size()) return false;
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte >= 0x7F || c == '<' || c == '>' || c == ',' || c == '"') return false;
  }
  return !text.starts_with('-');
}

std::optional<Error> read_address(const toml::table& table, std::string_view source,
                                  std::string_view key, std::string& out) {
  std::string value = out;
  if (auto error = read_string(table, source, key, value)) return error;
  if (!value.empty() && !is_plain_address(value)) {
    return config_error(
        source, table.get(key)->source(), key,
        fmt::format("\"{}\" is not a plain address such as tlsrpt@example.com", value));
  }
  out = value;
  return std::nullopt;
}

std::optional<Error> read_command(const toml::table& table, std::string_view source,
                                  std::vector<std::string>& out) {
  const toml::node* node = table.get("sendmail");
  if (node == nullptr) return std::nullopt;
  std::vector<std::string> argv;
  if (auto error = read_string_list(table, source, "sendmail", argv)) return error;
  if (argv.empty() || !argv.front().starts_with('/')) {
    return config_error(source, node->source(), "tlsrpt.sendmail",
                        "must be an array whose first element is an absolute path, e.g. "
                        "[\"/usr/sbin/sendmail\", \"-oi\"] (no shell is involved)");
  }
  out = std::move(argv);
  return std::nullopt;
}

}  // namespace

std::optional<Error> read_tlsrpt(const toml::table& root, std::string_view source,
                                 TlsrptConfig& tlsrpt) {
  const toml::node* node = root.get("tlsrpt");
  if (node == nullptr) return std::nullopt;
  const toml::table* table = node->as_table();
  if (table == nullptr) return config_error(source, node->source(), "tlsrpt", "expected a table");
  if (auto error = check_keys(*table, source, kTlsrptKeys, "tlsrpt.")) return error;
  constexpr std::int64_t kDay = 86400;
  const std::optional<Error> errors[] = {
      read_bool(*table, source, "enabled", tlsrpt.enabled),
      read_socket_path(*table, source, "socket", tlsrpt.socket),
      read_mode(*table, source, "socket_mode", tlsrpt.socket_mode),
      read_string(*table, source, "store", tlsrpt.store),
      read_integer(*table, source, "max_store_bytes", std::int64_t{1} << 20, std::int64_t{1} << 40,
                   tlsrpt.max_store_bytes),
      read_string(*table, source, "organization_name", tlsrpt.organization_name),
      read_address(*table, source, "contact_info", tlsrpt.contact_info),
      read_string(*table, source, "submitter", tlsrpt.submitter),
      read_address(*table, source, "mail_from", tlsrpt.mail_from),
      read_command(*table, source, tlsrpt.sendmail),
      read_integer(*table, source, "send_window", 0, kDay - 1, tlsrpt.send_window),
      read_integer(*table, source, "retention_days", 2, 3660, tlsrpt.retention_days),
      read_integer(*table, source, "retry_for", 0, 7 * kDay, tlsrpt.retry_for),
      read_bool(*table, source, "send", tlsrpt.send),
      read_integer(*table, source, "queue_limit", 16, 16 << 20, tlsrpt.queue_limit),
  };
  for (const auto& error : errors) {
    if (error) return error;
  }
  if (!tlsrpt.store.empty() && !tlsrpt.store.starts_with('/')) {
    return config_error(source, table->get("store")->source(), "tlsrpt.store",
                        "must be an absolute path (or \"\" for tlsrpt.mdb beside the cache)");
  }
  if (!tlsrpt.submitter.empty()) {
    auto domain = normalize_domain(tlsrpt.submitter);
    if (!domain) {
      return config_error(source, table->get("submitter")->source(), "tlsrpt.submitter",
                          domain.error().reason);
    }
    tlsrpt.submitter = *domain;
  }
  if (!tlsrpt.enabled) return std::nullopt;
  // RFC 8460 §4.4: both are required in every report; a report without them is refused.
  if (tlsrpt.organization_name.empty()) {
    return config_error(source, node->source(), "tlsrpt.organization_name",
                        "is required when enabled (the report's organization-name)");
  }
  if (tlsrpt.contact_info.empty()) {
    return config_error(source, node->source(), "tlsrpt.contact_info",
                        "is required when enabled (an address receivers may write to)");
  }
  if (tlsrpt.submitter.empty()) {
    auto domain = normalize_domain(tlsrpt.contact_info.substr(tlsrpt.contact_info.rfind('@') + 1));
    if (!domain) {
      return config_error(source, table->get("contact_info")->source(), "tlsrpt.contact_info",
                          "its domain is not a hostname; set tlsrpt.submitter");
    }
    tlsrpt.submitter = *domain;
  }
  if (tlsrpt.mail_from.empty()) tlsrpt.mail_from = "tlsrpt-noreply@" + tlsrpt.submitter;
  return std::nullopt;
}

}  // namespace mtasts::detail
